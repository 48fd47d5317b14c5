"""Per-image statistics that need no pretrained network: sharpness, and a small colour-and-texture
descriptor whose Frechet distance compares two image sets offline. Pure NumPy/OpenCV.

Sharpness
    ``sharpness(rgb)`` is the variance of the Laplacian of the grey image (0-255 scale): blur removes high
    frequencies and lowers it. ``sharpness_ratio(generated, photo)`` divides a generated image's sharpness by
    that of the photo of the same label map: 1 is as sharp as the photos, below 1 blurrier.

Colour-texture descriptor
    ``descriptor(rgb)``, 43 values: for each quadrant of the image the mean and standard deviation of
    L, a and b in OpenCV's 8-bit Lab (24 values); the histogram of gradient orientations (8 bins weighted by
    magnitude, normalised to sum 1) at full and half resolution (16); the log of the mean squared Laplacian at
    full, half and quarter resolution (3). The Frechet distance between the descriptors of two image sets
    (``util.metrics.fid_stats.frechet_distance`` on their means and covariances) is called
    "colour-texture FD" wherever it is reported: it is not FID, whose Inception features see far more.
"""

import cv2
import numpy as np

DESCRIPTOR_SIZE = 43
ORIENTATION_BINS = 8


def _grey(rgb):
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {rgb.dtype} of shape {rgb.shape}")
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float64)


def sharpness(rgb):
    """Variance of the Laplacian of the grey image."""
    return float(cv2.Laplacian(_grey(rgb), cv2.CV_64F, ksize=1).var())


def sharpness_ratio(generated, photo):
    """``sharpness(generated) / sharpness(photo)`` (a flat photo, sharpness 0, gives NaN)."""
    reference = sharpness(photo)
    return sharpness(generated) / reference if reference > 0 else float("nan")


def _orientation_histogram(grey):
    gx = cv2.Sobel(grey, cv2.CV_64F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_64F, 0, 1, ksize=3)
    magnitude = np.hypot(gx, gy).ravel()
    angle = np.mod(np.arctan2(gy, gx).ravel(), np.pi)  # orientation, not direction
    bins = np.minimum((angle / np.pi * ORIENTATION_BINS).astype(int), ORIENTATION_BINS - 1)
    hist = np.bincount(bins, weights=magnitude, minlength=ORIENTATION_BINS)
    total = hist.sum()
    return hist / total if total > 0 else np.full(ORIENTATION_BINS, 1.0 / ORIENTATION_BINS)


def _laplacian_energy(grey):
    return np.log(np.mean(cv2.Laplacian(grey, cv2.CV_64F, ksize=1) ** 2) + 1e-6)


def descriptor(rgb):
    """The 43-value colour-texture descriptor of an HxWx3 uint8 RGB image (see the module docstring)."""
    grey = _grey(rgb)
    lab = cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2Lab).astype(np.float64)
    h, w = grey.shape
    colour = []
    for rows in (slice(0, h // 2), slice(h // 2, h)):
        for cols in (slice(0, w // 2), slice(w // 2, w)):
            part = lab[rows, cols].reshape(-1, 3)
            colour.extend([*part.mean(0), *part.std(0)])
    half = cv2.resize(grey, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
    quarter = cv2.resize(grey, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
    texture = [*_orientation_histogram(grey), *_orientation_histogram(half),
               _laplacian_energy(grey), _laplacian_energy(half), _laplacian_energy(quarter)]
    return np.array(colour + texture, dtype=np.float64)
