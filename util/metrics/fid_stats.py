"""Frechet Inception Distance: features, statistics, their cache, and the distance.

This module owns the FID maths and everything between a folder of images and
an FID value; the command lines (``util/fid.py``, ``test.py``,
``util/score.py``) only call it.

* Features are the 2048 pool_3 activations of pytorch-fid's FID InceptionV3
  (``models.inception.InceptionV3Features``), computed exactly as pytorch-fid
  does: an image file is read with Pillow and converted to RGB, scaled to
  [0, 1] (``x / 255`` in float32), mapped to [-1, 1] (``2 x - 1``), resized
  to 299x299 bilinearly (align_corners=False) and run through the network.
  Images are batched (``--fid_batch_size``, 50 as in pytorch-fid); the last
  batch is padded with copies of its last image, whose outputs are dropped,
  so every image counts and no new batch shape is compiled.
* Statistics are the mean and covariance (``np.cov``, rows are images) of
  the features, in float64.
* ``frechet_distance`` is ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2))``
  in float64. The trace term is first computed as pytorch-fid's
  ``calculate_frechet_distance`` computes it (``scipy.linalg.sqrtm``; when
  the square root is not finite, ``eps * I`` is added to both covariances; a
  smaller imaginary part than 1e-3 on the diagonal is dropped), so the value
  is pytorch-fid's wherever pytorch-fid gives one. Where pytorch-fid fails
  ("imaginary component": the absolute 1e-3 limit is exceeded by rounding
  noise when there are fewer images than dimensions, more so for large
  feature values), the trace is computed from symmetric eigenproblems
  instead (``trace_sqrt_product``), which gives the correct value there.
  The result is a float that also names the way (``FrechetDistance.method``).
* ``StatisticsCache`` keeps the statistics of reference folders (the
  training photos) as ``fid_stats_<key>.npz``. The key is a SHA-1 of the
  folder's absolute path, its file list (name, size and modification time of
  every image), the resize applied before the network (``resize_to``) and
  the SHA-1 of the weights file, so any change of these recomputes them.
"""

import hashlib
import json
import os
import sys
import warnings
import zipfile
from typing import NamedTuple

import numpy as np

from data.image_io import IMAGE_EXTENSIONS, list_files, read_image
from data.transforms import resize_image
from util.core import download
from util.core.errors import DatasetError, UserError
from util.core.files import atomic_write

FEATURE_DIMS = 2048
DEFAULT_BATCH_SIZE = 50
CACHE_FORMAT = 1
IMAGINARY_TOLERANCE = 1e-3


class FIDError(UserError):
    """The FID cannot be computed from these statistics (too few images, a failed matrix square root)."""


class Statistics(NamedTuple):
    """Mean (D,) and covariance (D, D) of the features of ``count`` images, float64 (``count`` is None for
    statistics read from a file that does not say, such as pytorch-fid's)."""

    mu: np.ndarray
    sigma: np.ndarray
    count: int


