"""Fetching missing pretrained weights (util/core/download.py), against an HTTP server on 127.0.0.1 started
here: verified downloads land whole, wrong or cut-off ones leave nothing, and every refusal ends in the
"put it here" message with why nothing was downloaded. No test contacts another address."""

import hashlib
import http.server
import os
import socket
import threading
import time

import pytest

from conftest import tiny_train_opt
from util.core import download
from util.core.errors import WeightsDownloadError, WeightsFileError

DATA = bytes(range(256)) * 1200 + b"end"  # 300 KiB: several reads, a progress bar that moves
DIGEST = hashlib.sha256(DATA).hexdigest()
NAME = f"weights-{DIGEST[:8]}.pth"  # published-style name: the SHA-256 prefix after the last '-'


class Server:
    """Serves ROUTES {url path: (body, declared Content-Length or None, seconds to stall after the body)} and
    counts the requests."""

    def __init__(self):
        self.routes, self.requests = {}, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                if self.path not in outer.routes:
                    self.send_error(404)
                    return
                body, length, stall = outer.routes[self.path]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                if length is not None:
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)  # HTTP/1.0: the connection closes after this, also mid-file
                self.wfile.flush()
                time.sleep(stall)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, name, body, length="actual", stall=0):
        self.routes["/" + name] = (body, len(body) if length == "actual" else length, stall)
        return self.url(name)

    def url(self, name):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def downloads_allowed(monkeypatch):
    monkeypatch.delenv(download.NO_DOWNLOAD_VARIABLE, raising=False)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a URL fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")
    monkeypatch.setattr(download.urllib.request, "urlopen", refuse)


def folder_of(path):
    folder = os.path.dirname(path)
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_published_hash_is_read_from_the_name():
    assert download.published_hash("pt_inception-2015-12-05-6726825d.pth") == "6726825d"
    assert download.published_hash("pretrained/vgg19-dcbb9e9d.pth") == "dcbb9e9d"
    assert download.published_hash(f"x-{DIGEST}.pkl") == DIGEST
    assert download.published_hash("model-final.pth") is None and download.published_hash("dcbb9e9d.pth") is None
    for name, url in download.KNOWN_FILES.items():
        assert url.startswith("https://") and url.endswith("/" + name) and download.published_hash(name)
    from util.core.download import FID_WEIGHTS_URL
    assert FID_WEIGHTS_URL == download.KNOWN_FILES["pt_inception-2015-12-05-6726825d.pth"]


def test_good_file_lands_at_the_path_verified(server, tmp_path, capsys):
    url = server.serve(NAME, DATA)
    path = str(tmp_path / "pretrained" / NAME)  # the folder does not exist yet
    lines = []
    assert download.ensure_weights(path, "test", urls={NAME: url}, say=lines.append) == path
    with open(path, "rb") as f:
        assert f.read() == DATA
    assert folder_of(path) == [NAME]  # no temporary file left
    assert len(lines) == 1 and url in lines[0] and path in lines[0]
    assert server.requests == ["/" + NAME]
    assert download.ensure_weights(path, "test", urls={NAME: url}, say=lines.append) == path  # there: no request
    assert server.requests == ["/" + NAME] and len(lines) == 1
    # a full hash is accepted too
    other = str(tmp_path / "full.pth")
    assert download.download(url, other, sha256=DIGEST.upper(), progress=False) == other
    assert folder_of(other) == ["full.pth", "pretrained"]


def test_wrong_hash_is_refused_and_nothing_kept(server, tmp_path):
    url = server.serve(NAME, DATA[:-3] + b"END")  # same size, other bytes
    path = str(tmp_path / NAME)
    with pytest.raises(WeightsDownloadError) as err:
        download.ensure_weights(path, urls={NAME: url}, say=lambda line: None)
    message = str(err.value)
    assert NAME in message and "SHA-256" in message and DIGEST[:8] in message and url in message
    assert "try again" in message and path in message
    assert folder_of(path) == []
    # a full expected hash that differs is refused the same way
    with pytest.raises(WeightsDownloadError, match="expected " + "0" * 64):
        download.download(server.serve("x.pth", DATA), str(tmp_path / "x.pth"), sha256="0" * 64, progress=False)
    assert folder_of(path) == []


def test_connection_dropped_mid_file_is_incomplete(server, tmp_path):
    url = server.serve(NAME, DATA[:100_000], length=len(DATA))
    path = str(tmp_path / NAME)
    with pytest.raises(WeightsDownloadError) as err:
        download.ensure_weights(path, urls={NAME: url}, say=lambda line: None)
    message = str(err.value)
    assert NAME in message and "incomplete" in message and f"100000 of {len(DATA)} bytes" in message
    assert folder_of(path) == []


