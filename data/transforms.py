"""Geometric and value transforms for image/label pairs. Pure NumPy/Pillow.

Training: scale so the width is ``load_size`` (and the height at least the
crop height), take a random ``crop_w x crop_h`` window that moves in both
axes, flip horizontally with probability 1/2. Photos are resampled bicubic,
label maps nearest-neighbour (never blended).
"""

import numpy as np
from PIL import Image


def scaled_size(width, height, load_size, crop_w, crop_h):
    """Size after scaling the width to ``load_size`` while keeping the aspect ratio,
    enlarged if needed so that the crop window fits."""
    scale = max(load_size / width, crop_h / height)
    return max(crop_w, int(round(width * scale))), max(crop_h, int(round(height * scale)))


def random_params(rng, scaled_w, scaled_h, crop_w, crop_h, allow_flip):
    """Crop offset (x, y) uniform over all valid positions, and a flip decision."""
    x = int(rng.randint(0, scaled_w - crop_w + 1))
    y = int(rng.randint(0, scaled_h - crop_h + 1))
    flip = bool(allow_flip and rng.rand() < 0.5)
    return x, y, flip


def resize_image(rgb, size):
    """Resize an HxWx3 uint8 photo to ``size`` = (width, height), Pillow bicubic; the array itself when it
    has that size already. The one bicubic resize of photos (training, FID inputs, scoring)."""
    size = tuple(size)
    if (rgb.shape[1], rgb.shape[0]) == size:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize(size, Image.BICUBIC))


def resize_label_map(label, size):
    """Resize an HxW class-id map to ``size`` = (width, height), nearest neighbour."""
    if (label.shape[1], label.shape[0]) == tuple(size):
        return label
    return np.asarray(Image.fromarray(label).resize(size, Image.NEAREST))


def crop_and_flip(arr, x, y, crop_w, crop_h, flip):
    out = arr[y:y + crop_h, x:x + crop_w]
    return np.ascontiguousarray(out[:, ::-1] if flip else out)


def transform_pair(rgb, label, load_size, crop_w, crop_h, rng, allow_flip, also=()):
    """Apply the same scale/crop/flip to a photo and its label map; returns (photo, label map), and with
    ``also`` (further HxWx3 uint8 images of the photo's size, e.g. its edge map) the list of those too."""
    h, w = label.shape
    size = scaled_size(w, h, load_size, crop_w, crop_h)
    images = [resize_image(image, size) for image in (rgb, *also)]
    label = resize_label_map(label, size)
    x, y, flip = random_params(rng, size[0], size[1], crop_w, crop_h, allow_flip)
    images = [crop_and_flip(image, x, y, crop_w, crop_h, flip) for image in images]
    label = crop_and_flip(label, x, y, crop_w, crop_h, flip)
    return (images[0], label) if not also else (images[0], label, images[1:])


def image_to_array(rgb):
    """HxWx3 uint8 -> 3xHxW float32 in [-1, 1]."""
    return (rgb.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1).copy()


def array_to_image(arr, truncate=False):
    """3xHxW float in [-1, 1] -> HxWx3 uint8 (rounded, clipped). ``truncate``: as SPADE's ``tensor2im`` (and
    the test.py scripts built on it) compute it: (x + 1) / 2 * 255 in float32, clipped, truncated; on average
    half a grey level darker."""
    arr = np.asarray(arr, dtype=np.float32).transpose(1, 2, 0)
    if truncate:
        return np.clip((arr + 1) / 2.0 * 255.0, 0, 255).astype(np.uint8)
    return np.clip(np.rint((arr + 1.0) * 127.5), 0, 255).astype(np.uint8)
