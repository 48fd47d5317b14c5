"""DiffAugment for the conditional discriminator (models.diff_augment).

The explicit-parameter ops are checked against NumPy float64 references (and
the zoom against Jittor's own bilinear ``interpolate``); the random policy is
checked for what the trainer relies on: fake and real get the same parameters,
the label map moves with the images and stays one-hot or all-zero, gradients
reach the fake image, samples get independent parameters, the global seed
makes it reproducible, and new random values compile no new kernels.

Alignment images: channel 0 is a vertical ramp, channel 1 a horizontal ramp,
channel 2 constant 1 ("this pixel came from the image"). Bilinear resampling
reproduces a ramp exactly, so from an augmented pixel we can read the source
coordinate it came from and recompute the class the label must carry there.
"""

import time

import jittor as jt
import numpy as np
import pytest
from jittor import nn

from models.diff_augment import OPS, color, cutout, diff_augment, parse_policy, translate, zoom_crop
from util.core.errors import OptionError

N, C, H, W = 3, 5, 24, 32


def class_map(h, w, num_classes=C):
    y, x = np.mgrid[0:h, 0:w]
    return (y // 3 + 2 * (x // 4)) % num_classes


def one_hot(classes, num_classes=C):
    return np.eye(num_classes, dtype=np.float32)[classes].transpose(0, 3, 1, 2)


def ramp_batch(n, h=H, w=W):
    """Images [n, 3, h, w] (y ramp, x ramp, ones) in [-1, 1] and their one-hot label map [n, C, h, w]."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([-1 + 2 * y / (h - 1), -1 + 2 * x / (w - 1), np.ones_like(y)])
    images = np.repeat(img[None], n, axis=0)
    labels = one_hot(np.repeat(class_map(h, w)[None], n, axis=0))
    return images, labels


def random_images(n, h=H, w=W, seed=0):
    return np.random.RandomState(seed).uniform(-1, 1, (n, 3, h, w)).astype(np.float32)


def augment_np(policy, images, labels, seed):
    jt.set_global_seed(seed)
    fake, real, seg = diff_augment(jt.array(images), jt.array(images), jt.array(labels), parse_policy(policy))
    return fake.numpy(), real.numpy(), seg.numpy()


# ----------------------------------------------------------------------------
# NumPy float64 references for the explicit-parameter ops
# ----------------------------------------------------------------------------

def np_translate(x, shift_y, shift_x):
    out = np.zeros_like(x, dtype=np.float64)
    h, w = x.shape[2:]
    for n, (sy, sx) in enumerate(zip(shift_y, shift_x)):
        rolled = np.roll(x[n].astype(np.float64), (sy, sx), axis=(1, 2))
        rows = np.arange(h) - sy
        cols = np.arange(w) - sx
        inside = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < w))[None, :]
        out[n] = rolled * inside
    return out


def np_color(x, brightness, saturation, contrast):
    x = x.astype(np.float64) + brightness[:, None, None, None]
    mean = x.mean(axis=1, keepdims=True)
    x = (x - mean) * saturation[:, None, None, None] + mean
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return (x - mean) * contrast[:, None, None, None] + mean


def np_resample_axis(x, src, axis, mode):
    size = x.shape[axis]
    src = np.clip(src, 0, size - 1)
    take = lambda idx: np.take(x, idx, axis=axis)  # noqa: E731
    if mode == "nearest":
        return take(np.floor(src + 0.5).astype(int))
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, size - 1)
    shape = [1, 1, 1]
    shape[axis] = size
    weight = (src - lo).reshape(shape)
    return take(lo) * (1 - weight) + take(hi) * weight


def np_source_coords(size, step, start):
    return start + (np.arange(size) + 0.5) * np.float64(step) - 0.5


def np_zoom_crop(x, step, top, left, mode):
    out = np.zeros(x.shape)
    h, w = x.shape[2:]
    for n in range(x.shape[0]):
        src_y, src_x = np_source_coords(h, step[n], top[n]), np_source_coords(w, step[n], left[n])
        out[n] = np_resample_axis(np_resample_axis(x[n].astype(np.float64), src_y, 1, mode), src_x, 2, mode)
    return out


def assert_no_nearest_ties(h, w, step, top, left):
    """Nearest sampling exactly halfway between two pixels may go either way in float32: keep test cases off it."""
    for n in range(len(step)):
        for size, start in ((h, top[n]), (w, left[n])):
            frac = np.clip(np_source_coords(size, step[n], start), 0, size - 1) % 1
            assert np.all(np.abs(frac - 0.5) > 1e-4), "a test case samples halfway between two pixels"


# ----------------------------------------------------------------------------
# Policy strings
# ----------------------------------------------------------------------------

def test_parse_policy_accepts_valid_names_and_empty():
    assert parse_policy("color,crop,translation") == ("color", "crop", "translation")
    assert parse_policy(" color , cutout ,") == ("color", "cutout")
    assert parse_policy("") == ()
    assert parse_policy(None) == ()
    assert parse_policy(",".join(OPS)) == OPS


@pytest.mark.parametrize("text, bad", [("color,zoom", "zoom"), ("Color", "Color"), ("translation,crops", "crops")])
def test_parse_policy_rejects_unknown_names(text, bad):
    with pytest.raises(OptionError) as err:
        parse_policy(text)
    message = str(err.value)
    assert repr(bad) in message
    assert all(name in message for name in OPS)


def test_diff_augment_rejects_unknown_op_and_mismatched_shapes():
    images, labels = ramp_batch(2)
    x, seg = jt.array(images), jt.array(labels)
    with pytest.raises(OptionError):
        diff_augment(x, x, seg, ["color", "flip"])
    with pytest.raises(ValueError):
        diff_augment(x, x, jt.array(labels[:, :, :, :-1]), ["color"])


def test_empty_policy_returns_inputs_unchanged():
    images, labels = ramp_batch(2)
    fake, real, seg = jt.array(images), jt.array(images + 0.5), jt.array(labels)
    out = diff_augment(fake, real, seg, parse_policy(""))
    assert out[0] is fake and out[1] is real and out[2] is seg


# ----------------------------------------------------------------------------
# Explicit-parameter ops against NumPy
# ----------------------------------------------------------------------------

def test_translate_matches_numpy_roll_with_zero_fill(fusion):
    x = random_images(5)
    shift_y = np.array([0, 3, -3, 1, -H], dtype=np.int32)
    shift_x = np.array([0, -4, 4, W - 1, 2], dtype=np.int32)
    out = translate(jt.array(x), jt.array(shift_y), jt.array(shift_x)).numpy()
    np.testing.assert_array_equal(out, np_translate(x, shift_y, shift_x).astype(np.float32))
    labels = one_hot(np.random.RandomState(1).randint(0, C, (5, H, W)))
    seg = translate(jt.array(labels), jt.array(shift_y), jt.array(shift_x)).numpy()
    np.testing.assert_array_equal(seg, np_translate(labels, shift_y, shift_x).astype(np.float32))


def test_color_matches_numpy(fusion):
    x = random_images(4)
    brightness = np.array([-0.5, 0.0, 0.3, 0.49], dtype=np.float32)
    saturation = np.array([0.0, 1.0, 1.7, 0.4], dtype=np.float32)
    contrast = np.array([0.5, 1.0, 1.5, 0.8], dtype=np.float32)
    out = color(jt.array(x), jt.array(brightness), jt.array(saturation), jt.array(contrast)).numpy()
    np.testing.assert_allclose(out, np_color(x, brightness, saturation, contrast), atol=2e-6)


def test_zoom_crop_matches_numpy_and_is_identity_at_step_one(fusion):
    x = random_images(4)
    step = np.array([1.0, 1 / 1.2, 1 / 1.2, 1 / 1.2], dtype=np.float32)
    top = np.array([0.0, 0.0, 4.0, 1.875], dtype=np.float32)
    left = np.array([0.0, 5.3, 0.0, 3.125], dtype=np.float32)
    assert_no_nearest_ties(H, W, step, top, left)
    params = [jt.array(p) for p in (step, top, left)]
    bilinear = zoom_crop(jt.array(x), *params, "bilinear").numpy()
    np.testing.assert_allclose(bilinear, np_zoom_crop(x, step, top, left, "bilinear"), atol=1e-5)
    np.testing.assert_array_equal(bilinear[0], x[0])

    labels = one_hot(np.random.RandomState(2).randint(0, C, (4, H, W)))
    nearest = zoom_crop(jt.array(labels), *params, "nearest").numpy()
    np.testing.assert_array_equal(nearest, np_zoom_crop(labels, step, top, left, "nearest"))
    np.testing.assert_array_equal(nearest[0], labels[0])
    assert set(np.unique(nearest)) <= {0.0, 1.0} and np.all(nearest.sum(axis=1) == 1)


@pytest.mark.parametrize("shape", [(4, 3, 24, 32), (3, 2, 7, 13), (2, 3, 48, 64), (5, 1, 96, 128)])
def test_zoom_crop_is_right_with_and_without_fusion_for_random_parameters(shape):
    """Zoom-crops of random steps and windows, integer source coordinates among them (step 1 with whole-pixel
    windows: where a floor of an inexact coordinate used to pick the pixel before the right one), run fused and
    op by op: both agree with NumPy."""
    n, c, h, w = shape
    rng = np.random.RandomState(sum(shape))
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    labels = one_hot(rng.randint(0, C, (n, h, w)))
    step = np.where(np.arange(n) % 2 == 0, 1.0, rng.uniform(0.6, 1.0, n)).astype(np.float32)
    top = (rng.uniform(0, 1, n) * (1 - step) * h).astype(np.float32)
    left = (rng.uniform(0, 1, n) * (1 - step) * w).astype(np.float32)
    top[0], left[0] = 0, 0
    assert_no_nearest_ties(h, w, step, top, left)
    expected = np_zoom_crop(x, step, top, left, "bilinear")
    expected_labels = np_zoom_crop(labels, step, top, left, "nearest")

    def run():
        params = [jt.array(p) for p in (step, top, left)]
        return (zoom_crop(jt.array(x), *params, "bilinear").numpy(),
                zoom_crop(jt.array(labels), *params, "nearest").numpy())
    fused = run()
    with jt.flag_scope(lazy_execution=0):
        op_by_op = run()
    for images, seg in (fused, op_by_op):
        # float32 coordinates near 128 are good to ~1e-5 pixel; a wrong pixel is off by up to 2
        np.testing.assert_allclose(images, expected, atol=5e-5)
        np.testing.assert_array_equal(seg, expected_labels)
        np.testing.assert_array_equal(images[0], x[0])


def test_zoom_crop_equals_bilinear_interpolate_then_crop(fusion):
    h, w = 10, 20  # 1.2 x size is a whole number, so interpolate can produce the zoomed image
    x = random_images(2, h, w)
    zoomed = nn.interpolate(jt.array(x), size=(12, 24), mode="bilinear", align_corners=False).numpy()
    expected = np.stack([zoomed[0, :, 1:1 + h, 3:3 + w], zoomed[1, :, 2:2 + h, 0:w]])
    step = jt.array([1 / 1.2, 1 / 1.2])  # zoomed pixel offsets (1, 3) and (2, 0) in source pixels:
    out = zoom_crop(jt.array(x), step, jt.array([1 / 1.2, 2 / 1.2]), jt.array([3 / 1.2, 0.0]), "bilinear")
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)


def test_cutout_zeroes_the_clipped_rectangle(fusion):
    x = random_images(2)
    out = cutout(jt.array(x), jt.array([-3, 10]), jt.array([5, 25]), 12, 16).numpy()
    expected = x.copy()
    expected[0, :, 0:9, 5:21] = 0
    expected[1, :, 10:22, 25:32] = 0
    np.testing.assert_array_equal(out, expected)


# ----------------------------------------------------------------------------
# Random policy: pairing and label alignment
# ----------------------------------------------------------------------------

def check_alignment(images, labels, min_valid=0.5):
    """Assert that each augmented label pixel carries the class of the source pixel its image pixel came from."""
    assert set(np.unique(labels)) <= {0.0, 1.0}
    counts = labels.sum(axis=1)
    assert set(np.unique(counts)) <= {0.0, 1.0}
    valid = np.abs(images[:, 2] - 1) < 1e-4  # every source pixel that contributed lies inside the image
    outside = np.abs(images[:, 2]) < 1e-4  # shifted in or cut out
    assert np.all(counts[valid] == 1)
    assert np.all(counts[outside] == 0)
    src_y = np.rint((images[:, 0] + 1) * (H - 1) / 2).astype(int).clip(0, H - 1)
    src_x = np.rint((images[:, 1] + 1) * (W - 1) / 2).astype(int).clip(0, W - 1)
    expected = class_map(H, W)[src_y, src_x]
    np.testing.assert_array_equal(labels.argmax(axis=1)[valid], expected[valid])
    assert valid.mean() > min_valid


@pytest.mark.parametrize("policy", ["translation", "crop", "translation,crop", "crop,translation",
                                    "cutout", "translation,crop,cutout"])
def test_geometric_ops_keep_pairs_identical_and_labels_aligned(policy, fusion):
    images, labels = ramp_batch(6)
    for seed in (0, 1):
        fake, real, seg = augment_np(policy, images, labels, seed)
        np.testing.assert_array_equal(fake, real)
        check_alignment(fake, seg, min_valid=0.3 if "cutout" in policy else 0.5)
        assert not np.array_equal(fake, images)


def test_color_changes_images_identically_and_leaves_label(fusion):
    x = random_images(N)
    _, labels = ramp_batch(N)
    fake, real, seg = augment_np("color", x, labels, seed=3)
    np.testing.assert_array_equal(fake, real)
    np.testing.assert_array_equal(seg, labels)
    assert not np.allclose(fake, x)


def test_pairing_survives_separate_execution_of_real_and_fake():
    """Jittor draws at execution time: real alone first, then fake, must still see the same parameters."""
    x = random_images(N)
    _, labels = ramp_batch(N)
    jt.set_global_seed(5)
    fake, real, seg = diff_augment(jt.array(x), jt.array(x), jt.array(labels), parse_policy(",".join(OPS)))
    real_np = real.numpy()
    seg_np = seg.numpy()
    fake_np = fake.numpy()
    np.testing.assert_array_equal(fake_np, real_np)
    assert set(np.unique(seg_np)) <= {0.0, 1.0}


def test_samples_get_independent_parameters_and_seed_reproduces():
    x = np.repeat(random_images(1), 6, axis=0)
    _, labels = ramp_batch(6)
    for policy in OPS + (",".join(OPS),):
        fake, _, seg = augment_np(policy, x, labels, seed=7)
        distinct = {fake[n].tobytes() for n in range(6)}
        assert len(distinct) >= (2 if policy == "crop" else 6), policy
        again, _, seg_again = augment_np(policy, x, labels, seed=7)
        np.testing.assert_array_equal(again, fake)
        np.testing.assert_array_equal(seg_again, seg)
        other, _, _ = augment_np(policy, x, labels, seed=8)
        assert not np.array_equal(other, fake), policy


# ----------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("policy", list(OPS) + [",".join(OPS)])
def test_gradient_reaches_fake(policy):
    x = random_images(N)
    _, labels = ramp_batch(N)
    weights = jt.array(np.random.RandomState(4).randn(N, 3, H, W).astype(np.float32))
    fake = jt.array(x)
    jt.set_global_seed(9)
    aug_fake, _, _ = diff_augment(fake, jt.array(x), jt.array(labels), parse_policy(policy))
    grad = jt.grad((aug_fake * weights).sum(), fake).numpy()
    assert np.all(np.isfinite(grad))
    assert np.abs(grad).sum() > 0
    for n in range(N):  # every sample receives gradient
        assert np.abs(grad[n]).sum() > 0


def test_gradients_of_explicit_ops_are_exact_adjoints(fusion):
    """Each op is affine in x for fixed parameters, so f(x + d) - f(x) == <grad, d> for f = <w, op(x)>."""
    rng = np.random.RandomState(6)
    x, d = random_images(4), rng.randn(4, 3, H, W).astype(np.float32)
    w = jt.array(rng.randn(4, 3, H, W).astype(np.float32))
    ops = {
        "translate": lambda v: translate(v, jt.array([1, -2, 3, 0]), jt.array([0, 4, -1, 2])),
        "zoom_crop": lambda v: zoom_crop(v, jt.array([1 / 1.2, 1.0, 1 / 1.2, 1 / 1.2]),
                                         jt.array([0.25, 0.0, 3.4, 1.7]), jt.array([4.2, 0.0, 0.6, 5.25]), "bilinear"),
        "cutout": lambda v: cutout(v, jt.array([2, -4, 10, 0]), jt.array([3, 20, -2, 0]), 12, 16),
        "color": lambda v: color(v, jt.array([0.1, -0.3, 0.4, 0.0]), jt.array([0.5, 1.5, 1.0, 0.2]),
                                 jt.array([1.2, 0.6, 1.0, 0.9])),
    }
    for name, op in ops.items():
        xv = jt.array(x)
        grad = jt.grad((op(xv) * w).sum(), xv).numpy().astype(np.float64)
        delta = (op(jt.array(x + d)) * w).sum().item() - (op(jt.array(x)) * w).sum().item()
        np.testing.assert_allclose(delta, (grad * d).sum(), rtol=1e-3, atol=1e-2, err_msg=name)


# ----------------------------------------------------------------------------
# No recompilation for new random values
# ----------------------------------------------------------------------------

def kernel_keys(fake, real, seg, policy):
    with jt.profile_scope(warmup=0, rerun=0) as report:
        aug_fake, aug_real, aug_seg = diff_augment(fake, real, seg, policy)
        grad = jt.grad((aug_fake * aug_fake).mean(), fake)
        jt.sync([aug_fake, aug_real, aug_seg, grad])
    return sorted(row[0] for row in report[1:])


def test_new_random_values_reuse_the_compiled_kernels():
    x = random_images(N, 48, 64)
    labels = one_hot(np.random.RandomState(3).randint(0, C, (N, 48, 64)))
    fake, real, seg = jt.array(x), jt.array(x), jt.array(labels)
    policy = parse_policy(",".join(OPS))
    kernel_keys(fake, real, seg, policy)  # first call may compile
    times, keys = [], []
    for _ in range(2):
        start = time.perf_counter()
        keys.append(kernel_keys(fake, real, seg, policy))
        times.append(time.perf_counter() - start)
    assert keys[0] == keys[1]
    assert max(times) < 5.0, times  # a JIT compile takes seconds; a 48x64 batch takes milliseconds
