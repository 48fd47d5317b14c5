"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) for a
conditional discriminator that sees (one-hot label map, image) pairs.

``diff_augment(fake, real, seg, policy)`` applies the ops of ``policy`` in
order. Each op draws one set of parameters per sample n from Jittor's RNG
(so ``jt.set_global_seed`` makes it reproducible) and applies it to fake[n]
and real[n] alike (the color op optionally draws for each apart); geometric
ops move seg[n] the same way, so pixel (y, x) of the augmented label still
labels pixel (y, x) of both augmented images.
Pixels that come from outside the image (shifted in, cut out) are zero in the
images and all-zero (no class) in the label. The label is only ever moved,
never blended, so it stays one-hot or all-zero.

The lower-level functions (``color``, ``translate``, ``zoom_crop``,
``cutout``) take explicit per-sample parameters as Vars of shape [N]. All
indexing goes through ``Var.reindex`` with the parameters as ``extras``, so
the compiled kernels depend on shapes only, never on the random values.

The random parameters (shared by the images and the label) and the zoom's
source coordinates (each gives a pixel index and a weight) are computed once
and stored (``stop_fuse``) before anything reads them, and the coordinates
use no division: Jittor's CPU kernels compute float division approximately,
differently from kernel to kernel and from CPU to CPU, and recompute an
unstored expression in every kernel that reads it (docs/jittor-defects.md).
"""

import functools

import jittor as jt

from util.core.errors import OptionError

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


def _source_coords(size, step, start):
    """Source coordinate [N, size] of each output pixel of a zoom-crop, clamped to the image and stored.

    Output pixel i samples start[n] + (i + 0.5) * step[n] - 0.5: pixel centres
    of a window of step * size source pixels whose first edge is at start.
    """
    out = jt.arange(size).float32().reshape(1, -1)
    src = (out + 0.5) * step.reshape(-1, 1) - 0.5 + start.reshape(-1, 1)
    return src.clamp(0, size - 1).stop_grad().stop_fuse()


def _lerp_axis(x, src, axis):
    lo = src.floor()
    weight = (src - lo).reshape([-1, 1, src.shape[1], 1] if axis == 2 else [-1, 1, 1, src.shape[1]])
    lo = lo.int32()
    hi = (lo + 1).clamp(0, x.shape[axis] - 1)
    return _gather_axis(x, lo, axis) * (1 - weight) + _gather_axis(x, hi, axis) * weight


def _resample(x, rows, cols, mode):
    """x sampled at the source coordinates rows [N, H] x cols [N, W] (``_source_coords``): bilinear or nearest."""
    if mode == "nearest":
        rows, cols = (rows + 0.5).floor().int32(), (cols + 0.5).floor().int32()
        return x.reindex(x.shape, ["i0", "i1", "@e0(i0,i2)", "@e1(i0,i3)"], extras=[rows, cols])
    return _lerp_axis(_lerp_axis(x, rows, 2), cols, 3)


def zoom_crop(x, step, top, left, mode):
    """Zoom each sample in by 1 / step[n] (0 < step <= 1) and keep the window at (top[n], left[n]).

    The window is step * H rows by step * W columns of the input, its top-left
    corner at source coordinates (top, left), with 0 <= top <= (1 - step) * H
    and 0 <= left <= (1 - step) * W (floats allowed); it is resampled to the
    full H x W. Output pixel (y, x) samples the input at source coordinate
    (top + (y + 0.5) * step - 0.5, left + (x + 0.5) * step - 0.5), as
    ``interpolate(align_corners=False)`` does, clamped to the image; step 1
    with top = left = 0 is the identity. mode 'bilinear' (images) or 'nearest'
    (label maps: takes the input pixel nearest to the point that bilinear
    samples, so labels stay aligned with the images and are never blended).
    """
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"zoom_crop mode must be 'bilinear' or 'nearest', got {mode!r}")
    step = step.float32()
    rows = _source_coords(x.shape[2], step, top.float32())
    cols = _source_coords(x.shape[3], step, left.float32())
    return _resample(x, rows, cols, mode)


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

def _stored(*values):
    """The per-sample parameters, each computed once, so every image and the label see the same numbers."""
    return [v.stop_fuse() for v in values]


def _random_color(images, seg, independent=False):
    n = images[0].shape[0]

    def draw():
        return _stored(jt.rand(n) - 0.5, jt.rand(n) * 2, jt.rand(n) + 0.5)
    if independent:
        return [color(x, *draw()) for x in images], seg
    brightness, saturation, contrast = draw()
    return [color(x, brightness, saturation, contrast) for x in images], seg


def _random_translation(images, seg):
    n, _, h, w = seg.shape
    max_y, max_x = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
    shift_y, shift_x = _stored(jt.randint(-max_y, max_y + 1, shape=(n,)),
                               jt.randint(-max_x, max_x + 1, shape=(n,)))
    return [translate(x, shift_y, shift_x) for x in images], translate(seg, shift_y, shift_x)


def _random_crop(images, seg):
    n, _, h, w = seg.shape
    step = jt.ternary(jt.rand(n) < CROP_PROBABILITY, jt.full((n,), 1 / CROP_ZOOM), jt.ones(n))
    top = jt.rand(n) * (1 - step) * h
    left = jt.rand(n) * (1 - step) * w
    rows, cols = _source_coords(h, step, top), _source_coords(w, step, left)
    return [_resample(x, rows, cols, "bilinear") for x in images], _resample(seg, rows, cols, "nearest")


def _random_cutout(images, seg):
    n, _, h, w = seg.shape
    size_y, size_x = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    # Centre anywhere in the image, so the rectangle may be partly outside it (as in DiffAugment).
    top, left = _stored(jt.randint(0, h + (1 - size_y % 2), shape=(n,)) - size_y // 2,
                        jt.randint(0, w + (1 - size_x % 2), shape=(n,)) - size_x // 2)
    return ([cutout(x, top, left, size_y, size_x) for x in images],
            cutout(seg, top, left, size_y, size_x))


_RANDOM_OPS = {"color": _random_color, "translation": _random_translation,
               "crop": _random_crop, "cutout": _random_cutout}


def diff_augment(fake, real, seg, policy, independent_colour=False):
    """Augment a batch of (fake, real, label) triples with shared per-sample parameters
    (``independent_colour``: the color op draws its parameters for fake and real apart, as the original
    DiffAugment and APF-GAN do).

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
    ops = dict(_RANDOM_OPS, color=functools.partial(_random_color, independent=independent_colour))
    images = [fake, real]
    for name in policy:
        images, seg = ops[name](images, seg)
    return images[0], images[1], seg