def statistics_of(features):
    """Statistics of an (N, D) feature array, as pytorch-fid computes them (float64)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"expected an (N, D) feature array, got shape {features.shape}")
    if len(features) < 2:
        raise FIDError(f"the FID needs the features of at least 2 images, got {len(features)}.")
    return Statistics(features.mean(axis=0), np.cov(features, rowvar=False), len(features))


def write_statistics(path, stats):
    """Write ``stats`` as ``python -m pytorch_fid --save-stats`` does: a compressed .npz holding ``mu`` and
    ``sigma`` only (written atomically); returns ``path``."""
    return atomic_write(path, lambda f: np.savez_compressed(f, mu=stats.mu, sigma=stats.sigma))


def read_statistics(path):
    """``Statistics`` of a .npz in pytorch-fid's format (``mu`` and ``sigma``; this module's cache files, which
    add ``count``, read too). ``count`` is None when the file does not hold it. ``FIDError`` for a missing
    or unreadable file and for missing or malformed arrays."""
    if not os.path.isfile(path):
        raise FIDError(f"{path}: statistics file not found.")
    try:
        data = np.load(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise FIDError(f"{path}: not a readable .npz file ({err}).") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise FIDError(f"{path}: a single array, not a .npz archive with mu and sigma.")
    with data:
        missing = [k for k in ("mu", "sigma") if k not in data.files]
        if missing:
            raise FIDError(f"{path}: no {' and no '.join(missing)} in this .npz (it holds "
                           f"{', '.join(data.files) or 'nothing'}); FID statistics files, as pytorch-fid writes "
                           f"them, hold mu (the mean of the features, D values) and sigma (their D x D covariance).")
        try:
            mu, sigma = (np.asarray(data[k], dtype=np.float64) for k in ("mu", "sigma"))
            count = int(data["count"]) if "count" in data.files else None
        except (OSError, ValueError, TypeError, zipfile.BadZipFile) as err:
            raise FIDError(f"{path}: unreadable mu or sigma ({err}).") from None
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise FIDError(f"{path}: mu has shape {mu.shape} and sigma {sigma.shape}; expected (D,) and (D, D).")
    return Statistics(mu, sigma, count)


TRACE_METHODS = {
    "sqrtm": "scipy.linalg.sqrtm of S1 S2, as pytorch-fid",
    "sqrtm+eps": "scipy.linalg.sqrtm of (S1 + eps I)(S2 + eps I): pytorch-fid's fallback for a singular product",
    "eigen": "square roots of the eigenvalues of B^T S2 B, S1 = B B^T: pytorch-fid's square root has an "
             "imaginary component here",
}
# a covariance eigenvalue below -PSD_TOLERANCE x the largest one is not rounding: the matrix is no covariance
PSD_TOLERANCE = 1e-8


class FrechetDistance(float):
    """A Frechet distance: the value (a float) and ``method``, the key of ``TRACE_METHODS`` naming how its
    trace term tr(sqrtm(S1 S2)) was computed."""

    def __new__(cls, value, method):
        if method not in TRACE_METHODS:
            raise ValueError(f"unknown trace method {method!r}")
        self = super().__new__(cls, value)
        self.method = method
        return self

    def __getnewargs__(self):  # copy and pickle keep the method
        return float(self), self.method

    @property
    def description(self):
        return TRACE_METHODS[self.method]


def _check_covariance_spectrum(eigenvalues, what):
    scale = float(np.max(np.abs(eigenvalues))) if len(eigenvalues) else 0.0
    lowest = float(np.min(eigenvalues)) if len(eigenvalues) else 0.0
    if lowest < -PSD_TOLERANCE * scale:
        raise FIDError(f"{what} is not positive semi-definite (eigenvalue {lowest:.3g}, largest {scale:.3g}): "
                       f"it is not the covariance of any features.")


def _scaled_range(sigma, what):
    """(D, r) matrix B with B B^T = ``sigma`` on its numerical range: the eigenvectors of the eigenvalues above
    the numerical-rank threshold (D x float64 eps x the largest, as ``np.linalg.matrix_rank``), each scaled
    by the square root of its eigenvalue."""
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    _check_covariance_spectrum(w, what)
    largest = float(np.max(np.abs(w))) if len(w) else 0.0
    keep = w > len(w) * np.finfo(np.float64).eps * largest
    return v[:, keep] * np.sqrt(w[keep])


def trace_sqrt_product(sigma1, sigma2):
    """tr(sqrtm(S1 S2)) of two covariance matrices, from symmetric eigenproblems in float64.

    With S1 = B B^T (``_scaled_range``: B spans S1's numerical range, r
    columns), the non-zero eigenvalues of S1 S2 are those of the symmetric
    positive semi-definite r x r matrix B^T S2 B, so the trace of the
    principal square root of S1 S2 is the sum of the square roots of its
    eigenvalues (rounding's slightly negative ones count as 0). The matrix of
    lower numerical rank plays S1 (the trace is symmetric in S1 and S2): the
    zero eigenvalues of a singular covariance (fewer images than dimensions)
    then never enter, whereas their rounding noise, square-rooted, is what
    moves ``scipy.linalg.sqrtm``'s trace (and gives pytorch-fid's imaginary
    parts). A matrix with a clearly negative eigenvalue is refused
    (``FIDError``).
    """
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    basis1 = _scaled_range(sigma1, "the first covariance matrix")
    basis2 = _scaled_range(sigma2, "the second covariance matrix")
    basis, other = (basis1, sigma2) if basis1.shape[1] <= basis2.shape[1] else (basis2, sigma1)
    if basis.shape[1] == 0:  # a zero covariance (identical features)
        return 0.0
    product = basis.T @ ((other + other.T) / 2) @ basis
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)
    return float(np.sum(np.sqrt(np.clip(eigenvalues, 0, None))))


def _sqrtm_trace(sigma1, sigma2, eps):
    """pytorch-fid's trace term: (trace, method, None), or (None, method, what went wrong) when it fails."""
    with warnings.catch_warnings():  # NumPy's 'smallest subnormal' note when SciPy loads after Jittor; SciPy's
        warnings.simplefilter("ignore")  # 'singular matrix' notes: the outcome is checked below
        from scipy import linalg

        method = "sqrtm"
        try:
            covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
            if not np.isfinite(covmean).all():
                method = "sqrtm+eps"
                offset = np.eye(sigma1.shape[0]) * eps
                covmean, _ = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset), disp=False)
        except np.linalg.LinAlgError as err:
            return None, method, f"no result ({err})"
    if not np.isfinite(covmean).all():
        return None, method, "no finite result, even with eps I added"
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=IMAGINARY_TOLERANCE):
            return None, method, f"an imaginary component of {float(np.max(np.abs(covmean.imag))):.3g}"
        covmean = covmean.real
    return np.trace(covmean), method, None


