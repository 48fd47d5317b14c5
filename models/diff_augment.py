"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) for a
conditional discriminator that sees (one-hot label map, image) pairs.

``diff_augment(fake, real, seg, policy)`` applies the ops of ``policy`` in
order. Each op draws one set of parameters per sample n from Jittor's RNG
(so ``jt.set_global_seed`` makes it reproducible) and applies it to fake[n]
and real[n] alike; geometric ops move seg[n] the same way, so pixel (y, x) of
the augmented label still labels pixel (y, x) of both augmented images.
Pixels that come from outside the image (shifted in, cut out) are zero in the
images and all-zero (no class) in the label. The label is only ever moved,
never blended, so it stays one-hot or all-zero.

The lower-level functions (``color``, ``translate``, ``zoom_crop``,
``cutout``) take explicit per-sample parameters as Vars of shape [N]. All
indexing goes through ``Var.reindex`` with the parameters as ``extras``, so
the compiled kernels depend on shapes only, never on the random values.
"""

import jittor as jt

from util.errors import OptionError

OPS = ("color", "translation", "crop", "cutout")

TRANSLATION_RATIO = 1 / 8
CROP_PROBABILITY = 0.5
CROP_ZOOM = 1.2
CUTOUT_RATIO = 0.5


def _check_ops(names, policy):
    for name in names:
        if name not in OPS:
            raise OptionError(f"unknown DiffAugment op {name!r} in policy {policy!r}; "
                              f"valid ops: {', '.join(OPS)} (comma-separated).")


def parse_policy(text):
    """Turn 'color,crop,translation' into a tuple of op names ('' or None -> ()); OptionError on unknown names."""
    names = tuple(part.strip() for part in (text or "").split(",") if part.strip())
    _check_ops(names, text)
    return names


def _per_sample(values):
    return values.reshape(-1, 1, 1, 1)


# ----------------------------------------------------------------------------
# Ops with explicit per-sample parameters
# ----------------------------------------------------------------------------

def color(x, brightness, saturation, contrast):
    """Brightness (add), saturation (scale around the per-pixel channel mean), contrast (scale around the image mean).

    x [N, C, H, W]; each parameter is [N].
    """
    x = x + _per_sample(brightness)
    mean = x.mean(dim=1, keepdims=True)
    x = (x - mean) * _per_sample(saturation) + mean
    mean = x.mean(dims=[1, 2, 3], keepdims=True)
    return (x - mean) * _per_sample(contrast) + mean


def translate(x, shift_y, shift_x):
    """out[n, :, y, x] = x[n, :, y - shift_y[n], x - shift_x[n]], zero where that is outside.

    shift_y, shift_x: int32 [N] (positive moves the content down / right).
    """
    return x.reindex(x.shape, ["i0", "i1", "i2-@e0(i0)", "i3-@e1(i0)"], overflow_value=0,
                     extras=[shift_y.int32(), shift_x.int32()])


def _gather_axis(x, index, axis):
    """x indexed along ``axis`` (2 or 3) by the per-sample positions index [N, L]."""
    shape = list(x.shape)
    shape[axis] = index.shape[1]
    exprs = ["i0", "i1", "i2", "i3"]
    exprs[axis] = f"@e0(i0,i{axis})"
    return x.reindex(shape, exprs, extras=[index])


def _source_coords(size, scale, offset):
    """Source coordinate [N, size] of each output pixel: zoom by ``scale`` (pixel centres), then crop at ``offset``."""
    out = jt.arange(size).float32().reshape(1, -1)
    src = (out + offset.reshape(-1, 1) + 0.5) / scale.reshape(-1, 1) - 0.5
    return src.clamp(0, size - 1).stop_grad()


def _lerp_axis(x, src, axis):
    lo = src.floor()
    weight = (src - lo).reshape([-1, 1, src.shape[1], 1] if axis == 2 else [-1, 1, 1, src.shape[1]])
    lo = lo.int32()
    hi = (lo + 1).clamp(0, x.shape[axis] - 1)
    return _gather_axis(x, lo, axis) * (1 - weight) + _gather_axis(x, hi, axis) * weight


def zoom_crop(x, scale, offset_y, offset_x, mode):
    """Zoom each sample by scale[n] >= 1 and crop the original size at (offset_y[n], offset_x[n]).

    Offsets are in pixels of the zoomed image, 0 <= offset_y <= (scale - 1) * H
    (floats allowed). Output pixel (y, x) samples the input at source
    coordinate ((y + offset_y + 0.5) / scale - 0.5, likewise x), as
    ``interpolate(align_corners=False)`` does, clamped to the image; scale 1
    with offset 0 is the identity. mode 'bilinear' (images) or 'nearest'
    (label maps: takes the input pixel nearest to the point that bilinear
    samples, so labels stay aligned with the images and are never blended).
    """
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"zoom_crop mode must be 'bilinear' or 'nearest', got {mode!r}")
    scale = scale.float32()
    src_y = _source_coords(x.shape[2], scale, offset_y.float32())
    src_x = _source_coords(x.shape[3], scale, offset_x.float32())
    if mode == "bilinear":
        return _lerp_axis(_lerp_axis(x, src_y, 2), src_x, 3)
    rows, cols = (src_y + 0.5).floor().int32(), (src_x + 0.5).floor().int32()
    return x.reindex(x.shape, ["i0", "i1", "@e0(i0,i2)", "@e1(i0,i3)"], extras=[rows, cols])


def cutout(x, top, left, height, width):
    """Zero the rectangle rows [top[n], top[n] + height), columns [left[n], left[n] + width) (clipped to the image)."""
    n, _, h, w = x.shape
    rows = jt.index((n, 1, h, w), dim=2)
    cols = jt.index((n, 1, h, w), dim=3)
    top, left = _per_sample(top.int32()), _per_sample(left.int32())
    inside = (rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)
    return x * (1 - inside.float32()).stop_grad()


# ----------------------------------------------------------------------------
# Random parameters and the policy
# ----------------------------------------------------------------------------

def _random_color(images, seg):
    n = images[0].shape[0]
    brightness, saturation, contrast = jt.rand(n) - 0.5, jt.rand(n) * 2, jt.rand(n) + 0.5
    return [color(x, brightness, saturation, contrast) for x in images], seg


def _random_translation(images, seg):
    n, _, h, w = seg.shape
    max_y, max_x = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
    shift_y = jt.randint(-max_y, max_y + 1, shape=(n,))
    shift_x = jt.randint(-max_x, max_x + 1, shape=(n,))
    return [translate(x, shift_y, shift_x) for x in images], translate(seg, shift_y, shift_x)


def _random_crop(images, seg):
    n, _, h, w = seg.shape
    scale = jt.ternary(jt.rand(n) < CROP_PROBABILITY, jt.full((n,), CROP_ZOOM), jt.ones(n))
    offset_y = jt.rand(n) * (scale - 1) * h
    offset_x = jt.rand(n) * (scale - 1) * w
    images = [zoom_crop(x, scale, offset_y, offset_x, "bilinear") for x in images]
    return images, zoom_crop(seg, scale, offset_y, offset_x, "nearest")


def _random_cutout(images, seg):
    n, _, h, w = seg.shape
    size_y, size_x = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    # Centre anywhere in the image, so the rectangle may be partly outside it (as in DiffAugment).
    top = jt.randint(0, h + (1 - size_y % 2), shape=(n,)) - size_y // 2
    left = jt.randint(0, w + (1 - size_x % 2), shape=(n,)) - size_x // 2
    return ([cutout(x, top, left, size_y, size_x) for x in images],
            cutout(seg, top, left, size_y, size_x))


_RANDOM_OPS = {"color": _random_color, "translation": _random_translation,
               "crop": _random_crop, "cutout": _random_cutout}


def diff_augment(fake, real, seg, policy):
    """Augment a batch of (fake, real, label) triples with shared per-sample parameters.

    fake, real [N, 3, H, W] in [-1, 1]; seg one-hot [N, C, H, W]; policy a
    sequence of op names (or a policy string). Returns (aug_fake, aug_real,
    aug_seg); with an empty policy the inputs themselves. Differentiable with
    respect to fake and real.
    """
    if isinstance(policy, str):
        policy = parse_policy(policy)
    _check_ops(policy, ",".join(policy))
    n, _, h, w = fake.shape
    if tuple(real.shape) != tuple(fake.shape) or (seg.shape[0], seg.shape[2], seg.shape[3]) != (n, h, w):
        raise ValueError(f"diff_augment needs fake and real of one shape and a label of the same N, H, W; "
                         f"got {fake.shape}, {real.shape}, {seg.shape}")
    images = [fake, real]
    for name in policy:
        images, seg = _RANDOM_OPS[name](images, seg)
    return images[0], images[1], seg
