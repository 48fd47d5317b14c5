"""Reinhard colour transfer (data/colour_transfer.py): moments after whole-image and per-class
transfer, untouched pixels, fallback, sizes, "none" and input errors. NumPy/OpenCV only.

Tolerances: the moments are compared in OpenCV's float LAB (L 0..100). The output is rounded to
uint8 and OpenCV's float RGB<->LAB round trip is off by up to half a uint8 step, which moves a
mean by at most about 0.2 LAB units (measured < 0.1); so means must agree within MEAN_TOL = 0.3
and standard deviations within STD_TOL = 0.2, while before the transfer they differ by > 2.
Images are mid-range so that the transferred colours are not clipped (asserted)."""

import cv2
import numpy as np
from PIL import Image
import pytest

from data import colour_transfer as ct

MEAN_TOL, STD_TOL = 0.3, 0.2


def lab_stats(rgb, mask=None):
    """Mean and std of the LAB pixels, computed here with OpenCV and NumPy (not with the module)."""
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB).astype(np.float64)
    pixels = lab.reshape(-1, 3) if mask is None else lab[mask]
    return pixels.mean(axis=0), pixels.std(axis=0)


def random_image(rs, shape, low, high, tint=(0, 0, 0)):
    img = rs.randint(low, high, (*shape, 3)) + np.array(tint)
    return np.clip(img, 0, 255).astype(np.uint8)


def assert_moments_close(got, want):
    (m1, s1), (m2, s2) = got, want
    assert np.abs(m1 - m2).max() < MEAN_TOL, (m1, m2)
    assert np.abs(s1 - s2).max() < STD_TOL, (s1, s2)


def assert_moments_differ(got, want):
    (m1, s1), (m2, s2) = got, want
    assert max(np.abs(m1 - m2).max(), np.abs(s1 - s2).max()) > 2.0


def assert_not_clipped(img):
    assert img.min() > 0 and img.max() < 255


def test_lab_moments_match_opencv():
    rs = np.random.RandomState(0)
    img = random_image(rs, (20, 30), 0, 256)
    mask = rs.rand(20, 30) < 0.3
    for got, want in [(ct.lab_moments(img), lab_stats(img)), (ct.lab_moments(img, mask), lab_stats(img, mask))]:
        assert np.allclose(got[0], want[0], atol=1e-4) and np.allclose(got[1], want[1], atol=1e-4)
    assert 0 <= got[0][0] <= 100  # L on OpenCV's 0..100 scale


def test_whole_image_transfer_matches_reference_moments():
    rs = np.random.RandomState(1)
    src = random_image(rs, (60, 80), 70, 180)
    ref = random_image(rs, (50, 40), 90, 150, tint=(15, -5, -20))  # another size, warmer and flatter
    assert_moments_differ(lab_stats(src), lab_stats(ref))
    result = ct.reinhard_transfer(src, ref)
    assert result.mode == ct.WHOLE_IMAGE and result.classes == ()
    assert result.image.shape == src.shape and result.image.dtype == np.uint8
    assert_not_clipped(result.image)
    assert_moments_close(lab_stats(result.image), lab_stats(ref))
    assert np.array_equal(src, random_image(np.random.RandomState(1), (60, 80), 70, 180))  # input not modified


def region_scene(rs):
    """Generated image + label (classes 0, 1, 2, 3) and a reference + label of another size
    (classes 0, 1, 4, and class 2 on only 10 pixels, below the default min_pixels of 16)."""
    label = np.zeros((60, 80), np.uint8)
    label[20:40] = 1
    label[40:] = 2
    label[50:, 60:] = 3
    src = random_image(rs, (60, 80), 70, 180)
    ref_label = np.zeros((48, 64), np.uint8)
    ref_label[16:32] = 1
    ref_label[32:] = 4
    ref_label[40, :10] = 2
    ref = np.empty((48, 64, 3), np.uint8)
    ref[ref_label == 0] = random_image(rs, (16, 64), 110, 160, tint=(-30, 0, 40)).reshape(-1, 3)  # bluish sky
    ref[ref_label == 1] = random_image(rs, (16, 64), 60, 120, tint=(-20, 30, -20)).reshape(-1, 3)  # green
    ref[ref_label >= 2] = random_image(rs, (int((ref_label >= 2).sum()), 1), 80, 170).reshape(-1, 3)
    return src, label, ref, ref_label


