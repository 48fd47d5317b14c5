"""The challenge scorer: histogram correlation and formulas (util/metrics/scoring.py),
and the command line util/score.py with its segmenters, style references and FID."""

import json
import os
import shutil

import cv2
import numpy as np
import pytest

from conftest import run_script
from data.image_io import read_image, read_label, save_image
from util import score
from util.metrics import scoring
from util.core.errors import DatasetError, OptionError, WeightsFileError

SCRIPT = os.path.join("util", "score.py")


def test_find_generated_takes_jpg_then_png(tmp_path):
    from util.metrics.segmenter import find_generated
    for name in ("a.png", "b.jpg", "b.png"):
        (tmp_path / name).write_bytes(b"")
    assert find_generated(str(tmp_path), "a") == str(tmp_path / "a.png")
    assert find_generated(str(tmp_path), "b") == str(tmp_path / "b.jpg")
    with pytest.raises(DatasetError, match="no generated image for c"):
        find_generated(str(tmp_path), "c")


def run_json(tmp_path, *args):
    """Run util.score.main in-process; return its JSON result."""
    out = str(tmp_path / "score.json")
    assert score.main([*args, "--gpu", "off", "--json", out]) == 0
    with open(out) as f:
        return json.load(f)


def split(dataset, name):
    return os.path.join(dataset, name, "imgs"), os.path.join(dataset, name, "labels")


# -- histogram correlation -----------------------------------------------------------------------------------------

def opencv_correlation(a, b):
    def hist(img):
        hs = [cv2.calcHist([np.ascontiguousarray(img[..., c])], [0], None, [256], [0, 256]) for c in range(3)]
        return np.concatenate([h / h.sum() for h in hs]).astype(np.float32)
    return cv2.compareHist(hist(a), hist(b), cv2.HISTCMP_CORREL)


def numpy_correlation(a, b):
    def hist(img):
        return np.concatenate([np.histogram(img[..., c], bins=256, range=(0, 256))[0] / img[..., c].size
                               for c in range(3)])
    return float(np.corrcoef(hist(a), hist(b))[0, 1])


def test_histogram_definition():
    img = np.zeros((2, 3, 3), np.uint8)
    img[..., 0] = 255
    img[0, 0] = (10, 20, 30)
    h = scoring.colour_histogram(img)
    assert h.shape == (768,) and h.dtype == np.float64
    assert np.allclose([h[:256].sum(), h[256:512].sum(), h[512:].sum()], 1.0)
    assert h[255] == pytest.approx(5 / 6) and h[10] == pytest.approx(1 / 6)
    assert h[256 + 20] == pytest.approx(1 / 6) and h[256 + 0] == pytest.approx(5 / 6)
    assert h[512 + 30] == pytest.approx(1 / 6)


def test_correlation_equals_opencv_and_numpy(tiny_dataset):
    rs = np.random.RandomState(3)
    photos = [read_image(os.path.join(split(tiny_dataset, "train")[0], f))
              for f in sorted(os.listdir(split(tiny_dataset, "train")[0]))[:4]]
    pairs = [(photos[0], photos[1]), (photos[2], photos[3][:50, :70]),  # sizes may differ
             (rs.randint(0, 256, (40, 30, 3)).astype(np.uint8), photos[0]),
             (np.clip(photos[1].astype(int) * 1.3 - 20, 0, 255).astype(np.uint8), photos[1])]
    for a, b in pairs:
        got = scoring.style_correlation(a, b)
        assert got == pytest.approx(opencv_correlation(a, b), abs=1e-5)
        assert got == pytest.approx(numpy_correlation(a, b), abs=1e-12)
        assert -1.0 <= got <= 1.0


def test_identical_is_one_and_inverted_is_lower(tiny_dataset):
    photo = read_image(os.path.join(split(tiny_dataset, "test")[0], "test_00000.jpg"))
    assert scoring.style_correlation(photo, photo) == pytest.approx(1.0, abs=1e-12)
    inverted = scoring.style_correlation(255 - photo, photo)
    assert inverted < 0.5
    assert scoring.style_similarity(inverted) < scoring.style_similarity(1.0) == 1.0
    assert scoring.style_similarity(-1.0) == 0.0 and scoring.style_similarity(0.0) == 0.5


def test_constant_histograms_follow_opencv():
    flat = np.full(768, 1 / 256)  # every value equally often in each channel
    assert scoring.histogram_correlation(flat, flat) == 1.0
    assert cv2.compareHist(flat.astype(np.float32), flat.astype(np.float32), cv2.HISTCMP_CORREL) == 1.0


