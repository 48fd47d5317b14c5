"""Colour transfer toward a reference photo: the optional post-process of the style track.

This module owns the Reinhard colour transfer (Reinhard, Ashikhmin, Gooch and
Shirley 2001, "Color Transfer between Images"): in a perceptual colour space,
each channel of the image is shifted and scaled so that its mean and standard
deviation become those of the reference photo,

    out = (x - mean_src) * (std_ref / std_src) + mean_ref      per channel.

The colour space is CIE L*a*b* as OpenCV computes it from float RGB in [0, 1]
(``cv2.COLOR_RGB2LAB``: L in 0..100, a and b about -128..127, D65 white); the
result goes back with ``cv2.COLOR_LAB2RGB``, is clipped to [0, 1] and rounded
to uint8. A channel whose standard deviation is below ``STD_EPS`` = 0.5 LAB
units is only shifted to the reference mean: such a channel has no visible
variation, only quantisation and float noise (the a and b channels of a grey
image vary by up to 0.1 in OpenCV's conversion), and scaling it up would paint
that noise in the reference's colours. OpenCV's float RGB -> LAB -> RGB round
trip is not exact either (off by up to about half a uint8 step), so matched
pixels can move by 1 even when the moments already agree.

Per class region: given the label maps of both images, the pixels of each
class that both show, with at least ``min_pixels`` pixels in each image
(``DEFAULT_MIN_PIXELS`` = 16: fewer pixels give unreliable moments), are
matched to the reference pixels of the same class, so sky takes the colours of
the reference's sky and not of its trees. Pixels of the other classes keep
their exact values. When no class qualifies, or a label map is missing, the
whole image is matched to the whole reference instead; ``TransferResult.mode``
says which happened. A label map of another size than its image is resized to
the image's size nearest-neighbour. Images may differ in size.

``coesak_transfer`` is the transfer the COESAK team's test.py applies to every generated image: the whole
image, in OpenCV's 8-bit LAB (``cv2.COLOR_BGR2LAB`` of the uint8 image: L scaled to 0..255, a and b offset by
128), every channel moved to the reference's mean and standard deviation (over all pixels, float64), clipped to
0..255, truncated (not rounded) to uint8 and converted back with ``cv2.COLOR_LAB2BGR``. The reference photo is
taken as its test.py sees it: at the image's size (its loader resizes it, bicubic), through its loader's float
conversion and back (``coesak_reference``, which lowers about a fifth of the values by one); the generated image
as its test.py converts it, truncated (``TRUNCATES_GENERATED``; ``data.transforms.array_to_image``). Byte for
byte what its test.py writes, except for a channel without any variation: there its arithmetic divides by zero
(NaN, then an undefined cast to uint8); here that channel is only shifted to the reference mean.

``transfer(method, ...)`` dispatches on a name of ``METHODS`` ("none" returns
the image unchanged). Pure NumPy/OpenCV: no Jittor, no files, no printing.
"""

from dataclasses import dataclass

import cv2
import numpy as np

METHODS = ("none", "reinhard", "coesak")
# methods whose generated image is converted to uint8 by truncation first, as the code they reproduce does
TRUNCATES_GENERATED = ("coesak",)
DEFAULT_MIN_PIXELS = 16
STD_EPS = 0.5  # LAB units; see the module docstring

# TransferResult.mode values
UNCHANGED, WHOLE_IMAGE, REGIONS = "none", "whole image", "regions"


@dataclass(frozen=True)
class TransferResult:
    """The transferred HxWx3 uint8 RGB ``image``; ``mode``: "regions", "whole image" or "none";
    ``classes``: the class ids matched region by region (sorted; empty unless mode is "regions")."""
    image: np.ndarray
    mode: str
    classes: tuple = ()


def check_image(rgb, what="image"):
    """``rgb`` as an array, or ValueError unless it is a non-empty HxWx3 uint8 image."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
        raise ValueError(f"colour transfer: the {what} must be a non-empty HxWx3 uint8 RGB array, "
                         f"got {rgb.dtype} {rgb.shape}")
    return rgb


def label_for(label, image_shape, what="label map"):
    """An HxW integer class-id map as uint8 at ``image_shape``'s size (nearest-neighbour when it differs)."""
    label = np.asarray(label)
    if label.ndim != 2 or label.size == 0 or not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"colour transfer: the {what} must be a non-empty HxW integer class-id array, "
                         f"got {label.dtype} {label.shape}")
    if label.min() < 0 or label.max() > 255:
        raise ValueError(f"colour transfer: the {what} holds class ids outside 0..255 "
                         f"({label.min()}..{label.max()})")
    label = label.astype(np.uint8)
    h, w = image_shape[:2]
    if label.shape != (h, w):
        label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST)
    return label


