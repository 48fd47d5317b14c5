"""The pure-colour dictionary (data.pure_colour): finding single-class training pairs, the
dictionary file, the replacement rule, the options and the --use_pure switch of test_phase.py."""

import os

import numpy as np
import pytest

from conftest import TINY_NET_FLAGS, run_script
from data import pure_colour
from util import pure_colour as pure_colour_command
from data.image_io import read_image, save_image, save_label
from data.transforms import resize_image
from util.core import checkpoint
from util.core.errors import CheckpointError, UserError

SKY, SEA, MOUNTAIN = 1, 3, 0
W, H = 32, 24


def write_pair(root, name, label, seed):
    rgb = np.random.RandomState(seed).randint(0, 256, label.shape + (3,)).astype(np.uint8)
    save_image(os.path.join(root, "imgs", name + ".png"), rgb)
    save_label(os.path.join(root, "labels", name + ".png"), label)
    return rgb


def full(cid, w=W, h=H):
    return np.full((h, w), cid, np.uint8)


@pytest.fixture
def train_dir(tmp_path):
    """a_sky, d_sky, c_sea are single-class; b_mixed and e_almost (one mountain pixel) are not."""
    root = str(tmp_path / "train")
    mixed = full(SKY)
    mixed[H // 2:] = SEA
    almost = full(SKY)
    almost[0, 0] = MOUNTAIN
    for seed, (name, label) in enumerate([("a_sky", full(SKY)), ("b_mixed", mixed), ("c_sea", full(SEA)),
                                          ("d_sky", full(SKY)), ("e_almost", almost)]):
        write_pair(root, name, label, seed)
    return root


class Counter:
    total = None

    def __init__(self):
        self.n = 0

    def update(self, n):
        self.n += n


def names(pairs):
    return [(os.path.basename(i), os.path.basename(label)) for i, label in pairs]


# -- finding and building -----------------------------------------------------------------------

def test_find_pure_pairs_returns_exactly_the_single_class_pairs(train_dir):
    counter = Counter()
    found = pure_colour.find_pure_pairs(train_dir, 29, progress=counter)
    assert list(found) == [SKY, SEA]
    assert names(found[SKY]) == [("a_sky.png", "a_sky.png"), ("d_sky.png", "d_sky.png")]
    assert names(found[SEA]) == [("c_sea.png", "c_sea.png")]
    assert found[SKY][0] == (os.path.join(train_dir, "imgs", "a_sky.png"),
                             os.path.join(train_dir, "labels", "a_sky.png"))
    assert counter.n == 5 and counter.total == 5
    assert pure_colour.find_pure_pairs(train_dir, 29, max_size=2) == {SKY: found[SKY][:1]}


def test_find_pure_pairs_validates_labels(train_dir):
    with pytest.raises(UserError) as err:
        pure_colour.find_pure_pairs(train_dir, 2)  # sea (3) is out of range
    assert "b_mixed.png" in str(err.value) and "--label_nc" in str(err.value)


def test_build_save_load_round_trip(train_dir, tmp_path):
    d = pure_colour.build_dictionary(train_dir, 29, 16, 12, max_per_class=1)
    assert sorted(d) == [SKY, SEA]
    assert d[SKY].shape == (1, 12, 16, 3) and d[SKY].dtype == np.uint8
    expected = resize_image(read_image(os.path.join(train_dir, "imgs", "a_sky.png")), (16, 12))
    np.testing.assert_array_equal(d[SKY][0], expected)
    assert d.sources == {SKY: ["a_sky.png"], SEA: ["c_sea.png"]} and d.size == (16, 12)
    assert pure_colour.build_dictionary(train_dir, 29, 16, 12)[SKY].shape[0] == 2

    path = str(tmp_path / "exp" / "pure_colour.pkl")
    pure_colour.save_dictionary(path, d)
    assert os.listdir(tmp_path / "exp") == ["pure_colour.pkl"]  # no temporary file left
    loaded = pure_colour.load_dictionary(path)
    assert sorted(loaded) == [SKY, SEA]
    for cid in d:
        np.testing.assert_array_equal(loaded[cid], d[cid])
    assert loaded.sources == d.sources and tuple(loaded.size) == (16, 12) and loaded.label_nc == 29
    raw = checkpoint.read_file(path)  # a plain dict in the checkpoint encoding
    assert raw["format"] == "pure_colour_dictionary" and set(raw["photos"]) == {SKY, SEA}
    # a plain {class_id: array} dict can be saved too
    pure_colour.save_dictionary(path, {SEA: d[SEA]})
    assert sorted(pure_colour.load_dictionary(path)) == [SEA]


def test_load_dictionary_errors_name_the_file(tmp_path):
    path = str(tmp_path / "exp" / "pure_colour.pkl")
    with pytest.raises(CheckpointError) as err:
        pure_colour.load_dictionary(path)
    message = str(err.value)
    assert message.startswith(path) and "no pure-colour dictionary" in message
    assert "train.py" in message and "python -m util.pure_colour --input_path DATA/train" in message

    pure_colour.save_dictionary(path, {SKY: np.zeros((1, 4, 4, 3), np.uint8)})
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(CheckpointError) as err:
        pure_colour.load_dictionary(path)
    assert path in str(err.value) and "corrupt" in str(err.value)

    checkpoint.write_file(path, {"conv.weight": np.zeros(3)})  # e.g. a network file
    with pytest.raises(CheckpointError) as err:
        pure_colour.load_dictionary(path)
    assert path in str(err.value) and "not a pure-colour dictionary" in str(err.value)


# -- applying -----------------------------------------------------------------------------------

def coverage_map(fraction, w=10, h=10):
    """A map where SKY covers ``fraction`` of the pixels (from the top-left), MOUNTAIN the rest."""
    label = np.full(w * h, MOUNTAIN, np.int64)
    label[:int(round(fraction * w * h))] = SKY
    return label.reshape(h, w)


def colour_photos(*colours, w=8, h=6):
    return np.stack([np.full((h, w, 3), c, np.uint8) for c in colours])


def test_apply_pure_replaces_only_the_dominant_class_above_the_threshold():
    generated = np.random.RandomState(0).randint(0, 256, (10, 10, 3)).astype(np.uint8)
    photo = np.random.RandomState(1).randint(0, 256, (1, 6, 8, 3)).astype(np.uint8)
    dictionary = {SKY: photo}
    label = coverage_map(0.99)
    out, cid = pure_colour.apply_pure(generated, label, dictionary)
    assert cid == SKY
    sky = label == SKY
    np.testing.assert_array_equal(out[sky], resize_image(photo[0], (10, 10))[sky])
    np.testing.assert_array_equal(out[~sky], generated[~sky])
    assert not np.array_equal(out, generated)
    # below the threshold, or a class without photos: unchanged
    out, cid = pure_colour.apply_pure(generated, coverage_map(0.97), dictionary)
    assert cid is None and out is generated
    out, cid = pure_colour.apply_pure(generated, np.full((10, 10), SEA), dictionary)
    assert cid is None and out is generated
    out, cid = pure_colour.apply_pure(generated, coverage_map(0.97), dictionary, threshold=0.9)
    assert cid == SKY
    with pytest.raises(ValueError):
        pure_colour.apply_pure(generated, np.zeros((5, 5), int), dictionary)


def test_apply_pure_pick_is_deterministic():
    dictionary = {SKY: colour_photos(10, 20, 30)}
    label = np.full((6, 8), SKY)
    generated = np.zeros((6, 8, 3), np.uint8)
    assert pure_colour.apply_pure(generated, label, dictionary, pick=4)[0][0, 0, 0] == 20
    assert pure_colour.apply_pure(generated, label, dictionary, pick=2)[0][0, 0, 0] == 30
    picks = [pure_colour.pick_index(0, f"img_{i}.png") for i in range(20)]
    assert picks == [pure_colour.pick_index(0, f"img_{i}.png") for i in range(20)]
    assert len({p % 3 for p in picks}) == 3  # different names use different photos
    assert pure_colour.pick_index(0, "a.png") != pure_colour.pick_index(1, "a.png")

    switch = pure_colour.PureColour(dictionary)
    first = switch.apply(generated, label, "a.png", seed=5)
    np.testing.assert_array_equal(first, switch.apply(generated, label, "a.png", seed=5))
    switch.apply(generated, coverage_map(0.5, 8, 6), "b.png", seed=5)
    assert switch.used == {"a.png": SKY}


# -- command line and options -------------------------------------------------------------------

def test_command_line_builds_the_dictionary(train_dir, tmp_path, capsys):
    out = str(tmp_path / "d.pkl")
    assert pure_colour_command.main(["--input_path", train_dir, "--out", out, "--width", "16", "--height", "12",
                             "--no_progress"]) == 0
    printed = capsys.readouterr().out
    assert "sky" in printed and "2 single-class photo(s), 2 kept" in printed
    assert "sea" in printed and "1 single-class photo(s), 1 kept" in printed
    assert pure_colour.load_dictionary(out)[SKY].shape == (2, 12, 16, 3)
    with pytest.raises(UserError):
        pure_colour_command.main(["--input_path", str(tmp_path / "nowhere"), "--out", out, "--no_progress"])


def test_generation_options(tmp_path):
    from options import test_options
    base = ["--input_path", "labels", "--output_path", "out", "--name", "exp", "--checkpoints_dir", str(tmp_path)]
    opt, _, notes = test_options.parse(base)
    assert opt.use_pure is False and opt.pure_threshold == 0.98
    assert opt.pure_dictionary == os.path.join(str(tmp_path), "exp", "pure_colour.pkl")
    opt, _, notes = test_options.parse([*base, "--use_pure", "--pure_dictionary", "x.pkl"])
    assert opt.use_pure and opt.pure_dictionary == "x.pkl"
    assert not any("pure" in n for n in notes)
    _, _, notes = test_options.parse([*base, "--pure_dictionary", "x.pkl"])
    assert any("ignored without --use_pure" in n for n in notes)
    with pytest.raises(UserError):
        test_options.parse([*base, "--pure_threshold", "1.5"])
    text = " ".join(test_options.build_parser().format_help().split())
    assert "off by default" in text and "more than --pure_threshold (98%)" in text
    pure_dictionary_help = text[text.rindex("--pure_dictionary PATH"):text.rindex("--pure_threshold T")]
    assert pure_dictionary_help.endswith("(default: CHECKPOINTS_DIR/NAME/pure_colour.pkl) ")


# -- end to end ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def untrained_experiment(tmp_path_factory):
    """A checkpoints folder with an untrained tiny generator (no training needed to test the switch)."""
    from models.networks import build_networks
    from options import base_options, train_options
    opt, parser = train_options.parse(["--input_path", "unused", *TINY_NET_FLAGS])
    folder = str(tmp_path_factory.mktemp("ck") / "exp")
    base_options.save_options(opt, parser, folder)
    nets = build_networks(opt, with_discriminator=False)
    checkpoint.write_checkpoint(folder, "latest", {k: v.state_dict() for k, v in nets.items()})
    return folder


def test_test_phase_use_pure(train_dir, untrained_experiment, tmp_path):
    labels = tmp_path / "test_labels"
    save_label(str(labels / "all_sky.png"), full(SKY, 64, 48))
    mixed = full(SKY, 64, 48)
    mixed[30:] = SEA
    save_label(str(labels / "mixed.png"), mixed)
    ck, name = os.path.split(untrained_experiment)
    args = ["--input_path", str(labels), "--output_path", str(tmp_path / "out"), "--name", name,
            "--checkpoints_dir", ck, "--nThreads", "0", "--image_format", "png", "--use_pure"]

    r = run_script("test_phase.py", *args, timeout=300)  # no dictionary yet: stops before generating
    missing = os.path.join(untrained_experiment, "pure_colour.pkl")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert missing in r.stderr and "no pure-colour dictionary" in r.stderr
    assert not (tmp_path / "out").exists()

    pure_colour.save_dictionary(missing, pure_colour.build_dictionary(train_dir, 29, 128, 96))
    r = run_script("test_phase.py", *args, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "1 of 2 images used the pure-colour dictionary" in r.stdout
    d = pure_colour.load_dictionary(missing)
    photo = d[SKY][pure_colour.pick_index(0, "all_sky.png") % len(d[SKY])]
    out = read_image(str(tmp_path / "out" / "all_sky.png"))
    np.testing.assert_array_equal(out, resize_image(photo, (64, 48)))
    assert read_image(str(tmp_path / "out" / "mixed.png")).shape == (48, 64, 3)
