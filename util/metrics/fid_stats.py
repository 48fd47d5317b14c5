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
* ``frechet_distance`` is pytorch-fid's ``calculate_frechet_distance``:
  ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2))`` in float64 with
  ``scipy.linalg.sqrtm``; when the square root is not finite, ``eps * I`` is
  added to both covariances; an imaginary diagonal larger than 1e-3 is an
  error, a smaller imaginary part is dropped.
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
from typing import NamedTuple

import numpy as np

from data.image_io import IMAGE_EXTENSIONS, list_files, read_image
from data.transforms import resize_image
from util.core.errors import DatasetError, UserError
from util.core.files import atomic_write

FEATURE_DIMS = 2048
DEFAULT_BATCH_SIZE = 50
CACHE_FORMAT = 1
IMAGINARY_TOLERANCE = 1e-3


class FIDError(UserError):
    """The FID cannot be computed from these statistics (too few images, a failed matrix square root)."""


class Statistics(NamedTuple):
    """Mean (D,) and covariance (D, D) of the features of ``count`` images, float64."""

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


def frechet_distance(a, b, eps=1e-6):
    """Frechet distance between two Gaussians given as ``Statistics`` (pytorch-fid's formula)."""
    with warnings.catch_warnings():  # NumPy's 'smallest subnormal' note when SciPy loads after Jittor
        warnings.filterwarnings("ignore", message="The value of the smallest subnormal")
        from scipy import linalg

    mu1, mu2 = np.atleast_1d(a.mu).astype(np.float64), np.atleast_1d(b.mu).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(a.sigma).astype(np.float64), np.atleast_2d(b.sigma).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise FIDError(f"statistics of different feature sizes: {mu1.shape[0]} and {mu2.shape[0]}.")
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=IMAGINARY_TOLERANCE):
            worst = float(np.max(np.abs(covmean.imag)))
            raise FIDError(f"the matrix square root of the covariance product has an imaginary component of "
                           f"{worst:.3g}; the covariances are too ill-conditioned (use more images: "
                           f"{a.count} and {b.count} images for {mu1.shape[0]} feature dimensions).")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


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


def load_extractor(weights_path, batch_size=DEFAULT_BATCH_SIZE):
    """A ``FeatureExtractor`` with the FID weights at ``weights_path``.

    Raises ``WeightsFileError`` (saying where to get the file) when it is
    missing or not an InceptionV3 state dict; torchvision's ImageNet weights
    are refused, since their FIDs are not comparable with anyone's.
    """
    from models.inception import InceptionV3Features, MISSING_MESSAGE
    from models.pretrained import read_state_dict
    from util.core.errors import WeightsFileError

    if not os.path.isfile(weights_path):
        raise WeightsFileError(fid_weights_missing(weights_path))
    state = read_state_dict(weights_path, "InceptionV3", MISSING_MESSAGE.format(path=weights_path))
    network = InceptionV3Features.from_state_dict(state, path=weights_path)
    if network.variant != "fid":
        raise WeightsFileError(f"{weights_path}: these are torchvision's ImageNet Inception weights; the FID needs "
                               f"pytorch-fid's FID weights (pt_inception-2015-12-05-6726825d.pth), else the values "
                               f"are not comparable with any published FID.")
    return FeatureExtractor(network, weights_path, batch_size)


def fid_weights_missing(path):
    """The message for missing FID weights: where to get them and where to put them."""
    from models.pretrained import FID_WEIGHTS_URL  # Jittor-free: called before device.setup
    return (f"{path}: FID Inception weights not found. Download pt_inception-2015-12-05-6726825d.pth "
            f"({FID_WEIGHTS_URL}) on a machine with internet access and put it at {path}, or pass "
            f"--inception_weights PATH.")


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