def frechet_distance(a, b, eps=1e-6, method="auto"):
    """Frechet distance between two Gaussians given as ``Statistics``, as a ``FrechetDistance``.

    ``method``: "auto" computes the trace term as pytorch-fid does (method
    "sqrtm", or "sqrtm+eps" after its eps fallback), so the value is
    pytorch-fid's, and where that fails (pytorch-fid's "Imaginary
    component"), from symmetric eigenproblems ("eigen",
    ``trace_sqrt_product``); "sqrtm" is pytorch-fid's way only (an
    ``FIDError`` where it fails); "eigen" is the eigenproblem way only. Pure:
    the same statistics give the same result.
    """
    if method not in ("auto", "sqrtm", "eigen"):
        raise ValueError(f"method must be auto, sqrtm or eigen, got {method!r}")
    mu1, mu2 = np.atleast_1d(a.mu).astype(np.float64), np.atleast_1d(b.mu).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(a.sigma).astype(np.float64), np.atleast_2d(b.sigma).astype(np.float64)
    if mu1.ndim != 1 or sigma1.shape != (len(mu1), len(mu1)) or sigma2.shape != (len(mu2), len(mu2)):
        raise FIDError(f"statistics need a mean (D,) and a covariance (D, D), got means {mu1.shape} and "
                       f"{mu2.shape}, covariances {sigma1.shape} and {sigma2.shape}.")
    if mu1.shape != mu2.shape:
        raise FIDError(f"statistics of different feature sizes: {mu1.shape[0]} and {mu2.shape[0]}.")
    if not all(np.isfinite(x).all() for x in (mu1, mu2, sigma1, sigma2)):
        raise FIDError("statistics with NaN or infinite values.")
    diff = mu1 - mu2
    base = diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2)  # pytorch-fid's order of the sum
    if method != "eigen":
        trace, how, failure = _sqrtm_trace(sigma1, sigma2, eps)
        if failure is None:
            return FrechetDistance(base - 2 * trace, how)
        if method == "sqrtm":
            counts = " and ".join("?" if c is None else str(c) for c in (a.count, b.count))
            raise FIDError(f"the matrix square root of the covariance product has {failure}; the covariances are "
                           f"too ill-conditioned for it (use more images: {counts} images for {mu1.shape[0]} "
                           f"feature dimensions; method 'auto' falls back to symmetric eigenproblems).")
    return FrechetDistance(base - 2 * trace_sqrt_product(sigma1, sigma2), "eigen")


