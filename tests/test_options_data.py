"""Options (defaults, validation, saving and reloading the architecture) and the data pipeline
(transforms, EpochSampler, PairedDataset randomness)."""

import json
import os

import numpy as np
import pytest

from conftest import TINY_NET_FLAGS, tiny_train_opt
from data import transforms
from data.datasets import EpochSampler, PairedDataset, sample_rng
from models import layout
from options import base_options, test_options, train_options
from util.core import checkpoint
from util.core.errors import OptionError

W, H = 128, 96


def parse_train(*args):
    opt, _ = train_options.parse(["--input_path", "unused", *args])
    return opt


# -- training options ---------------------------------------------------------------------------

def test_training_defaults():
    opt = parse_train()
    assert opt.label_nc == 29
    assert opt.crop_size == 512
    assert opt.aspect_ratio == pytest.approx(4 / 3)
    assert layout.image_height(opt) == 384
    assert opt.beta1 == 0.0 and opt.beta2 == 0.9
    assert opt.gan_mode == "hinge"
    assert opt.norm_G == "spectralspadesyncbatch3x3"
    assert opt.norm_D == "spectralinstance"
    assert opt.load_size == opt.crop_size  # no crop unless asked for
    assert opt.isTrain is True
    assert opt.no_flip is False and opt.no_TTUR is False


def test_tiny_settings_are_valid():
    opt = tiny_train_opt()
    assert (opt.crop_size, layout.image_height(opt)) == (W, H)
    assert opt.ngf == 8 and opt.nThreads == 0 and opt.no_vgg_loss


@pytest.mark.parametrize("args, needle", [
    (["--crop_size", "100", "--num_upsampling_layers", "normal"], "multiple of 32"),
    (["--crop_size", "96", "--num_upsampling_layers", "apf_more"], "multiple of 64"),
    (["--crop_size", "384", "--num_upsampling_layers", "two_extra_blocks"], "multiple of 128"),
    # width fine, height not: 96 / (4/3) = 72, 128 / 1.5 = 85, 256 / (4/3) = 192 (not a multiple of 128)
    (["--crop_size", "96", "--num_upsampling_layers", "normal"], "height 72"),
    (["--crop_size", "128", "--aspect_ratio", "1.5", "--num_upsampling_layers", "normal"], "height 85"),
    (["--crop_size", "256", "--num_upsampling_layers", "two_extra_blocks"], "height 192"),
    (["--norm_G", "spadeinstance"], "--norm_G"),
    (["--norm_G", "spectralspadegroup3x3"], "--norm_G"),
    (["--norm_G", "spectralspadesyncbatch"], "--norm_G"),
    (["--norm_G", "spadebatch4x4"], "odd"),
    (["--norm_D", "spectralgroup"], "--norm_D"),
    (["--norm_E", "layer"], "--norm_E"),
    (["--load_size", "256"], "--load_size 256"),
    (["--crop_size", "256", "--load_size", "255"], "smaller than --crop_size"),
])
def test_training_option_errors(args, needle):
    with pytest.raises(OptionError) as info:
        parse_train(*args)
    assert needle in str(info.value)


@pytest.mark.parametrize("args", [
    ["--crop_size", "128", "--num_upsampling_layers", "normal"],
    ["--crop_size", "256", "--num_upsampling_layers", "apf_more"],
    ["--crop_size", "512", "--aspect_ratio", "1", "--num_upsampling_layers", "two_extra_blocks"],
    ["--norm_G", "spadeinstance5x5"],
    ["--norm_G", "spadebatch3x3", "--norm_D", "none", "--norm_E", "spectralbatch"],
    ["--load_size", "600"],
])
def test_valid_training_options(args):
    parse_train(*args)


def test_argparse_rejects_nonsense_values(capsys):
    for args in (["--crop_size", "0"], ["--label_nc", "-3"], ["--gan_mode", "wgan"], ["--gpu", "maybe"]):
        with pytest.raises(SystemExit) as info:
            parse_train(*args)
        assert info.value.code == 2
    assert "invalid" in capsys.readouterr().err


# -- saving and reloading -----------------------------------------------------------------------

