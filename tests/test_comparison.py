"""The quality benchmark's statistics (util.metrics.comparison) and image statistics
(util.metrics.image_statistics) on cases whose answers are known."""

import cv2
import numpy as np
import pytest

from util.metrics import comparison as cmp
from util.metrics.fid_stats import frechet_distance, statistics_of
from util.metrics.image_statistics import DESCRIPTOR_SIZE, descriptor, sharpness, sharpness_ratio


def test_seed_interval_is_students_t():
    interval = cmp.seed_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / np.sqrt(3)  # t(0.975, 2) * sd 1 / sqrt(3)
    assert interval.mean == 2.0 and interval.n == 3
    assert interval.low == pytest.approx(2 - half) and interval.high == pytest.approx(2 + half)
    single = cmp.seed_interval([0.7])
    assert single.mean == 0.7 and np.isnan(single.low) and not single.excludes(0.0)


def test_identical_variants_are_no_difference():
    values = [0.81, 0.86, 0.9]
    verdict = cmp.paired_verdict(values, list(values))
    assert verdict.verdict == cmp.SAME and verdict.difference.mean == 0.0


def test_a_consistent_shift_is_real_and_its_direction_counts():
    base = [0.80, 0.86, 0.90, 0.84]
    worse = [b - 0.05 + e for b, e in zip(base, (0.004, -0.003, 0.002, -0.001))]
    assert cmp.paired_verdict(base, worse).verdict == cmp.WORSE
    assert cmp.paired_verdict(base, worse, higher_is_better=False).verdict == cmp.BETTER
    assert cmp.paired_verdict(worse, base).verdict == cmp.BETTER
    with pytest.raises(ValueError, match="same seeds"):
        cmp.paired_verdict(base, worse[:3])


def test_a_shift_smaller_than_the_seed_noise_is_not_claimed():
    base = [0.80, 0.90, 0.85]
    variant = [0.84, 0.86, 0.87]  # +0.04, -0.04, +0.02
    assert cmp.paired_verdict(base, variant).verdict == cmp.SAME


def test_false_verdicts_on_equal_variants_stay_near_the_confidence_level():
    rng = np.random.default_rng(0)
    trials, seeds = 4000, 3
    seed_effect = rng.normal(0, 0.03, size=(trials, seeds))  # shared by both variants of a seed
    a = 0.85 + seed_effect + rng.normal(0, 0.02, size=(trials, seeds))
    b = 0.85 + seed_effect + rng.normal(0, 0.02, size=(trials, seeds))
    claimed = np.mean([cmp.paired_verdict(x, y).verdict != cmp.SAME for x, y in zip(a, b)])
    assert 0.035 < claimed < 0.065
    shifted = np.mean([cmp.paired_verdict(x, y + 0.06).verdict == cmp.BETTER for x, y in zip(a[:500], b[:500])])
    assert shifted > 0.5


def test_bootstrap_over_images_resamples_whole_images():
    rng = np.random.default_rng(1)
    per_image = rng.normal(0.8, 0.1, size=400)
    interval = cmp.bootstrap_interval(per_image)
    half = 1.96 * 0.1 / np.sqrt(400)
    assert interval.low < interval.mean < interval.high and interval.n == 400
    assert interval.high - interval.low == pytest.approx(2 * half, rel=0.2)
    # a difference between seeds that is the same on every image adds no image uncertainty
    seeds = np.stack([np.full(50, 0.7), np.full(50, 0.9)])
    flat = cmp.bootstrap_interval(seeds)
    assert (flat.mean, flat.low, flat.high) == pytest.approx((0.8, 0.8, 0.8))
    with pytest.raises(ValueError):
        cmp.bootstrap_interval(np.zeros((2, 0)))


def _scene(seed, size=(96, 128)):
    rng = np.random.default_rng(seed)
    h, w = size
    image = np.zeros((h, w, 3), np.uint8)
    image[: h // 2] = rng.integers(120, 220, 3)
    image[h // 2:] = rng.integers(20, 120, 3)
    noise = rng.normal(0, 18, size=(h, w, 3))
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def test_blur_lowers_sharpness():
    photo = _scene(0)
    blurred = cv2.GaussianBlur(photo, (0, 0), 1.5)
    assert sharpness_ratio(photo, photo) == 1.0
    assert sharpness(blurred) < 0.2 * sharpness(photo)
    assert sharpness_ratio(blurred, photo) < 0.2
    assert np.isnan(sharpness_ratio(photo, np.full_like(photo, 9)))
    with pytest.raises(ValueError, match="uint8"):
        sharpness(photo.astype(np.float32))


def test_colour_texture_distance_sees_blur_and_colour_shifts():
    photos = [_scene(s) for s in range(60)]
    others = [_scene(s) for s in range(60, 120)]
    blurred = [cv2.GaussianBlur(p, (0, 0), 1.5) for p in others]
    tinted = [np.clip(p.astype(int) + (40, 0, -30), 0, 255).astype(np.uint8) for p in others]
    stats = {name: statistics_of([descriptor(p) for p in images])
             for name, images in (("photos", photos), ("others", others), ("blurred", blurred), ("tinted", tinted))}
    assert descriptor(photos[0]).shape == (DESCRIPTOR_SIZE,)
    same = frechet_distance(stats["photos"], stats["others"])
    assert frechet_distance(stats["photos"], stats["photos"]) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(stats["photos"], stats["blurred"]) > 3 * same
    assert frechet_distance(stats["photos"], stats["tinted"]) > 3 * same


def test_score_set_scores_each_held_out_image():
    from data.demo import make_scene
    from util.metrics.quality import HeldOutImage, PER_IMAGE, score_set
    from util.metrics.segmenter import DemoSegmenter

    scenes = [make_scene(s, 64, 48) for s in range(24)]
    segmenter = DemoSegmenter(max_samples=4000).fit([p for p, _ in scenes[:16]], [lab for _, lab in scenes[:16]])
    held_out = [HeldOutImage(label, photo, scenes[(i + 1) % 8][0]) for i, (photo, label) in enumerate(scenes[16:])]
    photos = [item.photo for item in held_out]
    as_photos = score_set(photos, held_out, segmenter)
    assert set(as_photos) == {*PER_IMAGE, "colour_texture_fd"}
    assert all(as_photos[name].shape == (8,) for name in PER_IMAGE)
    assert np.all(as_photos["sharpness_ratio"] == 1.0)
    assert abs(as_photos["colour_texture_fd"]) < 1e-2  # 8 images in 43 dimensions: round-off of a singular covariance
    shuffled = score_set(photos[1:] + photos[:1], held_out, segmenter)  # label maps shuffled against photos
    assert shuffled["mask_accuracy"].mean() < as_photos["mask_accuracy"].mean() - 0.2
    blurred = score_set([cv2.GaussianBlur(p, (0, 0), 1.2) for p in photos], held_out, segmenter)
    assert blurred["sharpness_ratio"].max() < 0.5 and blurred["colour_texture_fd"] > 1.0
    big = score_set([cv2.resize(p, (128, 96)) for p in photos], held_out, segmenter)  # resized to the label map
    assert big["mask_accuracy"].mean() > as_photos["mask_accuracy"].mean() - 0.05
    with pytest.raises(ValueError, match="one generated image per held-out"):
        score_set(photos[:3], held_out, segmenter)