def to_network_input(images):
    """A list of HxWx3 uint8 RGB arrays of one size -> (N, 3, H, W) float32 in [-1, 1], as pytorch-fid."""
    batch = np.stack([np.asarray(im) for im in images]).astype(np.float32) / np.float32(255)
    return (batch * np.float32(2) - np.float32(1)).transpose(0, 3, 1, 2).copy()


def image_files(folder):
    """Sorted paths of the images in ``folder`` (not recursive)."""
    if not os.path.isdir(folder):
        raise DatasetError(f"{folder}: image folder not found.")
    names = list_files(folder, IMAGE_EXTENSIONS)
    if not names:
        raise DatasetError(f"{folder}: no images found (extensions {', '.join(IMAGE_EXTENSIONS)}).")
    return [os.path.join(folder, n) for n in names]


def parse_size(text):
    """'512x384' -> (512, 384); None or '' -> None."""
    if not text:
        return None
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise UserError(f"expected a size WIDTHxHEIGHT such as 512x384, got {text!r}.") from None
    if w <= 0 or h <= 0:
        raise UserError(f"a size must be positive, got {text!r}.")
    return w, h


def load_image(path, resize_to=None):
    """An image file as pytorch-fid reads it (RGB uint8), optionally resized (bicubic) to ``resize_to`` (W, H)."""
    image = read_image(path)
    return image if resize_to is None else resize_image(image, resize_to)


def file_digest(path, chunk=1 << 20):
    sha = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            sha.update(block)
    return sha.hexdigest()


class FeatureExtractor:
    """pool_3 features of pytorch-fid's InceptionV3 for batches of uint8 images.

    Build it with ``load_extractor``; ``weights_digest`` identifies the
    weights in statistics-cache keys.
    """

    def __init__(self, network, weights_path, batch_size=DEFAULT_BATCH_SIZE):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.network = network
        self.weights_path = weights_path
        self.batch_size = int(batch_size)
        self._digest = None

    @property
    def weights_digest(self):
        if self._digest is None:
            self._digest = file_digest(self.weights_path)
        return self._digest

    def _run(self, images, size):
        import jittor as jt

        count = len(images)
        images = images + [images[-1]] * (size - count)  # pad: one batch shape, outputs dropped below
        with jt.no_grad():
            pool3 = self.network(jt.array(to_network_input(images)))["pool_3"]
            out = pool3.numpy().reshape(len(images), -1)[:count]
        return out.astype(np.float64)

    def features(self, images, total=None, progress=None):
        """(N, 2048) float64 features of an iterable of HxWx3 uint8 images.

        Consecutive images of one size share a batch; ``total`` (when known)
        caps the batch size so small sets are not padded to a full batch;
        ``progress`` (a tqdm bar or None) is advanced per image.
        """
        size = self.batch_size if total is None else max(1, min(self.batch_size, total))
        out, pending = [], []
        for image in images:
            image = np.asarray(image)
            if pending and pending[0].shape != image.shape:
                out.append(self._run(pending, size))
                pending = []
            pending.append(image)
            if len(pending) == size:
                out.append(self._run(pending, size))
                pending = []
            if progress is not None:
                progress.update(1)
        if pending:
            out.append(self._run(pending, size))
        if not out:
            return np.zeros((0, FEATURE_DIMS))
        return np.concatenate(out, 0)


def load_extractor(weights_path, batch_size=DEFAULT_BATCH_SIZE, no_download=False):
    """A ``FeatureExtractor`` with the FID weights at ``weights_path``.

    A missing pytorch-fid file is downloaded there first unless ``no_download``
    (``ensure_fid_weights``). Raises ``WeightsFileError`` (saying where to get
    the file) when it is missing or not an InceptionV3 state dict; torchvision's
    ImageNet weights are refused, since their FIDs are not comparable with anyone's.
    """
    from models.inception import InceptionV3Features, MISSING_MESSAGE
    from models.pretrained import read_state_dict
    from util.core.errors import WeightsFileError

    ensure_fid_weights(weights_path, no_download)
    state = read_state_dict(weights_path, "InceptionV3", MISSING_MESSAGE.format(path=weights_path))
    network = InceptionV3Features.from_state_dict(state, path=weights_path)
    if network.variant != "fid":
        raise WeightsFileError(f"{weights_path}: these are torchvision's ImageNet Inception weights; the FID needs "
                               f"pytorch-fid's FID weights (pt_inception-2015-12-05-6726825d.pth), else the values "
                               f"are not comparable with any published FID.")
    return FeatureExtractor(network, weights_path, batch_size)


