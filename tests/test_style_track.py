"""The style track: the VAE style encoder, the colour-style loss, reference mappings, and
generation that takes each image's style from its reference photo (after a short training
on demo data whose photos come in different colour tones)."""

import json
import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import run_script, tiny_train_opt
from data import references
from data.demo import scene_tone, write_dataset
from util.core.errors import DatasetError, OptionError

# -- encoder and losses -----------------------------------------------------------------------------------------------


def test_image_encoder_shapes_and_kld():
    import jittor as jt

    from models.encoder import ImageEncoder, kld_loss, reparameterize
    opt = tiny_train_opt("--use_vae", "--z_dim", "12")
    encoder = ImageEncoder(opt)
    mu, logvar = encoder(jt.array(np.random.RandomState(0).uniform(-1, 1, (2, 3, 96, 128)).astype(np.float32)))
    assert tuple(mu.shape) == (2, 12) and tuple(logvar.shape) == (2, 12)
    assert np.all(np.isfinite(mu.numpy())) and np.all(np.isfinite(logvar.numpy()))

    m = np.array([[0.5, -1.0, 0.0], [2.0, 0.1, -0.3]], np.float32)
    lv = np.array([[0.0, -0.5, 1.0], [0.2, -2.0, 0.0]], np.float32)
    expected = -0.5 * np.sum(1 + lv.astype(np.float64) - m.astype(np.float64) ** 2 - np.exp(lv.astype(np.float64)))
    assert kld_loss(jt.array(m), jt.array(lv)).item() == pytest.approx(expected, rel=1e-5)
    assert kld_loss(jt.zeros((2, 3)), jt.zeros((2, 3))).item() == pytest.approx(0.0, abs=1e-7)
    # the reparameterised draw has the encoder's mean and spread
    z = reparameterize(jt.full((4000, 2), 3.0), jt.full((4000, 2), float(np.log(0.25)))).numpy()
    assert abs(z.mean() - 3.0) < 0.03 and abs(z.std() - 0.5) < 0.03


def numpy_soft_histogram(images, bins):
    """Independent reference: triangular-kernel histograms per channel (no subsampling at these sizes)."""
    n, c = images.shape[:2]
    values = ((images.astype(np.float64) + 1) / 2).reshape(n, c, -1)
    centres = (np.arange(bins) + 0.5) / bins
    weights = np.maximum(0.0, 1 - np.abs(values[..., None] - centres) * bins)
    return (weights.sum(axis=2) / values.shape[2]).reshape(n, c * bins)


def test_colour_style_loss_against_numpy(fusion):
    import jittor as jt

    from models.loss import STYLE_BINS, colour_style_loss, soft_colour_histogram
    rng = np.random.RandomState(1)
    fake = rng.uniform(-1, 1, (2, 3, 12, 16)).astype(np.float32)
    style = (rng.uniform(-1, 1, (2, 3, 6, 8)) ** 3).astype(np.float32)
    hist = soft_colour_histogram(jt.array(fake)).numpy()
    np.testing.assert_allclose(hist, numpy_soft_histogram(fake, STYLE_BINS), atol=1e-6)
    h1, h2 = numpy_soft_histogram(fake, STYLE_BINS), numpy_soft_histogram(style, STYLE_BINS)
    corr = [np.corrcoef(a, b)[0, 1] for a, b in zip(h1, h2)]
    x = jt.array(fake)
    loss = colour_style_loss(x, jt.array(style))
    assert loss.item() == pytest.approx(1 - np.mean(corr), abs=1e-5)
    assert colour_style_loss(x, x).item() == pytest.approx(0.0, abs=1e-5)
    grad = jt.grad(loss, x).numpy()
    assert np.abs(grad).sum() > 0
    # a step against the gradient brings the histograms closer
    stepped = jt.array(np.clip(fake - 0.05 * grad / np.abs(grad).max(), -1, 1))
    assert colour_style_loss(stepped, jt.array(style)).item() < loss.item()


def test_soft_histogram_subsamples_large_images_on_a_grid(fusion):
    import jittor as jt

    from models.loss import soft_colour_histogram
    image = np.random.RandomState(2).uniform(-1, 1, (1, 3, 200, 240)).astype(np.float32)
    got = soft_colour_histogram(jt.array(image), bins=8, max_pixels=3000).numpy()
    # stride floor(sqrt(200 * 240 / 3000)) = 4
    np.testing.assert_allclose(got, numpy_soft_histogram(image[:, :, ::4, ::4], 8), atol=1e-6)


# -- reference mappings ----------------------------------------------------------------------------------------------