@pytest.fixture
def saved_experiment(tmp_path):
    argv = ["--input_path", "unused", *TINY_NET_FLAGS, "--label_nc", "12", "--name", "exp",
            "--checkpoints_dir", str(tmp_path)]
    opt, parser = train_options.parse(argv)
    folder = checkpoint.experiment_dir(opt)
    text = base_options.save_options(opt, parser, folder)
    return opt, folder, text


def test_save_options_writes_txt_and_json(saved_experiment):
    opt, folder, text = saved_experiment
    assert sorted(os.listdir(folder)) == ["opt.json", "opt.txt"]
    with open(os.path.join(folder, "opt.json")) as f:
        saved = json.load(f)
    assert saved == json.loads(json.dumps(vars(opt)))
    assert base_options.load_saved_options(folder) == saved
    with open(os.path.join(folder, "opt.txt")) as f:
        assert f.read() == text
    lines = {line.split(":")[0].strip(): line for line in text.splitlines() if ":" in line}
    assert "[default: 64]" in lines["ngf"] and "[default: 29]" in lines["label_nc"]
    assert "[default" not in lines["gan_mode"]  # defaults are not marked


def test_unreadable_saved_options(tmp_path):
    assert base_options.load_saved_options(str(tmp_path)) is None
    (tmp_path / "opt.json").write_text("{ broken")
    with pytest.raises(OptionError) as info:
        base_options.load_saved_options(str(tmp_path))
    assert str(tmp_path / "opt.json") in str(info.value)


@pytest.mark.parametrize("name, meant", [("more", "apf_more"), ("most", "two_extra_blocks")])
def test_ambiguous_layout_names_are_refused_and_old_experiments_load(tmp_path, capsys, name, meant):
    with pytest.raises(SystemExit):
        parse_train("--num_upsampling_layers", name)
    err = capsys.readouterr().err
    assert f"spade_{name}" in err and meant in err
    saved = dict(vars(tiny_train_opt()), num_upsampling_layers=name)
    (tmp_path / "opt.json").write_text(json.dumps(saved))
    assert base_options.load_saved_options(str(tmp_path))["num_upsampling_layers"] == meant


def parse_test(folder, *extra):
    parent, name = os.path.split(folder)
    return test_options.parse(["--input_path", "labels", "--output_path", "out", "--name", name,
                               "--checkpoints_dir", parent, *extra])


def test_generation_takes_architecture_from_opt_json(saved_experiment):
    train_opt, folder, _ = saved_experiment
    opt, _, notes = parse_test(folder)
    for key in base_options.ARCHITECTURE_KEYS:
        assert getattr(opt, key) == getattr(train_opt, key), key
    assert opt.ngf == 8 and opt.label_nc == 12 and opt.num_upsampling_layers == "normal"
    assert opt.isTrain is False
    assert len(notes) == 1 and "ngf=8" in notes[0] and "label_nc=12" in notes[0]
    # repeating a saved value explicitly is fine
    opt, _, _ = parse_test(folder, "--ngf", "8", "--crop_size", "128")
    assert opt.ngf == 8


@pytest.mark.parametrize("flag", [["--ngf", "16"], ["--label_nc", "29"], ["--use_vae"],
                                  ["--num_upsampling_layers", "apf_more"]])
def test_generation_conflicting_architecture_flag(saved_experiment, flag):
    _, folder, _ = saved_experiment
    with pytest.raises(OptionError) as info:
        parse_test(folder, *flag)
    assert flag[0] in str(info.value) and os.path.join(folder, "opt.json") in str(info.value)


def test_generation_without_opt_json_uses_command_line(tmp_path):
    opt, _, notes = parse_test(str(tmp_path / "fresh"), "--ngf", "16", "--crop_size", "256")
    assert opt.ngf == 16 and opt.crop_size == 256
    assert len(notes) == 1 and "no opt.json" in notes[0]
    with pytest.raises(OptionError):
        parse_test(str(tmp_path / "fresh"), "--jpeg_quality", "101")


# -- options from values --------------------------------------------------------------------------