def test_regions_match_per_class_moments_and_leave_other_classes_identical():
    src, label, ref, ref_label = region_scene(np.random.RandomState(2))
    result = ct.reinhard_transfer(src, ref, label, ref_label)
    assert result.mode == ct.REGIONS and result.classes == (0, 1)
    assert result.image.shape == src.shape
    for c in (0, 1):
        got, want = lab_stats(result.image, label == c), lab_stats(ref, ref_label == c)
        assert_moments_differ(lab_stats(src, label == c), want)
        assert_not_clipped(result.image[label == c])
        assert_moments_close(got, want)
    # class 2 is too small in the reference, class 3 absent from it: their pixels are untouched
    untouched = label >= 2
    assert np.array_equal(result.image[untouched], src[untouched])
    # with min_pixels lowered to 10, class 2 is matched too
    lowered = ct.reinhard_transfer(src, ref, label, ref_label, min_pixels=10)
    assert lowered.classes == (0, 1, 2)
    assert not np.array_equal(lowered.image[label == 2], src[label == 2])
    assert np.array_equal(lowered.image[label == 3], src[label == 3])


def test_no_shared_class_or_one_label_falls_back_to_whole_image():
    rs = np.random.RandomState(3)
    src, label, _, ref_label = region_scene(rs)
    ref = random_image(rs, ref_label.shape, 90, 150, tint=(15, -5, -20))  # unimodal: nothing clips
    disjoint = np.full_like(ref_label, 7)
    for args in [(label, disjoint), (label, None), (None, ref_label)]:
        result = ct.reinhard_transfer(src, ref, *args)
        assert result.mode == ct.WHOLE_IMAGE and result.classes == ()
        assert_not_clipped(result.image)
        assert_moments_close(lab_stats(result.image), lab_stats(ref))
    # every shared class below min_pixels: also whole image
    assert ct.reinhard_transfer(src, ref, label, ref_label, min_pixels=10 ** 6).mode == ct.WHOLE_IMAGE


def test_label_maps_of_another_size_than_their_images_are_resized_nearest():
    src, label, ref, ref_label = region_scene(np.random.RandomState(4))
    small_label = label[::2, ::2]             # 30x40 for a 60x80 image: each id covers a 2x2 block
    big_ref_label = np.repeat(np.repeat(ref_label, 2, 0), 2, 1)  # 96x128 for a 48x64 reference
    result = ct.reinhard_transfer(src, ref, small_label, big_ref_label)
    assert result.mode == ct.REGIONS and result.classes == (0, 1)
    upscaled = np.repeat(np.repeat(small_label, 2, 0), 2, 1)
    for c in (0, 1):
        assert_moments_close(lab_stats(result.image, upscaled == c), lab_stats(ref, ref_label == c))
    assert np.array_equal(result.image[upscaled >= 2], src[upscaled >= 2])


def test_flat_source_channel_is_only_shifted():
    rs = np.random.RandomState(5)
    grey = np.full((10, 12, 3), 128, np.uint8)  # std 0 in every LAB channel
    ref = random_image(rs, (30, 30), 60, 200, tint=(20, 0, -20))
    result = ct.reinhard_transfer(grey, ref)
    assert np.all(result.image == result.image[0, 0])  # still flat, not blown up by 0/0
    ref_mean = lab_stats(ref)[0].astype(np.float32)
    want = cv2.cvtColor(ref_mean[None, None], cv2.COLOR_LAB2RGB)[0, 0] * 255
    assert np.abs(result.image[0, 0].astype(float) - want).max() <= 0.51