def fid_weights_missing(path):
    """The message for missing FID weights: where to get them and where to put them."""
    return (f"{path}: FID Inception weights not found. Download {download.FID_WEIGHTS_NAME} "
            f"({download.FID_WEIGHTS_URL}) on a machine with internet access and put it at {path}, or pass "
            f"--inception_weights PATH.")


def ensure_fid_weights(path, no_download=False):
    """``path`` once the FID weights are there: pytorch-fid's file is downloaded to it when missing, unless
    ``no_download`` (``util.core.download.ensure_weights``); otherwise ``WeightsFileError`` with
    ``fid_weights_missing`` and why nothing was downloaded. Jittor-free: commands call it before
    ``device.setup``."""
    return download.ensure_weights(path, "FID Inception", no_download=no_download, missing=fid_weights_missing(path))


def progress_bar(total, desc):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True, file=sys.stderr, leave=False)


def folder_features(extractor, files, resize_to=None, desc="Inception features"):
    """Features of the image files ``files``, with a progress bar on stderr."""
    with progress_bar(len(files), desc) as bar:
        return extractor.features((load_image(p, resize_to) for p in files), total=len(files), progress=bar)


def reference_key(folder, files, resize_to, weights_digest):
    """Cache key of a reference folder's statistics: changes with any file, the resize or the weights."""
    listing = []
    for path in files:
        st = os.stat(path)
        listing.append([os.path.basename(path), st.st_size, st.st_mtime_ns])
    description = {"format": CACHE_FORMAT, "folder": os.path.abspath(folder), "files": listing,
                   "resize_to": list(resize_to) if resize_to else None, "weights_sha1": weights_digest}
    return hashlib.sha1(json.dumps(description, sort_keys=True).encode()).hexdigest()


class StatisticsCache:
    """Statistics stored as ``DIR/fid_stats_<key>.npz`` (written atomically)."""

    def __init__(self, directory):
        self.directory = directory

    def path(self, key):
        return os.path.join(self.directory, f"fid_stats_{key[:20]}.npz")

    def get(self, key):
        path = self.path(key)
        if not os.path.isfile(path):
            return None
        try:
            with np.load(path) as f:
                if str(f["key"]) != key:
                    return None
                return Statistics(f["mu"], f["sigma"], int(f["count"]))
        except (OSError, KeyError, ValueError):
            return None  # unreadable or foreign: recomputed and overwritten

    def put(self, key, stats, folder=""):
        return atomic_write(self.path(key), lambda f: np.savez(f, key=key, mu=stats.mu, sigma=stats.sigma,
                                                               count=stats.count, folder=str(folder)))


def reference_statistics(extractor, folder, cache_dir=None, resize_to=None):
    """Statistics of a reference folder (the training photos), from the cache when still valid.

    Returns (statistics, where): ``where`` says whether they were read from or
    written to the cache (a line for the console).
    """
    files = image_files(folder)
    cache = StatisticsCache(cache_dir) if cache_dir is not None else None
    key = reference_key(folder, files, resize_to, extractor.weights_digest) if cache else None
    stats = cache.get(key) if cache else None
    if stats is not None:
        return stats, f"reference statistics of {stats.count} images in {folder}: cached in {cache.path(key)}"
    stats = statistics_of(folder_features(extractor, files, resize_to, f"features of {folder}"))
    if cache is None:
        return stats, f"reference statistics of {len(files)} images in {folder} (not cached)"
    path = cache.put(key, stats, folder)
    return stats, f"reference statistics of {stats.count} images in {folder}: computed, cached in {path}"