def test_generation_options_from_values_equal_the_parsed_flags(saved_experiment):
    _, folder, _ = saved_experiment
    parent, name = os.path.split(folder)
    parsed = parse_test(folder, "--seed", "3", "--batchSize", "2", "--no_ema", "--crop_size", "128")
    made = test_options.from_values(input_path="labels", output_path="out", name=name, checkpoints_dir=parent,
                                    seed=3, batchSize=2, no_ema=True, crop_size=128, max_dataset_size=None)
    assert vars(made[0]) == vars(parsed[0]) and made[2] == parsed[2]  # architecture from opt.json, same notes
    with pytest.raises(OptionError, match="--ngf 16 differs"):  # a value counts as a given flag
        test_options.from_values(input_path="labels", output_path="out", name=name, checkpoints_dir=parent, ngf=16)


def test_training_options_from_values_equal_the_parsed_flags(tmp_path):
    flags = ["--input_path", "unused", "--checkpoints_dir", str(tmp_path), "--crop_size", "128", "--aspect_ratio",
             str(4 / 3), "--num_upsampling_layers", "normal", "--ngf", "16", "--use_vae", "yes"]
    values = dict(input_path="unused", checkpoints_dir=str(tmp_path), crop_size=128, aspect_ratio=4 / 3,
                  num_upsampling_layers="normal", ngf=16, use_vae=True)
    assert vars(train_options.from_values(**values)[0]) == vars(train_options.parse(flags)[0])
    # a preset gives the defaults, the values override them, command-line flags (argv) win over both
    argv = ["--batchSize", "4", "--amp", "bf16"]
    parsed, _ = train_options.parse(["--preset", "apf_pretrain", "--pg_niter", "0", *flags, *argv])
    made, _ = train_options.from_values(argv=argv, preset="apf_pretrain", pg_niter=0, **values)
    assert vars(made) == vars(parsed) and made.batchSize == 4


@pytest.mark.parametrize("values, needle", [({"batchSize": 0}, "--batchSize"), ({"gpu": "maybe"}, "--gpu"),
                                            ({"crop_size": 128.0}, "--crop_size"), ({"no_such": 1}, "no_such"),
                                            ({"input_path": None}, "input_path")])
def test_options_from_values_refuse_what_the_command_line_refuses(tmp_path, values, needle):
    values = dict({"input_path": "unused", "checkpoints_dir": str(tmp_path)}, **values)
    if values["input_path"] is None:
        del values["input_path"]
    with pytest.raises(OptionError, match=needle):
        train_options.from_values(**values)


def test_replaced_copies_the_options():
    opt = tiny_train_opt()
    other = base_options.replaced(opt, seed=opt.seed + 1, which_epoch="7")
    assert other.seed == opt.seed + 1 and other.which_epoch == "7" and other.ngf == opt.ngf
    assert opt.which_epoch == "latest"  # the original is left as it is
    with pytest.raises(OptionError, match="sed"):
        base_options.replaced(opt, sed=1)


# -- transforms ---------------------------------------------------------------------------------

def coordinate_photo(width, height):
    """R = x, G = y: a crop's top-left pixel tells its offset."""
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[..., 0] = np.arange(width)[None, :]
    rgb[..., 1] = np.arange(height)[:, None]
    return rgb


def test_random_crop_moves_in_both_axes():
    sw, sh = 160, 120  # load_size 160 of a 160x120 photo: no resize, crop 128x96 -> x 0..32, y 0..24
    rgb = coordinate_photo(sw, sh)
    label = np.zeros((sh, sw), np.uint8)
    xs, ys = set(), set()
    for epoch in range(4):
        for index in range(100):
            out, out_label = transforms.transform_pair(rgb, label, sw, W, H, sample_rng(3, epoch, index), False)
            assert out.shape == (H, W, 3) and out_label.shape == (H, W)
            x, y = int(out[0, 0, 0]), int(out[0, 0, 1])
            np.testing.assert_array_equal(out, rgb[y:y + H, x:x + W])
            xs.add(x)
            ys.add(y)
    assert xs == set(range(sw - W + 1))
    assert ys == set(range(sh - H + 1))


def test_scaled_size_fits_the_crop():
    assert transforms.scaled_size(128, 96, 128, 128, 96) == (128, 96)
    assert transforms.scaled_size(128, 96, 160, 128, 96) == (160, 120)
    assert transforms.scaled_size(1024, 768, 512, 512, 384) == (512, 384)
    # a wide panorama is enlarged until the crop height fits
    w, h = transforms.scaled_size(400, 100, 128, 128, 96)
    assert h >= 96 and w >= 128 and abs(w / h - 4.0) < 0.05