# -- formulas -------------------------------------------------------------------------------------------------------

def test_formulas_on_known_numbers():
    # main: 0.8 * (6/10*0.5 + (100-40)/100*0.5) = 0.8 * (0.3 + 0.3)
    assert scoring.main_track_score(0.8, 6, 40) == pytest.approx(0.48)
    # style: 0.8 * (6*0.2 + (0.5*0.5+0.5)*0.3 + 0.3) = 0.8 * (1.2 + 0.225 + 0.3); aesthetic*0.2 as written (no /10)
    assert scoring.style_track_score(0.8, 6, 0.5, 40) == pytest.approx(1.38)
    # an FID above 100 makes the FID term negative: 1.0 * (10/10*0.5 + (100-150)/100*0.5) = 0.25
    assert scoring.main_track_score(1.0, 10, 150) == pytest.approx(0.25)
    assert scoring.style_track_score(0.5, 0, -1.0, 0) == pytest.approx(0.25)

    full = scoring.evaluate_formulas(mask_acc=0.8, aesthetic=6, fid=40, style=0.5)
    assert full["main_track"]["available"] and full["main_track"]["missing"] == []
    assert full["main_track"]["value"] == pytest.approx(0.48)
    assert full["style_track"]["value"] == pytest.approx(1.38)

    no_fid = scoring.evaluate_formulas(mask_acc=0.8, aesthetic=6, style=0.5)
    assert no_fid["main_track"]["value"] is None and no_fid["main_track"]["missing"] == ["fid"]
    assert no_fid["main_track"]["partial_value"] == pytest.approx(0.24)  # missing FID term adds 0, not FID = 0
    assert no_fid["style_track"]["partial_value"] == pytest.approx(0.8 * (1.2 + 0.225))

    no_mask = scoring.evaluate_formulas(aesthetic=6, fid=40)
    assert no_mask["main_track"]["missing"] == ["mask_acc"]
    assert no_mask["style_track"]["missing"] == ["mask_acc", "style"]
    assert no_mask["main_track"]["partial_value"] is None and no_mask["main_track"]["value"] is None


# -- mask accuracy ------------------------------------------------------------------------------------------------

def test_demo_segmenter_real_photos_high_flat_grey_low(tiny_dataset, tmp_path):
    test_imgs, test_labels = split(tiny_dataset, "test")
    seg_file = str(tmp_path / "seg.npz")
    real = run_json(tmp_path, "--gen", test_imgs, "--labels", test_labels, "--segmenter", "demo",
                    "--seg_train", os.path.join(tiny_dataset, "train"), "--save_segmenter", seg_file)
    assert real["terms"]["mask_accuracy"]["value"] > 0.9
    assert os.path.isfile(seg_file)
    assert set(real["per_image"]) == {"test_00000.png", "test_00001.png", "test_00002.png"}

    grey, big = tmp_path / "grey", tmp_path / "big"
    for name in os.listdir(test_imgs):
        photo = read_image(os.path.join(test_imgs, name))
        stem = os.path.splitext(name)[0]
        save_image(str(grey / (stem + ".png")), np.full_like(photo, 128))
        big_photo = cv2.resize(photo, (photo.shape[1] * 2, photo.shape[0] * 2), interpolation=cv2.INTER_CUBIC)
        save_image(str(big / (stem + ".png")), big_photo)
    flat = run_json(tmp_path, "--gen", str(grey), "--labels", test_labels, "--segmenter_file", seg_file)
    assert flat["terms"]["mask_accuracy"]["value"] < 0.5
    # a generated image of twice the label map's size is resized to it before segmentation
    resized = run_json(tmp_path, "--gen", str(big), "--labels", test_labels, "--segmenter_file", seg_file)
    assert resized["terms"]["mask_accuracy"]["value"] > 0.9


def test_plugin_segmenter_returning_ground_truth_scores_one(tiny_dataset, tmp_path):
    test_imgs, test_labels = split(tiny_dataset, "test")
    out = str(tmp_path / "oracle.json")
    proc = run_script(SCRIPT, "--gen", test_imgs, "--labels", test_labels, "--gpu", "off", "--json", out,
                      "--segmenter", "tests.oracle_segmenter:factory",
                      "--segmenter_weights", os.path.join(tiny_dataset, "test"))
    assert proc.returncode == 0, proc.stderr
    with open(out) as f:
        result = json.load(f)
    assert result["terms"]["mask_accuracy"]["value"] == 1.0
    assert all(row["mask_accuracy"] == 1.0 for row in result["per_image"].values())
    assert "mask accuracy" in proc.stdout and "missing: aesthetic, fid" in proc.stdout and out in proc.stdout


