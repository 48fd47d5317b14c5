"""Fetching the published pretrained-weights files, verified, when they are missing.

``ensure_weights(path, what, no_download)`` is the one entry point for every
place that needs a weights file: a file that is there is used as it is; a
missing file whose name is one of ``KNOWN_FILES`` (torchvision's VGG19 and
ImageNet InceptionV3, pytorch-fid's FID InceptionV3) is downloaded from its
official address to ``path``; anything else (``--no_download``, the
``LANDSCAPE_NO_DOWNLOAD`` environment variable, an unknown file name, a
server that cannot be reached) raises ``WeightsFileError`` with the caller's
"put it here" message and why nothing was downloaded.

``download(url, path, sha256)`` streams into the temporary file of ``path``
(``util.core.files``, the one atomic writer) with a progress bar on stderr,
hashing as it goes; the file is renamed into place only when the byte count
matches the server's Content-Length and the SHA-256 matches the expected hash:
the published prefix in the file name (``vgg19-dcbb9e9d.pth``: the digest
starts with ``dcbb9e9d``, as torchvision's and pytorch-fid's ``check_hash``
read it) or a full hash. A wrong or incomplete download leaves nothing behind
and raises ``WeightsDownloadError``. Pure Python (urllib); imports no Jittor.
"""

import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request

from util.core.errors import WeightsDownloadError, WeightsFileError
from util.core.files import atomic_write

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_WEIGHTS_NAME}"

# file name -> official address; the hash prefix is part of each name
KNOWN_FILES = {
    "vgg19-dcbb9e9d.pth": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
    "inception_v3_google-0cc3c7bd.pth": "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
    FID_WEIGHTS_NAME: FID_WEIGHTS_URL,
}

NO_DOWNLOAD_VARIABLE = "LANDSCAPE_NO_DOWNLOAD"
TIMEOUT = 30.0  # seconds, for the connection and for every read
CHUNK = 1 << 20
_HASH = re.compile(r"[0-9a-f]{8,64}")


class UnreachableError(WeightsDownloadError):
    """The server could not be reached or refused the file; nothing was written."""


def published_hash(name):
    """The SHA-256 (prefix) a published file name carries after its last '-', or None:
    'pt_inception-2015-12-05-6726825d.pth' -> '6726825d'."""
    _, dash, tail = os.path.splitext(os.path.basename(name))[0].rpartition("-")
    return tail.lower() if dash and _HASH.fullmatch(tail.lower()) else None


def downloads_disabled():
    """True when the environment forbids downloads (LANDSCAPE_NO_DOWNLOAD=1, yes, true or on)."""
    return os.environ.get(NO_DOWNLOAD_VARIABLE, "").strip().lower() in ("1", "yes", "true", "on")


def _print(message):
    print(message, flush=True)


def download(url, path, sha256=None, timeout=TIMEOUT, progress=True):
    """Download ``url`` to ``path`` (its folder created) and return ``path``.

    ``sha256``: the expected digest or a prefix of it (8 to 64 hex digits); None checks the byte count only.
    Raises ``UnreachableError`` when no data came (unknown host, refused, timeout, an HTTP error status),
    ``WeightsDownloadError`` when the data came incomplete or with another hash; either way nothing is left
    at ``path`` or beside it.
    """
    name = os.path.basename(path)
    expected = sha256.lower() if sha256 else None
    if expected is not None and not _HASH.fullmatch(expected):
        raise ValueError(f"sha256 must be 8 to 64 hex digits, got {sha256!r}")
    again = f"Nothing was kept at {path}; try again, or download {url} by hand and put it at {path}."
    request = urllib.request.Request(url, headers={"User-Agent": "landscape-gan-weights/1"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        raise UnreachableError(f"{url} answered HTTP {err.code} {err.reason}") from None
    except urllib.error.URLError as err:
        raise UnreachableError(f"{url} could not be reached ({err.reason})") from None
    except (OSError, http.client.HTTPException) as err:  # timeout, reset, refused before any data
        raise UnreachableError(f"{url} could not be reached ({type(err).__name__}: {err})") from None

    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None

        def stream(f):
            from tqdm import tqdm

            digest, received, error = hashlib.sha256(), 0, None
            with tqdm(total=total, desc=name, unit="B", unit_scale=True, unit_divisor=1024, leave=False,
                      dynamic_ncols=True, file=sys.stderr, disable=not progress) as bar:
                while True:
                    try:
                        chunk = response.read1(CHUNK)  # what has arrived, at most CHUNK
                    except (OSError, http.client.HTTPException) as err:  # read timeout, reset mid-file
                        error = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
                        break
                    if not chunk:
                        break
                    f.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            cut_short = received != total if total is not None else error is not None
            if cut_short:
                of = "" if total is None else f" of {total}"
                raise WeightsDownloadError(f"{name}: the download from {url} is incomplete: {received}{of} bytes "
                                           f"received ({error or 'the connection closed early'}). {again}")
            found = digest.hexdigest()
            if expected is not None and not found.startswith(expected):
                raise WeightsDownloadError(f"{name}: the download from {url} has SHA-256 {found}, expected "
                                           f"{expected}{'' if len(expected) == 64 else '...'}: a corrupt or "
                                           f"different file. {again}")

        return atomic_write(path, stream)


def ensure_weights(path, what="pretrained", no_download=False, missing=None, urls=None, timeout=TIMEOUT,
                   progress=True, say=_print):
    """``path`` once the weights file is there; downloads a missing published file unless forbidden.

    ``what`` names the weights in the default message ('VGG19'); ``missing`` is the caller's message for a
    missing file (where to get it, where to put it, which flag to pass); ``urls`` replaces ``KNOWN_FILES``
    (file name -> address). ``say`` gets the one line announcing a download (default: stdout; the progress
    bar goes to stderr). Raises ``WeightsFileError`` with ``missing`` and why nothing was downloaded
    (--no_download, LANDSCAPE_NO_DOWNLOAD, an unknown file name, an unreachable server), and
    ``WeightsDownloadError`` for a download that arrived incomplete or corrupt.
    """
    if os.path.isfile(path):
        return path
    table = KNOWN_FILES if urls is None else urls
    name = os.path.basename(path)
    url = table.get(name)
    if missing is None:
        missing = f"{path}: {what} weights not found." + (
            f" Download {name} ({url}) on a machine with internet access and put it at {path}." if url else "")
    why = None
    if no_download:
        why = "--no_download was given"
    elif downloads_disabled():
        why = f"{NO_DOWNLOAD_VARIABLE} is set"
    elif url is None:
        why = f"{name} is not one of the published files fetched automatically ({', '.join(table)})"
    if why is None:
        say(f"{path} not found: downloading the {what} weights from {url}")
        try:
            return download(url, path, published_hash(name), timeout=timeout, progress=progress)
        except UnreachableError as err:
            why = str(err)
    raise WeightsFileError(f"{missing} Not downloaded: {why}.")