def test_flip_happens_about_half_the_time():
    rgb = coordinate_photo(W, H)
    label = np.zeros((H, W), np.uint8)
    flips = 0
    for index in range(200):
        out, _ = transforms.transform_pair(rgb, label, W, W, H, sample_rng(0, 1, index), True)
        if out[0, 0, 0] == W - 1:
            flips += 1
            np.testing.assert_array_equal(out, rgb[:, ::-1])
        else:
            np.testing.assert_array_equal(out, rgb)
    assert 70 < flips < 130
    for index in range(50):
        out, _ = transforms.transform_pair(rgb, label, W, W, H, sample_rng(0, 1, index), False)
        np.testing.assert_array_equal(out, rgb)


def block_label(width, height, block, seed):
    rng = np.random.RandomState(seed)
    blocks = rng.randint(0, 29, size=(-(-height // block), -(-width // block))).astype(np.uint8)
    return np.kron(blocks, np.ones((block, block), np.uint8))[:height, :width]


@pytest.mark.parametrize("load_size", [W, 160, 203])
def test_photo_and_label_get_the_same_crop_and_flip(load_size):
    """The photo's value encodes the label (8 * id); after the transform they must still agree."""
    label = block_label(W, H, 8 if load_size == W else 16, seed=load_size)
    rgb = np.repeat((label * 8)[..., None], 3, axis=2)
    for index in range(12):
        out, out_label = transforms.transform_pair(rgb, label, load_size, W, H, sample_rng(1, 2, index), True)
        decoded = np.rint(out[..., 0] / 8.0)
        agree = np.mean(decoded == out_label)
        if load_size == W:
            assert agree == 1.0  # no resampling: exact
        else:
            assert agree > 0.8, agree  # bicubic blurs block edges only


@pytest.mark.parametrize("size", [(203, 152), (160, 120), (61, 47), (128, 96)])
def test_labels_are_resized_nearest_neighbour(size):
    rng = np.random.RandomState(0)
    label = rng.choice(np.array([0, 5, 28], np.uint8), size=(H, W))  # noisy: any blending shows
    out = transforms.resize_label_map(label, size)
    assert out.shape == (size[1], size[0]) and out.dtype == np.uint8
    assert set(np.unique(out)) <= {0, 5, 28}
    if size[0] >= W:
        assert set(np.unique(out)) == {0, 5, 28}
    for load_size in (W, 150, 203):
        _, cropped = transforms.transform_pair(np.zeros((H, W, 3), np.uint8), label, load_size, W, H,
                                               sample_rng(0, 0, load_size), True)
        assert set(np.unique(cropped)) <= {0, 5, 28}


def test_image_array_round_trip():
    rgb = np.random.RandomState(1).randint(0, 256, size=(H, W, 3)).astype(np.uint8)
    rgb[0, 0] = (0, 255, 128)
    arr = transforms.image_to_array(rgb)
    assert arr.shape == (3, H, W) and arr.dtype == np.float32
    assert arr.min() == -1.0 and arr.max() == 1.0
    np.testing.assert_array_equal(transforms.array_to_image(arr), rgb)
    # small errors round back, out-of-range values clip
    np.testing.assert_array_equal(transforms.array_to_image(arr + 0.003), rgb)
    extreme = np.stack([np.full((2, 2), 1.7), np.full((2, 2), -3.0), np.zeros((2, 2))]).astype(np.float32)
    np.testing.assert_array_equal(transforms.array_to_image(extreme)[0, 0], (255, 0, 128))


# -- EpochSampler and PairedDataset -------------------------------------------------------------

def test_epoch_sampler_order():
    n = 12
    a, b = EpochSampler(n, seed=5), EpochSampler(n, seed=5)
    orders = []
    for epoch in range(6):
        np.random.seed(epoch + 1000)  # global RNG state must not matter
        order = a.order(epoch)
        np.random.rand(17)
        np.testing.assert_array_equal(order, b.order(epoch))
        assert sorted(order.tolist()) == list(range(n))
        orders.append(tuple(order.tolist()))
    assert len(set(orders)) == len(orders)  # differs between epochs
    assert tuple(EpochSampler(n, seed=6).order(0).tolist()) != orders[0]
    np.testing.assert_array_equal(EpochSampler(n, 5, shuffle=False).order(3), np.arange(n))


def test_epoch_sampler_indices_encode_the_epoch():
    n = 12
    sampler = EpochSampler(n, seed=0)
    assert len(sampler) == n
    for epoch in (0, 1, 7):
        sampler.set_epoch(epoch)
        indices = list(sampler)
        assert len(indices) == n
        assert all(i // n == epoch for i in indices)
        assert [i % n for i in indices] == sampler.order(epoch).tolist()


def make_dataset(root, load_size, **kw):
    return PairedDataset(os.path.join(root, "train"), 29, W, H, load_size, seed=kw.pop("seed", 0),
                         batch_size=1, **kw)


def test_paired_dataset_is_deterministic_per_seed_epoch_index(tiny_dataset):
    a, b = make_dataset(tiny_dataset, 160), make_dataset(tiny_dataset, 160)
    n = len(a.pairs)
    assert n == 12
    for epoch, i in [(0, 0), (1, 3), (5, 11)]:
        np.random.seed(epoch)
        sa = a[epoch * n + i]
        np.random.seed(999)
        sb = b[epoch * n + i]
        assert sa["error"] == "" and sa["path"] == f"demo_{i:05d}.jpg"
        assert sa["image"].shape == (3, H, W) and sa["label"].shape == (H, W)
        np.testing.assert_array_equal(sa["image"], sb["image"])
        np.testing.assert_array_equal(sa["label"], sb["label"])
    # another seed changes the crops
    c = make_dataset(tiny_dataset, 160, seed=1)
    assert any(not np.array_equal(a[n + i]["image"], c[n + i]["image"]) for i in range(4))


def test_paired_dataset_crop_changes_between_epochs(tiny_dataset):
    ds = make_dataset(tiny_dataset, 160)
    n = len(ds.pairs)
    for i in range(4):
        views = [ds[epoch * n + i] for epoch in range(3)]
        assert views[0]["path"] == views[1]["path"] == views[2]["path"]
        assert not np.array_equal(views[0]["image"], views[1]["image"])
        assert not np.array_equal(views[1]["image"], views[2]["image"])
    # without crop or flip there is nothing random: epochs see the same sample
    fixed = make_dataset(tiny_dataset, W, allow_flip=False)
    np.testing.assert_array_equal(fixed[0]["image"], fixed[5 * n]["image"])
    np.testing.assert_array_equal(fixed[0]["label"], fixed[5 * n]["label"])


def test_paired_dataset_iterates_in_epoch_order(tiny_dataset):
    ds = make_dataset(tiny_dataset, W)
    n = len(ds.pairs)
    for epoch in (1, 2):
        ds.set_epoch(epoch)
        seen = [batch["path"][0] for batch in ds]
        expected = [os.path.basename(ds.pairs[i][0]) for i in ds.sampler.order(epoch)]
        assert seen == expected
    assert ds.num_batches() == n


def test_worker_processes_load_exactly_the_epochs_of_the_main_process(tiny_dataset):
    """With loader workers, every epoch has the same order and crops as without them."""
    from data.datasets import PairedDataset

    def batches(workers):
        ds = PairedDataset(os.path.join(tiny_dataset, "train"), 29, 96, 72, 128, batch_size=4,
                           num_workers=workers, seed=5)
        out = []
        for epoch in (1, 2, 3):
            ds.set_epoch(epoch)
            out += [(b["path"], b["label"].numpy(), b["image"].numpy()) for b in ds]
        ds.terminate()
        return out

    main, workers = batches(0), batches(2)
    assert len(main) == len(workers) == 9
    assert [m[0] for m in main[:3]] != [m[0] for m in main[3:6]]  # epochs differ
    for (p0, l0, i0), (p1, l1, i1) in zip(main, workers):
        assert p0 == p1
        np.testing.assert_array_equal(l0, l1)
        np.testing.assert_array_equal(i0, i1)