@pytest.mark.parametrize("spec, message", [
    ("tests.no_such_module:factory", "no module named 'tests.no_such_module'"),
    ("tests.oracle_segmenter:no_such_factory", "has no callable 'no_such_factory'"),
    ("tests.oracle_segmenter", "must be 'demo' or MODULE:FACTORY"),
])
def test_bad_plugin_names_are_clear_errors(tiny_dataset, spec, message):
    test_imgs, test_labels = split(tiny_dataset, "test")
    proc = run_script(SCRIPT, "--gen", test_imgs, "--labels", test_labels, "--gpu", "off", "--segmenter", spec)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and message in proc.stderr and "Traceback" not in proc.stderr


def test_segmenter_option_conflicts():
    base = ["--gen", ".", "--labels", "."]
    with pytest.raises(OptionError, match="exactly one of --seg_train"):
        score.main([*base, "--segmenter", "demo"])
    with pytest.raises(OptionError, match="for --segmenter demo only"):
        score.main([*base, "--segmenter", "m:f", "--seg_train", "x"])
    with pytest.raises(OptionError, match="need --segmenter"):
        score.main([*base, "--segmenter_weights", "w"])


def test_without_segmenter_mask_accuracy_and_formulas_are_unavailable(tiny_dataset, tmp_path):
    result = run_json(tmp_path, "--gen", split(tiny_dataset, "test")[0], "--labels", split(tiny_dataset, "test")[1],
                      "--aesthetic", "7")
    assert result["terms"]["mask_accuracy"]["available"] is False
    assert "--segmenter" in result["terms"]["mask_accuracy"]["reason"]
    for formula in result["formulas"].values():
        assert formula["value"] is None and formula["partial_value"] is None and "mask_acc" in formula["missing"]
    assert result["available_terms"] == ["aesthetic"]


# -- style similarity -----------------------------------------------------------------------------------------------

def write_refs(tmp_path, mapping, text=None):
    path = tmp_path / "refs.json"
    path.write_text(text if text is not None else json.dumps(mapping))
    return str(path)


def test_style_similarity_against_reference_photos(tiny_dataset, tmp_path):
    test_imgs, test_labels = split(tiny_dataset, "test")
    train_imgs = split(tiny_dataset, "train")[0]
    own = {f"test_0000{i}.png": f"test_0000{i}.jpg" for i in range(3)}
    same = run_json(tmp_path, "--gen", test_imgs, "--labels", test_labels, "--ref_json", write_refs(tmp_path, own),
                    "--ref_dir", test_imgs)
    assert same["terms"]["style"]["style_corr"] == pytest.approx(1.0)
    assert same["terms"]["style"]["style_similarity"] == pytest.approx(1.0)

    other = {f"test_0000{i}.png": f"demo_0000{i}.jpg" for i in range(3)}
    result = run_json(tmp_path, "--gen", test_imgs, "--labels", test_labels, "--ref_json",
                      write_refs(tmp_path, other), "--ref_dir", train_imgs)
    style = result["terms"]["style"]
    want = [scoring.style_correlation(read_image(os.path.join(test_imgs, f"test_0000{i}.jpg")),
                                      read_image(os.path.join(train_imgs, f"demo_0000{i}.jpg"))) for i in range(3)]
    assert [result["per_image"][f"test_0000{i}.png"]["style_corr"] for i in range(3)] == pytest.approx(want)
    assert style["style_corr"] == pytest.approx(np.mean(want)) and style["style_corr"] < 1.0
    assert style["style_similarity"] == pytest.approx((np.mean(want) + 1) / 2)
    assert result["color_transfer"]["available"] is False  # --color_transfer defaults to none
    assert all("style_corr_transferred" not in row for row in result["per_image"].values())