@pytest.fixture
def mapping_case(tmp_path):
    photos = tmp_path / "train" / "imgs"
    photos.mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        (photos / name).write_bytes(b"x")
    labels = ["x.png", "y.png", "z.png"]

    def write(mapping, text=None):
        path = tmp_path / "refs.json"
        path.write_text(text if text is not None else json.dumps(mapping))
        return str(path)
    return SimpleNamespace(photos=str(photos), labels=labels, write=write)


def test_resolve_complete_mapping(mapping_case):
    refs = references.resolve(mapping_case.write({"x.png": "a.jpg", "y.png": "b.jpg", "z.png": "a.jpg"}),
                              mapping_case.photos, mapping_case.labels)
    assert refs.photos == {"x.png": os.path.join(mapping_case.photos, "a.jpg"),
                           "y.png": os.path.join(mapping_case.photos, "b.jpg"),
                           "z.png": os.path.join(mapping_case.photos, "a.jpg")}
    assert refs.without_reference() == [] and refs.unknown_entries == []


@pytest.mark.parametrize("case, expect", [
    ("unknown", ["1 entry for label maps that are not in the label folder", "w.png"]),
    ("without", ["1 label map(s) have no reference photo entry", "z.png", "--allow_missing_ref"]),
    ("missing_file", ["1 reference photo(s) not found", "c.jpg", "(for y.png)", "--allow_missing_ref"]),
    ("malformed", ["not valid JSON"]),
    ("list", ["expected a JSON object"]),
])
def test_resolve_errors_name_the_problem(mapping_case, case, expect):
    mapping = {"x.png": "a.jpg", "y.png": "b.jpg", "z.png": "a.jpg"}
    text = None
    if case == "unknown":
        mapping["w.png"] = "a.jpg"
    elif case == "without":
        del mapping["z.png"]
    elif case == "missing_file":
        mapping["y.png"] = "c.jpg"
    elif case == "malformed":
        text = '{"x.png": '
    elif case == "list":
        text = '["a.jpg"]'
    path = mapping_case.write(mapping, text)
    with pytest.raises(DatasetError) as err:
        references.resolve(path, mapping_case.photos, mapping_case.labels)
    for part in [path, *expect]:
        assert part in str(err.value)


def test_allow_missing_lists_what_falls_back(mapping_case):
    path = mapping_case.write({"x.png": "a.jpg", "y.png": "gone.jpg", "w.png": "b.jpg"})
    refs = references.resolve(path, mapping_case.photos, mapping_case.labels, allow_missing=True)
    assert list(refs.photos) == ["x.png"]
    assert refs.without_entry == ["z.png"] and refs.missing_files == ["y.png"] and refs.unknown_entries == ["w.png"]
    summary = refs.summary(3)
    assert "1 of 3 label maps have a reference photo" in summary and "random style" in summary
    assert "1 without an entry (z.png)" in summary and "1 whose photo is missing (y.png)" in summary


def test_label_of_photo(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "lables").mkdir()
    (tmp_path / "lables" / "p.png").write_bytes(b"x")
    assert references.label_of_photo(str(tmp_path / "imgs" / "p.jpg")) == str(tmp_path / "lables" / "p.png")
    assert references.label_of_photo(str(tmp_path / "imgs" / "q.jpg")) is None


def generation_opt(tmp_path, **kw):
    labels = tmp_path / "test" / "labels"
    labels.mkdir(parents=True, exist_ok=True)
    values = dict(ref_json=None, img_path=str(tmp_path), allow_missing_ref=False, sample_style=False,
                  color_transfer="none", use_vae=True, input_path=str(labels), name="exp")
    values.update(kw)
    return SimpleNamespace(**values)


def test_from_options_rules(mapping_case, tmp_path):
    good = mapping_case.write({"x.png": "a.jpg", "y.png": "b.jpg", "z.png": "a.jpg"})
    opt = generation_opt(tmp_path, img_path=mapping_case.photos)
    # no default mapping next to the labels: nothing to do, and colour transfer has nothing to go on
    assert references.from_options(opt, mapping_case.labels) == (None, [])
    with pytest.raises(OptionError, match="needs reference photos.*--ref_json"):
        references.from_options(generation_opt(tmp_path, color_transfer="reinhard"), mapping_case.labels)
    # the default mapping is found next to the label folder
    shutil.copy(good, tmp_path / "test" / "label_to_img.json")
    refs, notes = references.from_options(opt, mapping_case.labels)
    assert len(refs.photos) == 3 and "mean code" in notes[-1]
    # 'none' switches it off
    assert references.from_options(generation_opt(tmp_path, ref_json="none"), mapping_case.labels)[0] is None
    # a model without a style encoder: a default mapping is skipped with a note, an explicit one is an error
    refs, notes = references.from_options(generation_opt(tmp_path, use_vae=False), mapping_case.labels)
    assert refs is None and "no style encoder" in notes[0]
    with pytest.raises(OptionError, match="without --use_vae.*--color_transfer reinhard"):
        references.from_options(generation_opt(tmp_path, use_vae=False, ref_json=good), mapping_case.labels)
    refs, notes = references.from_options(generation_opt(tmp_path, use_vae=False, ref_json=good,
                                                         color_transfer="reinhard", img_path=mapping_case.photos),
                                          mapping_case.labels)
    assert len(refs.photos) == 3 and notes[-1].endswith("reinhard colour transfer")