def test_grey_source_gets_the_reference_tint_without_amplified_noise():
    """The a and b channels of a grey gradient hold only conversion noise (std about 0.02): they are
    shifted to the reference's mean, not scaled up to its colourfulness; L is matched fully."""
    grey = np.repeat(np.linspace(60, 200, 64).astype(np.uint8)[None, :, None], 3, 2).repeat(8, 0)
    assert lab_stats(grey)[1][1:].max() < 0.1
    rs = np.random.RandomState(7)
    ref = random_image(rs, (30, 30), 70, 170, tint=(25, 0, -25))
    (mean, std), (ref_mean, ref_std) = lab_stats(ct.reinhard_transfer(grey, ref).image), lab_stats(ref)
    assert abs(mean[0] - ref_mean[0]) < MEAN_TOL and abs(std[0] - ref_std[0]) < STD_TOL
    assert np.abs(mean[1:] - ref_mean[1:]).max() < 1.0  # the tint, within rounding of single colours
    assert std[1:].max() < 1.0 < ref_std[1:].min()


def test_transfer_dispatch_and_none_is_identity():
    rs = np.random.RandomState(6)
    src, ref = random_image(rs, (20, 20), 70, 180), random_image(rs, (20, 20), 90, 150, tint=(20, 0, -20))
    none = ct.transfer("none", src)
    assert none.mode == ct.UNCHANGED and np.array_equal(none.image, src) and none.classes == ()
    assert ct.METHODS == ("none", "reinhard", "coesak")
    reinhard = ct.transfer("reinhard", src, ref)
    assert reinhard.mode == ct.WHOLE_IMAGE
    assert_moments_close(lab_stats(reinhard.image), lab_stats(ref))
    coesak = ct.transfer("coesak", src, ref, label=np.zeros((20, 20), np.uint8), reference_label=None)
    assert coesak.mode == ct.WHOLE_IMAGE and np.array_equal(coesak.image, ct.coesak_transfer(src, ref).image)
    # a reference of another size is resized to the image's first
    big = np.asarray(Image.fromarray(ref).resize((40, 30), Image.BICUBIC))
    assert np.array_equal(ct.coesak_transfer(src, big).image,
                          ct.coesak_transfer(src, np.asarray(Image.fromarray(big).resize((20, 20), Image.BICUBIC))).image)


@pytest.mark.parametrize("call, message", [
    (lambda img, lab: ct.transfer("histogram", img, img), "unknown colour transfer method 'histogram'"),
    (lambda img, lab: ct.transfer("reinhard", img), "needs a reference image"),
    (lambda img, lab: ct.reinhard_transfer(img.astype(np.float32), img), "uint8"),
    (lambda img, lab: ct.reinhard_transfer(img[..., 0], img), "HxWx3"),
    (lambda img, lab: ct.reinhard_transfer(img, img[..., :2]), "reference image"),
    (lambda img, lab: ct.reinhard_transfer(img, img[:0]), "non-empty"),
    (lambda img, lab: ct.reinhard_transfer(img, img, lab.astype(np.float32), lab), "integer class-id"),
    (lambda img, lab: ct.reinhard_transfer(img, img, lab, lab[..., None]), "reference label map"),
    (lambda img, lab: ct.reinhard_transfer(img, img, lab.astype(np.int32) - 1, lab), "outside 0..255"),
    (lambda img, lab: ct.reinhard_transfer(img, img, lab, lab, min_pixels=0), "min_pixels"),
    (lambda img, lab: ct.lab_moments(img, np.ones((4, 8), bool)), "bool array"),
    (lambda img, lab: ct.lab_moments(img, lab), "bool array"),
    (lambda img, lab: ct.lab_moments(img, np.zeros((8, 8), bool)), "selects no pixel"),
])
def test_bad_inputs_raise_value_error(call, message):
    img = np.full((8, 8, 3), 100, np.uint8)
    lab = np.zeros((8, 8), np.uint8)
    with pytest.raises(ValueError, match=message):
        call(img, lab)