def test_color_transfer_raises_style_similarity_side_by_side(tiny_dataset, tmp_path, capsys):
    test_imgs, test_labels = split(tiny_dataset, "test")
    train_imgs, train_labels = split(tiny_dataset, "train")
    refs = write_refs(tmp_path, {f"test_0000{i}.png": f"demo_0000{i}.jpg" for i in range(3)})
    saved, seg_file = tmp_path / "transferred", str(tmp_path / "seg.npz")
    result = run_json(tmp_path, "--gen", test_imgs, "--labels", test_labels, "--ref_json", refs,
                      "--ref_dir", train_imgs, "--color_transfer", "reinhard", "--save_transferred", str(saved),
                      "--seg_train", os.path.join(tiny_dataset, "train"), "--save_segmenter", seg_file)
    out = capsys.readouterr().out
    assert "as generated" in out and "transferred" in out and "3 image(s) per class region" in out
    transfer = result["color_transfer"]
    assert transfer["available"] and transfer["method"] == "reinhard"
    assert transfer["images_per_mode"] == {"regions": 3, "whole image": 0}
    before, after = transfer["as_generated"], transfer["transferred"]
    assert before["style_corr"] == result["terms"]["style"]["style_corr"]
    assert before["mask_accuracy"] == result["terms"]["mask_accuracy"]["value"]
    assert after["style_similarity"] > before["style_similarity"] + 0.1  # on these data: 0.61 -> 0.85
    assert after["style_similarity"] == pytest.approx((after["style_corr"] + 1) / 2)
    assert 0.0 <= after["mask_accuracy"] <= 1.0
    assert "as generated only" in transfer["fid"]
    for i in range(3):
        name, row = f"test_0000{i}.png", result["per_image"][f"test_0000{i}.png"]
        assert row["transfer_mode"] == "regions"
        assert row["reference_label"] == os.path.join(train_labels, f"demo_0000{i}.png")
        label = read_label(os.path.join(test_labels, name), 29)
        ref_label = read_label(row["reference_label"], 29)
        counts, ref_counts = np.bincount(label.ravel(), minlength=256), np.bincount(ref_label.ravel(), minlength=256)
        shared = (counts >= 16) & (ref_counts >= 16)
        assert row["transfer_classes"] == np.flatnonzero(shared).tolist()
        image, generated = read_image(str(saved / f"test_0000{i}.png")), read_image(row["generated"])
        kept = ~np.isin(label, row["transfer_classes"])
        assert np.array_equal(image[kept], generated[kept]) and not np.array_equal(image, generated)
    assert np.mean([row["style_corr_transferred"] for row in result["per_image"].values()]) == pytest.approx(
        after["style_corr"])
    # the saved images are the transferred ones: scored as generated, they give the transferred column
    again = run_json(tmp_path, "--gen", str(saved), "--labels", test_labels, "--ref_json", refs,
                     "--ref_dir", train_imgs, "--segmenter_file", seg_file)
    assert again["terms"]["style"]["style_corr"] == pytest.approx(after["style_corr"], abs=1e-12)
    assert again["terms"]["mask_accuracy"]["value"] == pytest.approx(after["mask_accuracy"], abs=1e-12)


def test_color_transfer_of_whole_image_when_the_reference_has_no_label_map(tiny_dataset, tmp_path):
    test_imgs, test_labels = split(tiny_dataset, "test")
    photos = tmp_path / "photos"  # reference photos without a labels/ folder beside them
    shutil.copytree(split(tiny_dataset, "train")[0], photos)
    refs = write_refs(tmp_path, {f"test_0000{i}.png": f"demo_0000{i}.jpg" for i in range(3)})
    result = run_json(tmp_path, "--gen", test_imgs, "--labels", test_labels, "--ref_json", refs,
                      "--ref_dir", str(photos), "--color_transfer", "reinhard")
    transfer = result["color_transfer"]
    assert transfer["images_per_mode"] == {"regions": 0, "whole image": 3}
    assert transfer["transferred"]["style_corr"] > transfer["as_generated"]["style_corr"]
    assert transfer["transferred"]["mask_accuracy"] is None and transfer["as_generated"]["mask_accuracy"] is None
    for row in result["per_image"].values():
        assert row["reference_label"] is None and row["transfer_mode"] == "whole image"
        assert row["transfer_classes"] == [] and "mask_accuracy_transferred" not in row


def test_color_transfer_option_errors(tiny_dataset):
    test_imgs, test_labels = split(tiny_dataset, "test")
    proc = run_script(SCRIPT, "--gen", test_imgs, "--labels", test_labels, "--color_transfer", "reinhard")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert "--color_transfer reinhard needs --ref_json and --ref_dir" in " ".join(proc.stderr.split())
    with pytest.raises(OptionError, match="needs --color_transfer reinhard"):
        score.main(["--gen", test_imgs, "--labels", test_labels, "--save_transferred", "x"])