def test_stalled_server_times_out_as_incomplete(server, tmp_path):
    url = server.serve(NAME, DATA[:1000], length=len(DATA), stall=3)
    path = str(tmp_path / NAME)
    with pytest.raises(WeightsDownloadError, match=f"incomplete: 1000 of {len(DATA)} bytes received .*timed out"):
        download.ensure_weights(path, urls={NAME: url}, say=lambda line: None, timeout=0.5)
    assert folder_of(path) == []


def test_unreachable_server_falls_back_to_the_put_it_here_message(tmp_path):
    path = str(tmp_path / "pretrained" / NAME)
    url = f"http://127.0.0.1:{closed_port()}/{NAME}"
    with pytest.raises(WeightsFileError) as err:
        download.ensure_weights(path, urls={NAME: url}, missing=f"{path}: not found; put it there.",
                                say=lambda line: None, timeout=5)
    assert not isinstance(err.value, WeightsDownloadError)
    message = str(err.value)
    assert message.startswith(f"{path}: not found; put it there. Not downloaded: ")
    assert url in message and "could not be reached" in message
    assert not os.path.exists(path) and folder_of(path) == []


def test_http_error_falls_back_too(server, tmp_path):
    path = str(tmp_path / NAME)
    with pytest.raises(WeightsFileError, match="Not downloaded: .*HTTP 404"):
        download.ensure_weights(path, urls={NAME: server.url(NAME)}, say=lambda line: None)
    assert folder_of(path) == []


def test_no_download_makes_no_request(server, tmp_path, monkeypatch):
    url = server.serve(NAME, DATA)
    path = str(tmp_path / NAME)
    with pytest.raises(WeightsFileError) as err:
        download.ensure_weights(path, "VGG19", no_download=True, urls={NAME: url})
    message = str(err.value)
    assert message.startswith(f"{path}: VGG19 weights not found. Download {NAME} ({url})")
    assert message.endswith("Not downloaded: --no_download was given.")
    monkeypatch.setenv(download.NO_DOWNLOAD_VARIABLE, "1")
    with pytest.raises(WeightsFileError, match=f"Not downloaded: {download.NO_DOWNLOAD_VARIABLE} is set"):
        download.ensure_weights(path, urls={NAME: url})
    monkeypatch.delenv(download.NO_DOWNLOAD_VARIABLE)
    with pytest.raises(WeightsFileError, match="is not one of the published files"):
        download.ensure_weights(str(tmp_path / "mine.pkl"), urls={NAME: url})
    assert server.requests == [] and folder_of(path) == []


def test_train_checks_weights_through_ensure_weights(server, tmp_path, monkeypatch):
    import train
    url = server.serve(NAME, DATA)
    monkeypatch.setitem(download.KNOWN_FILES, NAME, url)
    path = str(tmp_path / "pretrained" / NAME)
    opt = tiny_train_opt("--no_vgg_loss", "no", "--vgg_weights", path, "--no_download")
    with pytest.raises(WeightsFileError) as err:
        train.check_weight_files({"pretrain": opt})
    message = str(err.value)
    assert "the pretrain phase needs it for the VGG loss" in message and "No phase was started" in message
    assert message.endswith("Not downloaded: --no_download was given.") and server.requests == []
    train.check_weight_files({"pretrain": tiny_train_opt("--no_vgg_loss", "no", "--vgg_weights", path)})
    assert server.requests == ["/" + NAME] and folder_of(path) == [NAME]


def test_fid_commands_honour_no_download(tmp_path, monkeypatch, no_network):
    from util import score
    from util.metrics import fid_stats
    monkeypatch.chdir(tmp_path)  # the default weights path is relative: nothing there
    args = score.build_parser().parse_args(["--gen", ".", "--labels", ".", "--train_imgs", ".", "--gpu", "off",
                                            "--no_download"])
    weights, resize, reason = score.prepare_fid(args)
    assert weights is None and "FID Inception weights not found" in reason and "--no_download" in reason
    explicit = str(tmp_path / download.FID_WEIGHTS_NAME)
    args.inception_weights = explicit
    with pytest.raises(WeightsFileError, match="--no_download was given"):
        score.prepare_fid(args)
    with pytest.raises(WeightsFileError) as err:
        fid_stats.ensure_fid_weights(explicit, no_download=True)
    assert str(err.value).startswith(fid_stats.fid_weights_missing(explicit))
