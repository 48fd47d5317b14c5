"""Tests of the procedural demo dataset (data.demo) and the demo segmenter (util.metrics.segmenter)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data.demo import TONE_NAMES, make_scene, pick_reference, scene_tone, write_dataset
from data.image_io import list_files, read_image, read_label
from data.labels import CLASS_ID, NUM_CLASSES
from util.metrics.segmenter import (DemoSegmenter, fit_from_folder, mask_accuracy, mean_mask_accuracy,
                            paired_files, pixel_features)
from util.metrics.scoring import style_correlation
from util.core.errors import DatasetError, OptionError, WeightsFileError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
W, H = 256, 192


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory):
    """40 training and 8 test pairs at 256x192, seed 0."""
    root = str(tmp_path_factory.mktemp("demo"))
    write_dataset(root, 40, W, H, seed=0, num_test=8, progress=False)
    return root


@pytest.fixture(scope="module")
def segmenter(demo_set):
    return fit_from_folder(os.path.join(demo_set, "train", "imgs"), os.path.join(demo_set, "train", "labels"))


def _stems(folder, ext):
    return [os.path.splitext(f)[0] for f in list_files(folder, ext)]


def _read_bytes(root):
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            path = os.path.join(dirpath, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = fh.read()
    return out


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "util.demo_data", *args], cwd=REPO, capture_output=True, text=True)


# ----------------------------------------------------------------------------- generator
def test_layout_counts_and_matching_stems(demo_set):
    train_imgs = _stems(os.path.join(demo_set, "train", "imgs"), (".jpg",))
    train_labels = _stems(os.path.join(demo_set, "train", "labels"), (".png",))
    test_imgs = _stems(os.path.join(demo_set, "test", "imgs"), (".jpg",))
    test_labels = _stems(os.path.join(demo_set, "test", "labels"), (".png",))
    assert len(train_imgs) == 40 and train_imgs == train_labels
    assert len(test_imgs) == 8 and test_imgs == test_labels
    assert train_imgs[0] == "demo_00000" and test_imgs[0] == "test_00000"
    assert not set(train_imgs) & set(test_imgs)
    assert sorted(os.listdir(demo_set)) == ["test", "train"]
    assert sorted(os.listdir(os.path.join(demo_set, "test"))) == ["imgs", "label_to_img.json", "labels"]


def test_photos_and_labels_are_valid(demo_set):
    seen = set()
    for split in ("train", "test"):
        for img_path, label_path in paired_files(os.path.join(demo_set, split, "imgs"),
                                                 os.path.join(demo_set, split, "labels")):
            image = read_image(img_path)
            label = read_label(label_path, NUM_CLASSES)  # validates single channel and ids < 29
            assert image.shape == (H, W, 3) and image.dtype == np.uint8
            assert label.shape == (H, W) and label.dtype == np.uint8
            assert label.max() < NUM_CLASSES
            classes = set(np.unique(label).tolist())
            assert CLASS_ID["sky"] in classes
            assert 3 <= len(classes) <= 14
            seen |= classes
            with Image.open(label_path) as f:
                assert f.mode == "L"
    names = {"sky", "mountain", "hill", "grass", "tree", "sea", "lake", "river", "water", "sand", "rock", "field"}
    assert {CLASS_ID[n] for n in names} - seen == set(), "expected these classes somewhere in 48 scenes"


def test_make_scene_is_pure_and_seed_dependent():
    rgb1, lab1 = make_scene(7, 96, 64)
    rgb2, lab2 = make_scene(np.random.default_rng(7), 96, 64)
    assert rgb1.shape == (64, 96, 3) and lab1.shape == (64, 96)
    assert np.array_equal(rgb1, rgb2) and np.array_equal(lab1, lab2)
    rgb3, _ = make_scene(8, 96, 64)
    assert not np.array_equal(rgb1, rgb3)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a, b, c = (str(tmp_path / n) for n in "abc")
    for root, seed in ((a, 3), (b, 3), (c, 4)):
        write_dataset(root, 4, 96, 64, seed=seed, num_test=2, progress=False)
    files_a, files_b, files_c = _read_bytes(a), _read_bytes(b), _read_bytes(c)
    assert len(files_a) == 13 and files_a == files_b
    assert os.path.join("test", "label_to_img.json") in files_a
    assert files_a.keys() == files_c.keys()
    assert all(files_a[k] != files_c[k] for k in files_a if k.endswith(".jpg"))


def test_image_k_does_not_depend_on_num(tmp_path):
    small, big = str(tmp_path / "small"), str(tmp_path / "big")
    write_dataset(small, 2, 96, 64, seed=1, num_test=1, progress=False)
    write_dataset(big, 5, 96, 64, seed=1, num_test=3, progress=False)
    files_small, files_big = _read_bytes(small), _read_bytes(big)
    pictures = [k for k in files_small if not k.endswith(".json")]  # the references depend on --num
    assert len(pictures) == 6 and all(files_big[k] == files_small[k] for k in pictures)


def test_default_num_test(tmp_path):
    assert write_dataset(str(tmp_path / "d"), 3, 64, 48, progress=False) == (3, 4)


# ----------------------------------------------------------------------------- tones
def _photos_and_tones(root, split, prefix):
    folder = os.path.join(root, split, "imgs")
    names = list_files(folder, (".jpg",))
    assert names == [f"{prefix}_{i:05d}.jpg" for i in range(len(names))]
    return [read_image(os.path.join(folder, n)) for n in names], [scene_tone(0, split, i) for i in range(len(names))]


def test_scene_tone_names_the_tone_make_scene_renders():
    for index in range(6):
        seed = [5, 0, index]
        rgb, label, tone = make_scene(seed, 64, 48, return_tone=True)
        assert tone == scene_tone(5, "train", index) and tone in TONE_NAMES
        rgb2, label2 = make_scene(seed, 64, 48)
        assert np.array_equal(rgb, rgb2) and np.array_equal(label, label2)


def test_tones_have_their_documented_colour_character(demo_set):
    images, tones = _photos_and_tones(demo_set, "train", "demo")
    assert set(tones) == set(TONE_NAMES), "all four tones among 40 scenes"
    import cv2

    def mean_of(tone, stat):
        return np.mean([stat(im.astype(np.float64)) for im, t in zip(images, tones) if t == tone])

    warmth = lambda im: (im[..., 0] - im[..., 2]).mean()  # noqa: E731
    brightness = lambda im: im.mean()  # noqa: E731
    saturation = lambda im: cv2.cvtColor(im.astype(np.uint8), cv2.COLOR_RGB2HSV)[..., 1].mean()  # noqa: E731
    assert mean_of("golden", warmth) > mean_of("midday", warmth) + 15
    assert mean_of("dusk", warmth) < mean_of("midday", warmth)
    assert mean_of("dusk", brightness) < 0.8 * min(mean_of(t, brightness) for t in ("midday", "golden", "overcast"))
    assert mean_of("overcast", saturation) < 0.7 * min(mean_of(t, saturation) for t in ("midday", "golden", "dusk"))


def test_same_tone_photos_correlate_more_in_the_style_metric(demo_set):
    test_images, test_tones = _photos_and_tones(demo_set, "test", "test")
    train_images, train_tones = _photos_and_tones(demo_set, "train", "demo")
    same, different = [], []
    for image, tone in zip(test_images, test_tones):
        for ref, ref_tone in zip(train_images, train_tones):
            (same if tone == ref_tone else different).append(style_correlation(image, ref))
    assert len(set(test_tones)) >= 2 and same and different
    assert np.mean(same) > np.mean(different) + 0.2, (np.mean(same), np.mean(different))


# ----------------------------------------------------------------------------- style references
def _class_counts(path):
    return np.bincount(read_label(path, NUM_CLASSES).ravel(), minlength=NUM_CLASSES)


def _best_reference(counts, candidates):
    """The rule, recomputed plainly: max class-set IoU, then max shared pixels, then the lowest index."""
    def key(j):
        a, b = set(np.flatnonzero(counts)), set(np.flatnonzero(candidates[j]))
        return len(a & b) / len(a | b), int(np.minimum(counts, candidates[j]).sum()), -j
    return max(range(len(candidates)), key=key)


def test_label_to_img_json_points_each_test_map_to_its_best_training_photo(demo_set):
    json_path = os.path.join(demo_set, "test", "label_to_img.json")
    with open(json_path, encoding="utf-8") as f:
        text = f.read()
    mapping = json.loads(text)
    assert text == json.dumps(mapping, sort_keys=True, indent=1) + "\n"
    test_labels = list_files(os.path.join(demo_set, "test", "labels"), (".png",))
    train_photos = list_files(os.path.join(demo_set, "train", "imgs"), (".jpg",))
    assert sorted(mapping) == test_labels
    assert set(mapping.values()) <= set(train_photos)
    train_counts = [_class_counts(os.path.join(demo_set, "train", "labels", n.replace(".jpg", ".png")))
                    for n in train_photos]
    for label_name, photo in mapping.items():
        counts = _class_counts(os.path.join(demo_set, "test", "labels", label_name))
        ref_counts = train_counts[train_photos.index(photo)]
        assert np.any((counts > 0) & (ref_counts > 0))
        assert photo == train_photos[_best_reference(counts, train_counts)], label_name
    assert len(set(mapping.values())) > 1


def test_pick_reference_tie_breaks():
    test = np.array([0.5, 0.3, 0.2, 0.0])
    candidates = np.array([[0.9, 0.0, 0.0, 0.1],    # IoU 1/4
                           [0.2, 0.7, 0.1, 0.0],    # IoU 1, shared 0.6
                           [0.4, 0.3, 0.3, 0.0],    # IoU 1, shared 0.9
                           [0.4, 0.3, 0.3, 0.0]])   # the same again: the lower index wins
    assert pick_reference(test, candidates) == 2
    assert pick_reference(test, candidates[[0, 1]]) == 1
    assert pick_reference(test, candidates[[0]]) == 0
    assert pick_reference(np.array([0.0, 0.0, 0.0, 1.0]), candidates) == 0  # the only one sharing a class


@pytest.mark.parametrize("kwargs", [dict(num=0), dict(num=-2), dict(width=-5), dict(height=0), dict(num_test=-1),
                                    dict(seed=-1)])
def test_write_dataset_rejects_bad_sizes(tmp_path, kwargs):
    args = dict(num=2, width=64, height=48, seed=0, num_test=1)
    args.update(kwargs)
    with pytest.raises(OptionError):
        write_dataset(str(tmp_path / "x"), progress=False, **args)


# ----------------------------------------------------------------------------- CLI
def test_cli_help():
    result = _run_cli("--help")
    assert result.returncode == 0
    for flag in ("--out", "--num", "--width", "--height", "--seed", "--num_test"):
        assert flag in result.stdout
    assert "label_to_img.json" in result.stdout and all(t in result.stdout for t in TONE_NAMES)


def test_cli_writes_dataset_and_summary(tmp_path):
    out = str(tmp_path / "cli")
    result = _run_cli("--out", out, "--num", "2", "--width", "64", "--height", "48", "--num_test", "1")
    assert result.returncode == 0, result.stderr
    assert "2 train" in result.stdout and "1 test" in result.stdout
    assert os.path.join(out, "test", "label_to_img.json") in result.stdout
    with open(os.path.join(out, "test", "label_to_img.json"), encoding="utf-8") as f:
        assert list(json.load(f)) == ["test_00000.png"]
    assert len(os.listdir(os.path.join(out, "train", "imgs"))) == 2


@pytest.mark.parametrize("bad", [["--num", "0"], ["--width", "-5"], ["--num", "abc"]])
def test_cli_bad_argument_is_a_clean_error(tmp_path, bad):
    result = _run_cli("--out", str(tmp_path / "bad"), *bad)
    assert result.returncode != 0
    assert "error" in result.stderr and "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "bad" / "train" / "imgs" / "demo_00000.jpg")


# ----------------------------------------------------------------------------- segmenter
def _test_split(root):
    pairs = paired_files(os.path.join(root, "test", "imgs"), os.path.join(root, "test", "labels"))
    return [read_image(a) for a, _ in pairs], [read_label(b, NUM_CLASSES) for _, b in pairs]


def test_segmenter_recovers_held_out_labels(demo_set, segmenter):
    images, gts = _test_split(demo_set)
    preds = [segmenter.predict(im) for im in images]
    assert all(p.shape == g.shape and p.dtype == np.uint8 for p, g in zip(preds, gts))
    assert mean_mask_accuracy(preds, gts) >= 0.90


def test_segmenter_tolerates_blur(demo_set, segmenter):
    import cv2
    images, gts = _test_split(demo_set)
    preds = [segmenter.predict(cv2.GaussianBlur(im, (0, 0), 2.0)) for im in images]
    assert mean_mask_accuracy(preds, gts) >= 0.90


def test_segmenter_save_load_round_trip(demo_set, segmenter, tmp_path):
    path = str(tmp_path / "seg.npz")
    segmenter.save(path)
    loaded = DemoSegmenter.load(path)
    images, _ = _test_split(demo_set)
    for im in images[:3]:
        assert np.array_equal(segmenter.predict(im), loaded.predict(im))
    assert loaded.config == segmenter.config


def test_pixel_features_context_columns_hold_the_mean_colour():
    image = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    feats = pixel_features(image)
    plain = pixel_features(image, context=False)
    assert feats.shape == (12 * 16, 7) and plain.shape == (12 * 16, 4)
    assert np.array_equal(feats[:, :4], plain)
    assert np.allclose(feats[:, 4:], plain[:, :3].mean(0), atol=1e-4)


def test_segmenter_reads_version_1_files_without_context(demo_set, tmp_path):
    images, gts = _test_split(demo_set)
    old = fit_from_folder(os.path.join(demo_set, "train", "imgs"), os.path.join(demo_set, "train", "labels"),
                          max_images=10, context=False)
    path = str(tmp_path / "old.npz")
    old.save(path)
    with np.load(path) as z:
        arrays = dict(z)
    config = json.loads(str(arrays["config"]))
    del config["context"]  # as version 1 wrote it
    arrays.update(version=np.array(1), config=np.array(json.dumps(config)))
    np.savez(path, **arrays)
    loaded = DemoSegmenter.load(path)
    assert loaded.config["context"] is False
    assert np.array_equal(loaded.predict(images[0]), old.predict(images[0]))


def test_segmenter_load_errors(tmp_path):
    with pytest.raises(WeightsFileError):
        DemoSegmenter.load(str(tmp_path / "missing.npz"))
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a model")
    with pytest.raises(WeightsFileError):
        DemoSegmenter.load(str(junk))


def test_segmenter_never_predicts_absent_classes():
    rng = np.random.default_rng(0)
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, :30] = (200, 30, 30)
    image[:, 30:] = (30, 30, 200)
    image = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
    label = np.zeros((40, 60), np.uint8)
    label[:, :30], label[:, 30:] = 3, 5
    seg = DemoSegmenter().fit([image], [label])
    assert seg.classes.tolist() == [3, 5]
    green = np.full((40, 60, 3), (30, 200, 30), np.uint8)  # unlike anything seen
    assert set(np.unique(seg.predict(green)).tolist()) <= {3, 5}
    assert mask_accuracy(seg.predict(image), label) > 0.95


def test_fit_from_folder_rejects_unpaired_labels(tmp_path):
    root = str(tmp_path / "d")
    write_dataset(root, 2, 64, 48, num_test=1, progress=False)
    os.remove(os.path.join(root, "train", "imgs", "demo_00001.jpg"))
    with pytest.raises(DatasetError, match="demo_00001"):
        fit_from_folder(os.path.join(root, "train", "imgs"), os.path.join(root, "train", "labels"))


def test_mask_accuracy_exact_values():
    gt = np.array([[0, 1], [2, 0]], np.uint8)
    assert mask_accuracy(np.array([[0, 1], [2, 3]], np.uint8), gt) == 0.75
    assert mask_accuracy(gt, gt) == 1.0
    assert mask_accuracy(np.full((2, 2), 9, np.uint8), gt) == 0.0
    # a smaller prediction is resized to the ground truth with nearest neighbour
    small = np.array([[1, 2]], np.uint8)
    big_gt = np.array([[1, 1, 2, 2], [1, 1, 2, 0]], np.uint8)
    assert mask_accuracy(small, big_gt) == 7 / 8
    assert mean_mask_accuracy([np.array([[0, 1], [2, 3]], np.uint8), small], [gt, big_gt]) == (0.75 + 7 / 8) / 2
    with pytest.raises(ValueError):
        mean_mask_accuracy([], [])