@pytest.mark.parametrize("case", ["missing_photo", "unknown_label", "label_without_entry", "malformed",
                                  "not_a_mapping", "missing_json"])
def test_style_reference_errors_are_clear(tiny_dataset, tmp_path, case):
    test_imgs, test_labels = split(tiny_dataset, "test")
    mapping = {f"test_0000{i}.png": f"test_0000{i}.jpg" for i in range(3)}
    text, expect = None, []
    if case == "missing_photo":
        mapping["test_00001.png"] = "gone.jpg"
        expect = [os.path.join(test_imgs, "gone.jpg"), "test_00001.png", "not found"]
    elif case == "unknown_label":
        mapping["nothing_here.png"] = "test_00000.jpg"
        expect = ["nothing_here.png", "not in the label folder"]
    elif case == "label_without_entry":
        del mapping["test_00002.png"]
        expect = ["test_00002.png", "no reference photo entry"]
    elif case == "malformed":
        text, expect = '{"test_00000.png": "test_00000.jpg",', ["not valid JSON"]
    elif case == "not_a_mapping":
        text, expect = '["test_00000.jpg"]', ["expected a JSON object"]
    json_path = write_refs(tmp_path, mapping, text)
    if case == "missing_json":
        json_path, expect = str(tmp_path / "absent.json"), ["not found"]
    proc = run_script(SCRIPT, "--gen", test_imgs, "--labels", test_labels, "--ref_json", json_path,
                      "--ref_dir", test_imgs)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    flat = " ".join(proc.stderr.split())  # run_main wraps long messages at spaces
    for part in [json_path, *expect]:
        assert part in flat, (part, proc.stderr)


def test_missing_generated_image_is_named(tiny_dataset, tmp_path):
    test_imgs, test_labels = split(tiny_dataset, "test")
    gen = tmp_path / "gen"
    shutil.copytree(test_imgs, gen)
    os.remove(gen / "test_00001.jpg")
    with pytest.raises(DatasetError, match="test_00001.jpg or test_00001.png"):
        score.main(["--gen", str(gen), "--labels", test_labels])


# -- FID ------------------------------------------------------------------------------------------------------------

def test_all_terms_with_fid(tiny_dataset, tmp_path, fid_weights_file, capsys):
    test_imgs, test_labels = split(tiny_dataset, "test")
    refs = write_refs(tmp_path, {f"test_0000{i}.png": f"demo_0000{i}.jpg" for i in range(3)})
    result = run_json(tmp_path, "--gen", test_imgs, "--labels", test_labels,
                      "--train_imgs", split(tiny_dataset, "train")[0], "--inception_weights", fid_weights_file,
                      "--stats_cache", str(tmp_path / "cache"),
                      "--segmenter", "tests.oracle_segmenter:factory",
                      "--segmenter_weights", os.path.join(tiny_dataset, "test"),
                      "--ref_json", refs, "--ref_dir", split(tiny_dataset, "train")[0], "--aesthetic", "6")
    fid = result["terms"]["fid"]["value"]
    assert result["terms"]["fid"]["available"] and np.isfinite(fid) and fid > 0
    assert result["available_terms"] == ["mask_accuracy", "fid", "style", "aesthetic"]
    assert os.listdir(tmp_path / "cache")  # the training photos' statistics were cached
    style = result["terms"]["style"]["style_corr"]
    main, style_track = result["formulas"]["main_track"], result["formulas"]["style_track"]
    assert main["available"] and main["value"] == pytest.approx(scoring.main_track_score(1.0, 6, fid))
    assert style_track["value"] == pytest.approx(scoring.style_track_score(1.0, 6, style, fid))
    assert "FID" in capsys.readouterr().out


def test_fid_unavailable_without_weights(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default weights path is relative: nothing there
    test_imgs, test_labels = split(tiny_dataset, "test")
    train_imgs = split(tiny_dataset, "train")[0]
    result = run_json(tmp_path, "--gen", test_imgs, "--labels", test_labels, "--train_imgs", train_imgs)
    fid = result["terms"]["fid"]
    assert fid["available"] is False and fid["value"] is None
    assert "pt_inception-2015-12-05-6726825d.pth" in fid["reason"] and "--inception_weights" in fid["reason"]
    assert "fid" in result["formulas"]["main_track"]["missing"]
    with pytest.raises(WeightsFileError, match="FID Inception weights not found"):
        score.main(["--gen", test_imgs, "--labels", test_labels, "--train_imgs", train_imgs, "--gpu", "off",
                    "--inception_weights", str(tmp_path / "absent.pth")])