def to_lab(rgb):
    """HxWx3 uint8 RGB -> float32 CIE LAB (OpenCV's float conversion: L 0..100)."""
    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def to_rgb(lab):
    """float CIE LAB -> HxWx3 uint8 RGB, clipped to the RGB cube and rounded."""
    rgb = cv2.cvtColor(np.ascontiguousarray(lab, dtype=np.float32), cv2.COLOR_LAB2RGB)
    return np.rint(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def moments(pixels):
    """(mean[3], std[3]) as float64 of an Nx3 array of LAB pixels."""
    pixels = np.asarray(pixels, np.float64)
    return pixels.mean(axis=0), pixels.std(axis=0)


def lab_moments(rgb, mask=None):
    """(mean[3], std[3]), float64, of the LAB pixels of an HxWx3 uint8 RGB image, only where ``mask`` if given."""
    lab = to_lab(check_image(rgb))
    if mask is None:
        return moments(lab.reshape(-1, 3))
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != lab.shape[:2]:
        raise ValueError(f"lab_moments: mask must be a bool array of the image's size {lab.shape[:2]}, "
                         f"got {mask.dtype} {mask.shape}")
    if not mask.any():
        raise ValueError("lab_moments: the mask selects no pixel")
    return moments(lab[mask])


def match_moments(pixels, reference_pixels):
    """Nx3 LAB pixels moved to the mean and standard deviation of the Mx3 ``reference_pixels``."""
    mean, std = moments(pixels)
    ref_mean, ref_std = moments(reference_pixels)
    scale = np.where(std < STD_EPS, 1.0, ref_std / np.maximum(std, STD_EPS))
    return (pixels - mean) * scale + ref_mean


def shared_classes(label, reference_label, min_pixels):
    """Sorted class ids with at least ``min_pixels`` pixels in both label maps."""
    counts = np.bincount(label.ravel(), minlength=256)
    ref_counts = np.bincount(reference_label.ravel(), minlength=256)
    return tuple(int(c) for c in np.flatnonzero((counts >= min_pixels) & (ref_counts >= min_pixels)))


def reinhard_transfer(rgb, reference, label=None, reference_label=None, min_pixels=DEFAULT_MIN_PIXELS):
    """Reinhard colour transfer of ``rgb`` toward ``reference`` (HxWx3 uint8 RGB, sizes may differ).

    With both label maps, per class region (the classes both show with at least
    ``min_pixels`` pixels each; other pixels keep their values); without them,
    or when no class qualifies, the whole image. Returns a ``TransferResult``
    whose image has ``rgb``'s size.
    """
    rgb, reference = check_image(rgb), check_image(reference, "reference image")
    if isinstance(min_pixels, bool) or not isinstance(min_pixels, (int, np.integer)) or min_pixels < 1:
        raise ValueError(f"colour transfer: min_pixels must be a positive integer, got {min_pixels!r}")
    lab, ref_lab = to_lab(rgb), to_lab(reference)
    classes = ()
    if label is not None and reference_label is not None:
        label = label_for(label, rgb.shape)
        reference_label = label_for(reference_label, reference.shape, "reference label map")
        classes = shared_classes(label, reference_label, min_pixels)
    if not classes:
        out = match_moments(lab.reshape(-1, 3), ref_lab.reshape(-1, 3)).reshape(lab.shape)
        return TransferResult(to_rgb(out), WHOLE_IMAGE)

    out_lab = lab.astype(np.float64)
    changed = np.zeros(label.shape, bool)
    for c in classes:
        region = label == c
        out_lab[region] = match_moments(lab[region], ref_lab[reference_label == c])
        changed |= region
    image = rgb.copy()
    # only the matched pixels are converted back, so the others stay byte-identical
    image[changed] = to_rgb(out_lab[changed][None])[0]
    return TransferResult(image, REGIONS, classes)


def coesak_reference(reference, size):
    """The reference photo (HxWx3 uint8 RGB) as COESAK's test.py sees it: resized to ``size`` = (width, height)
    (bicubic), then its loader's float32 conversion (Jittor's ToTensor and ImageNormalize(0.5, 0.5)) and
    test.py's conversion back (``tensor2im``: truncated)."""
    from data.transforms import array_to_image, resize_image
    x = np.float32(resize_image(reference, size).transpose(2, 0, 1)) * np.float32(1 / 255.0)
    return array_to_image((x - np.float32(0.5)) / np.float32(0.5), truncate=True)


def coesak_transfer(rgb, reference):
    """COESAK's test.py transfer of ``rgb`` toward ``reference`` (HxWx3 uint8 RGB, sizes may differ; the
    reference is taken through ``coesak_reference``): a ``TransferResult`` of the whole image."""
    rgb, reference = check_image(rgb), check_image(reference, "reference image")
    reference = coesak_reference(reference, (rgb.shape[1], rgb.shape[0]))
    lab = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), cv2.COLOR_BGR2LAB)
    ref_lab = cv2.cvtColor(cv2.cvtColor(reference, cv2.COLOR_RGB2BGR), cv2.COLOR_BGR2LAB)
    mean, std = lab.mean(axis=(0, 1), keepdims=True), lab.std(axis=(0, 1), keepdims=True)
    ref_mean, ref_std = ref_lab.mean(axis=(0, 1), keepdims=True), ref_lab.std(axis=(0, 1), keepdims=True)
    flat = std == 0
    out = (lab - mean) / np.where(flat, 1.0, std) * np.where(flat, 1.0, ref_std) + ref_mean
    out = np.clip(out, 0, 255).astype(np.uint8)
    return TransferResult(cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_LAB2BGR), cv2.COLOR_BGR2RGB), WHOLE_IMAGE)


def transfer(method, rgb, reference=None, label=None, reference_label=None, min_pixels=DEFAULT_MIN_PIXELS):
    """Apply the colour transfer ``method`` of ``METHODS``; returns a ``TransferResult``.

    "none" returns ``rgb`` itself (mode "none"; ``reference`` is not needed);
    "reinhard" is ``reinhard_transfer``; "coesak" is ``coesak_transfer`` (the label maps are not used).
    """
    if method not in METHODS:
        raise ValueError(f"unknown colour transfer method {method!r}; expected one of {', '.join(METHODS)}")
    if method == "none":
        return TransferResult(check_image(rgb), UNCHANGED)
    if reference is None:
        raise ValueError(f"colour transfer {method!r} needs a reference image")
    if method == "coesak":
        return coesak_transfer(rgb, reference)
    return reinhard_transfer(rgb, reference, label, reference_label, min_pixels)