# -- a trained style model -------------------------------------------------------------------------------------------

STYLE_FLAGS = ["--ngf", "8", "--ndf", "8", "--spade_hidden", "16", "--num_D", "2", "--n_layers_D", "3",
               "--crop_size", "64", "--aspect_ratio", "1", "--num_upsampling_layers", "normal", "--no_vgg_loss",
               "--nThreads", "0", "--batchSize", "4", "--lambda_l1", "20", "--use_vae", "--z_dim", "16",
               "--lambda_style", "5", "--lr", "0.001", "--print_freq", "100", "--display_freq", "1000"]
STYLE_EPOCHS = 60


@pytest.fixture(scope="module")
def style_model(tmp_path_factory):
    """A demo set at 64x64 (48 training photos in four colour tones, 4 test label maps with their
    label_to_img.json) and a tiny --use_vae model trained on it for 720 iterations."""
    root = tmp_path_factory.mktemp("style")
    data = str(root / "data")
    write_dataset(data, num=48, width=64, height=64, seed=0, num_test=4, progress=False)
    ckpt = str(root / "ckpt")
    proc = run_script("train_phase.py", "--input_path", os.path.join(data, "train"), "--name", "style",
                      "--checkpoints_dir", ckpt, *STYLE_FLAGS, "--niter", str(STYLE_EPOCHS),
                      "--save_epoch_freq", str(STYLE_EPOCHS // 2))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert os.path.isfile(os.path.join(ckpt, "style", f"{STYLE_EPOCHS}_net_Es.pkl"))
    return SimpleNamespace(data=data, ckpt=ckpt, labels=os.path.join(data, "test", "labels"),
                           photos=os.path.join(data, "train", "imgs"))


def generate(model, out, *extra):
    proc = run_script("test_phase.py", "--input_path", model.labels, "--output_path", out, "--name", "style",
                      "--checkpoints_dir", model.ckpt, "--nThreads", "0", *extra)
    return proc


def score_style(gen, labels, ref_json, ref_dir, tmp_path, tag):
    out = str(tmp_path / f"score_{tag}.json")
    proc = run_script("util/score.py", "--gen", gen, "--labels", labels, "--ref_json", ref_json, "--ref_dir", ref_dir,
                      "--json", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(out) as f:
        return json.load(f)["terms"]["style"]["style_similarity"]


def test_references_of_different_tone_steer_the_style(style_model, tmp_path):
    tones = {}
    for i in range(48):
        tones.setdefault(scene_tone(0, "train", i), f"demo_{i:05d}.jpg")
    warm, cool = tones["golden"], tones["dusk"]
    labels = sorted(os.listdir(style_model.labels))
    maps = {}
    for ref in (warm, cool):
        maps[ref] = str(tmp_path / f"{ref}.json")
        with open(maps[ref], "w") as f:
            json.dump({name: ref for name in labels}, f)
        proc = generate(style_model, str(tmp_path / ref), "--ref_json", maps[ref])
        assert proc.returncode == 0, proc.stderr[-2000:]
    for ref, other in ((warm, cool), (cool, warm)):
        own = score_style(str(tmp_path / ref), style_model.labels, maps[ref], style_model.photos, tmp_path, "own")
        cross = score_style(str(tmp_path / ref), style_model.labels, maps[other], style_model.photos, tmp_path, "x")
        assert own > cross + 0.03, (ref, own, cross)


def test_default_mapping_is_used_and_deterministic(style_model, tmp_path):
    first = generate(style_model, str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr[-2000:]
    assert "4 of 4 label maps have a reference photo" in first.stdout
    assert "label_to_img.json" in first.stdout and "mean code" in first.stdout
    assert sorted(os.listdir(tmp_path / "a")) == [f"test_{i:05d}.jpg" for i in range(4)]
    # the mean code does not depend on the seed; a sampled code does, reproducibly
    assert generate(style_model, str(tmp_path / "b"), "--seed", "5").returncode == 0
    for opts, name in ((["--sample_style", "--seed", "5"], "c"), (["--sample_style", "--seed", "5"], "d"),
                       (["--ref_json", "none"], "e")):
        assert generate(style_model, str(tmp_path / name), *opts).returncode == 0
    same = [(tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in os.listdir(tmp_path / "a")]
    assert all(same)
    for f in os.listdir(tmp_path / "a"):
        assert (tmp_path / "c" / f).read_bytes() == (tmp_path / "d" / f).read_bytes()
        assert (tmp_path / "c" / f).read_bytes() != (tmp_path / "a" / f).read_bytes()
        assert (tmp_path / "e" / f).read_bytes() != (tmp_path / "a" / f).read_bytes()


def test_mapping_problems_are_reported(style_model, tmp_path):
    with open(references.default_json(style_model.labels)) as f:
        mapping = json.load(f)
    del mapping["test_00001.png"]
    mapping["test_00002.png"] = "no_such_photo.jpg"
    broken = str(tmp_path / "broken.json")
    with open(broken, "w") as f:
        json.dump(mapping, f)
    proc = generate(style_model, str(tmp_path / "out"), "--ref_json", broken)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert "test_00001.png" in proc.stderr and "no reference photo entry" in " ".join(proc.stderr.split())
    assert not os.path.exists(tmp_path / "out")
    proc = generate(style_model, str(tmp_path / "out"), "--ref_json", broken, "--allow_missing_ref")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 of 4 label maps have a reference photo" in proc.stdout and "random style" in proc.stdout
    assert len(os.listdir(tmp_path / "out")) == 4


def test_colour_transfer_at_generation(style_model, tmp_path):
    from data.colour_transfer import lab_moments
    from data.image_io import read_image
    proc = generate(style_model, str(tmp_path / "ct"), "--color_transfer", "reinhard", "--image_format", "png")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "reinhard colour transfer" in proc.stdout
    plain = str(tmp_path / "plain")
    assert generate(style_model, plain, "--image_format", "png").returncode == 0
    with open(references.default_json(style_model.labels)) as f:
        mapping = json.load(f)
    closer = 0
    for label, photo in mapping.items():
        stem = os.path.splitext(label)[0]
        ref = np.concatenate(lab_moments(read_image(os.path.join(style_model.photos, photo))))
        before = np.abs(np.concatenate(lab_moments(read_image(os.path.join(plain, stem + ".png")))) - ref).sum()
        after = np.abs(np.concatenate(lab_moments(read_image(str(tmp_path / "ct" / (stem + ".png"))))) - ref).sum()
        closer += after < before
    assert closer >= 3  # regions matched class by class move the whole-image moments towards the reference


def test_averaged_checkpoints_keep_the_style_encoder(style_model, tmp_path):
    folder = os.path.join(style_model.ckpt, "style")
    proc = run_script("util/merge_ckpt.py", folder, str(STYLE_EPOCHS // 2), str(STYLE_EPOCHS), "--out", "avg_test",
                      "--force")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert os.path.isfile(os.path.join(folder, "avg_test_net_Es.pkl"))
    proc = generate(style_model, str(tmp_path / "avg"), "--which_epoch", "avg_test")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(os.listdir(tmp_path / "avg")) == 4


def test_style_encoder_trains_with_the_progressive_recipe(style_model, tmp_path):
    proc = run_script("train_phase.py", "--input_path", os.path.join(style_model.data, "train"), "--name", "pg",
                      "--checkpoints_dir", str(tmp_path), *STYLE_FLAGS, "--max_dataset_size", "8",
                      "--pg_niter", "2", "--niter", "3", "--save_epoch_freq", "1", "--print_freq", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "progressive pre-training finished" in proc.stdout
    with open(tmp_path / "pg" / "loss_log.txt") as f:
        log = f.read()
    assert "KLD:" in log and "G_style:" in log
    from util.core.checkpoint import read_net
    before, after = read_net(str(tmp_path / "pg"), "1", "Es"), read_net(str(tmp_path / "pg"), "3", "Es")
    assert any(not np.array_equal(before[k], after[k]) for k in before)  # the encoder learns during and after
    proc = run_script("test_phase.py", "--input_path", style_model.labels, "--output_path", str(tmp_path / "out"),
                      "--name", "pg", "--checkpoints_dir", str(tmp_path), "--nThreads", "0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "4 of 4 label maps have a reference photo" in proc.stdout
