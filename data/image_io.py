"""The one place where photos and label maps are read and written.

``read_image`` and ``read_label`` validate what they read and raise
``ImageFileError`` / ``LabelMapError`` naming the file and what is wrong;
``save_image`` / ``save_label`` are the only writers of pictures in the
project (JPEG quality 95 by default, PNG lossless). Pure NumPy/Pillow.
"""

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from util.core.errors import ImageFileError, LabelMapError
from util.core.files import atomic_write

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
LABEL_EXTENSIONS = (".png", ".bmp")
DEFAULT_JPEG_QUALITY = 95


def _open(path, error_cls, what):
    if not os.path.isfile(path):
        raise error_cls(f"{path}: {what} file not found.")
    try:
        img = Image.open(path)
        img.load()  # forces full decoding: truncated files fail here
    except UnidentifiedImageError:
        raise error_cls(f"{path}: not an image file (Pillow cannot identify its format).") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise error_cls(f"{path}: cannot decode the {what} ({err}); the file is probably truncated or corrupt.") from None
    return img


def read_image(path):
    """Read a photo as an HxWx3 uint8 RGB array."""
    img = _open(path, ImageFileError, "image")
    if img.mode not in ("RGB", "L", "RGBA", "P", "CMYK", "YCbCr", "I;16", "I"):
        raise ImageFileError(f"{path}: unsupported image mode {img.mode!r}.")
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def label_values_error(path, label, label_nc):
    """Return a message if ``label`` holds values outside 0..label_nc-1, else None."""
    bad = label >= label_nc
    if not bad.any():
        return None
    values, counts = np.unique(label[bad], return_counts=True)
    listed = ", ".join(f"{int(v)} ({int(c)} px)" for v, c in zip(values[:8], counts[:8]))
    more = "" if len(values) <= 8 else f" and {len(values) - 8} more"
    return (f"{path}: label map holds class ids outside 0..{label_nc - 1}: {listed}{more}. "
            f"Either the file is not a class-id map, or --label_nc ({label_nc}) is too small.")


def read_label(path, label_nc, dontcare_255=False):
    """Read a single-channel class-id map as an HxW uint8 array, validated against ``label_nc``.

    An RGB file is accepted only if its three channels are identical (a grey
    map saved as RGB); a colour-coded visualisation is refused. With
    ``dontcare_255`` the value 255 (unlabelled) is read as the last class,
    ``label_nc - 1`` (the dont-care class of SPADE's released models).
    """
    img = _open(path, LabelMapError, "label map")
    if img.mode in ("L", "P"):
        label = np.asarray(img)
    elif img.mode in ("I", "I;16", "I;16B", "I;16L"):
        label = np.asarray(img).astype(np.int64)
        if label.min() < 0:
            raise LabelMapError(f"{path}: label map holds negative values.")
    elif img.mode in ("RGB", "RGBA", "LA"):
        arr = np.asarray(img.convert("RGB"))
        if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
            raise LabelMapError(
                f"{path}: RGB label map whose channels differ. Label maps must be single-channel "
                f"class ids 0..{label_nc - 1} (a colourised visualisation cannot be used).")
        label = arr[..., 0]
    else:
        raise LabelMapError(f"{path}: unsupported label map mode {img.mode!r}; expected single-channel 8-bit PNG.")
    if dontcare_255:
        label = np.where(label == 255, label_nc - 1, label)
    message = label_values_error(path, label, label_nc)
    if message:
        raise LabelMapError(message)
    return label.astype(np.uint8)


def _atomic_save(img, path, **kwargs):
    ext = os.path.splitext(path)[1].lower()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP"}.get(ext)
    if fmt is None:
        raise ValueError(f"cannot save {path}: unknown image extension {ext!r}")
    atomic_write(path, lambda f: img.save(f, format=fmt, **kwargs))


def save_image(path, rgb, quality=DEFAULT_JPEG_QUALITY):
    """Write an HxWx3 uint8 RGB array; JPEG at ``quality`` (4:4:4), PNG lossless."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"save_image expects HxWx3 uint8, got {rgb.dtype} {rgb.shape}")
    kwargs = {}
    if os.path.splitext(path)[1].lower() in (".jpg", ".jpeg"):
        kwargs = {"quality": int(quality), "subsampling": 0}
    _atomic_save(Image.fromarray(rgb), path, **kwargs)


def save_label(path, label):
    """Write an HxW class-id map as a single-channel 8-bit PNG."""
    label = np.asarray(label)
    if label.ndim != 2 or label.min() < 0 or label.max() > 255:
        raise ValueError(f"save_label expects an HxW map with values 0..255, got {label.shape}")
    _atomic_save(Image.fromarray(label.astype(np.uint8)), path)


def list_files(folder, extensions):
    """Sorted file names in ``folder`` with one of ``extensions`` (case-insensitive)."""
    return sorted(f for f in os.listdir(folder)
                  if f.lower().endswith(extensions) and not f.startswith("."))
