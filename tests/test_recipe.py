"""The two-phase recipe: shipped presets, train.py's phase plan, and a tiny
pre-training + fine-tuning run whose final checkpoint test_phase.py uses."""

import os
import types

import numpy as np
import pytest

from conftest import TINY_NET_FLAGS, run_script

import train as recipe
from options import presets, train_options
from util.core.errors import CheckpointError, OptionError, UserError


@pytest.mark.parametrize("name", presets.available())
def test_every_shipped_preset_parses(name):
    opt, _ = train_options.parse(["--input_path", "x", "--preset", name])
    assert opt.preset == name


def test_apf_presets_hold_what_apf_gans_code_ran():
    """The faithful recipe: what APF-GAN's code computed (its iterations are compared with APF-GAN's trainer in
    test_reference_parity.py, through these presets)."""
    pre, _ = train_options.parse(["--input_path", "x", "--preset", "apf_pretrain"])
    fine, _ = train_options.parse(["--input_path", "x", "--preset", "apf_finetune"])
    assert (pre.batchSize, pre.niter, pre.pg_niter, pre.num_D, pre.crop_size, pre.load_size) == (10, 180, 180, 4, 512,
                                                                                                   572)
    assert pre.encode_mask and not pre.use_vae and pre.netD == "apf_progressive"
    assert (pre.norm_G, pre.norm_D, pre.norm_E) == ("spadesyncbatch3x3", "instance", "instance")  # no spectral norm
    assert (pre.pg_alpha, pre.pg_fade_upsample, pre.pg_resize, pre.vgg_input) == ("epoch", "bilinear", "bilinear",
                                                                                  "raw")
    assert (fine.batchSize, fine.niter, fine.save_epoch_freq, fine.num_D) == (5, 310, 1, 4)
    assert fine.diff_aug == "color,crop,translation" and fine.diff_aug_colour == "independent"
    assert fine.use_seg_noise and fine.inception_loss and fine.no_vgg_loss and fine.lambda_inception == 10
    assert fine.inception_layer_weights == (1 / 16, 1 / 8, 1 / 4, 1.0)
    assert (fine.inception_input, fine.inception_norm) == ("native", "batch")
    assert "inception_v3_google" in fine.inception_weights  # ImageNet InceptionV3, as Jittor's model zoo gave APF-GAN
    assert fine.pg_niter == 0 and fine.crop_size == 512 and fine.encode_mask  # architecture through "extends"


def test_improved_presets_differ_from_apf_where_the_readme_says():
    pre, _ = train_options.parse(["--input_path", "x", "--preset", "improved_pretrain"])
    fine, _ = train_options.parse(["--input_path", "x", "--preset", "improved_finetune"])
    apf_pre, _ = train_options.parse(["--input_path", "x", "--preset", "apf_pretrain"])
    apf_fine, _ = train_options.parse(["--input_path", "x", "--preset", "apf_finetune"])

    def differences(a, b):
        return {k for k in vars(a) if getattr(a, k) != getattr(b, k)} - {"preset"}
    assert differences(pre, apf_pre) == {"norm_G", "norm_D", "norm_E", "pg_alpha", "pg_resize", "vgg_input",
                                         "ema_decay"}
    assert differences(fine, apf_fine) == {"norm_G", "norm_D", "norm_E", "pg_alpha", "pg_resize", "vgg_input",
                                           "ema_decay", "diff_aug_colour", "inception_norm"}
    assert apf_pre.d_fake == apf_fine.d_fake == pre.d_fake == fine.d_fake == "regenerate"
    assert pre.norm_G.startswith("spectral") and pre.ema_decay > 0 and pre.pg_alpha == "iteration"
    assert fine.diff_aug_colour == "shared" and fine.inception_norm == "running"


def test_demo_presets_grow_three_levels_within_pretraining():
    pre, _ = train_options.parse(["--input_path", "x", "--preset", "demo_pretrain"])
    fine, _ = train_options.parse(["--input_path", "x", "--preset", "demo_finetune"])
    assert pre.num_D == 3 and 0 < pre.pg_niter < pre.niter < fine.niter
    assert fine.no_vgg_loss and not fine.inception_loss  # the demo needs no pretrained weights
    assert pre.ema_decay == 0 and 0 < fine.ema_decay < 1  # generation uses the fine-tuning's EMA generator


def test_command_line_flags_override_a_preset():
    opt, _ = train_options.parse(["--input_path", "x", "--preset", "apf_finetune", "--batchSize", "2",
                                  "--use_seg_noise", "no", "--diff_aug", ""])
    assert (opt.batchSize, opt.use_seg_noise, opt.diff_aug) == (2, False, "")


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(OptionError, match="shipped presets"):
        train_options.parse(["--input_path", "x", "--preset", "no_such_recipe"])


def test_recipes_are_the_preset_pairs():
    assert {"apf", "demo", "improved"} <= set(recipe.recipes())
    with pytest.raises(OptionError, match="recipes: "):
        recipe.main(["--input_path", "x", "--recipe", "nope"])


def test_phases_flag():
    assert recipe.parse_phases("finetune,pretrain") == ["pretrain", "finetune"]
    assert recipe.parse_phases("finetune") == ["finetune"]
    with pytest.raises(OptionError):
        recipe.parse_phases("pretrain,polish")


def _plan(monkeypatch, state, phases=("pretrain", "finetune"), continue_train=True):
    monkeypatch.setattr(recipe, "latest_state", lambda folder: state)
    args = types.SimpleNamespace(continue_train=continue_train)
    opts = {"pretrain": types.SimpleNamespace(niter=180, niter_decay=0)}
    return recipe.plan(list(phases), args, opts, "folder")


def test_plan_fresh_run_chains_finetuning_to_the_last_pretraining_epoch(monkeypatch):
    assert _plan(monkeypatch, None, continue_train=False) == [("pretrain", []), ("finetune", ["--init_from", "180"])]


def test_plan_resumes_in_the_phase_that_was_running(monkeypatch):
    mid_pretrain = {"phase": "pretrain", "next_epoch": 57}
    assert _plan(monkeypatch, mid_pretrain) == [("pretrain", ["--continue_train"]),
                                                ("finetune", ["--init_from", "180"])]
    pretrain_done = {"phase": "pretrain", "next_epoch": 181}
    assert _plan(monkeypatch, pretrain_done) == [("finetune", ["--init_from", "180"])]
    mid_finetune = {"phase": "finetune", "next_epoch": 200}
    assert _plan(monkeypatch, mid_finetune) == [("finetune", ["--continue_train"])]
    with pytest.raises(CheckpointError, match="no 'latest'"):
        _plan(monkeypatch, None)


def test_missing_weights_fail_before_any_phase_starts(tmp_path):
    result = run_script("train.py", "--input_path", str(tmp_path), "--checkpoints_dir", str(tmp_path / "ck"),
                        "--vgg_weights", str(tmp_path / "nope.pth"), timeout=300)
    assert result.returncode == UserError.exit_code
    assert "nope.pth" in result.stderr and "No phase was started" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "ck").exists()


def test_two_phase_run_ends_with_a_full_resolution_model_that_generates(tiny_dataset, tmp_path):
    from util.core import checkpoint
    ckpt = str(tmp_path / "ck")
    common = ["--input_path", os.path.join(tiny_dataset, "train"), "--name", "two", "--checkpoints_dir", ckpt,
              *TINY_NET_FLAGS, "--batchSize", "4", "--print_freq", "1"]
    result = run_script("train.py", "--recipe", "demo", *common,
                        "--pretrain_args", "--niter 2 --pg_niter 2", "--finetune_args", "--niter 3")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "progressive schedule" in out and "64x48" in out
    assert "new parameter tensors" in out and "seg_noise_var" in out
    folder = os.path.join(ckpt, "two")
    assert os.path.isfile(os.path.join(folder, "pure_colour.pkl"))
    for tag in ("1", "2", "3"):
        assert os.path.isfile(checkpoint.net_path(folder, tag, "G"))
    mid = checkpoint.read_net(folder, "1", "G")
    assert any(k.startswith("to_rgb_") for k in mid)  # still growing after epoch 1
    final = checkpoint.read_net(folder, "3", "G")
    assert not any(k.startswith("to_rgb_") for k in final)
    assert any("seg_noise_var" in k for k in final)
    assert checkpoint.read_file(checkpoint.state_path(folder, "3"))["phase"] == "finetune"
    # The pre-training G (epoch 2) is the fine-tuning start: the shared weights are equal before training.
    pre = checkpoint.read_net(folder, "2", "G")
    assert not any(k.startswith("to_rgb_") for k in pre)
    # Only fine-tuning keeps an EMA generator (the demo preset), started from the pre-trained G.
    assert not os.path.isfile(checkpoint.net_path(folder, "2", "G_ema"))
    assert set(checkpoint.read_net(folder, "3", "G_ema")) == set(final)

    out_dir = str(tmp_path / "generated")
    gen = run_script("test_phase.py", "--input_path", os.path.join(tiny_dataset, "test", "labels"),
                     "--output_path", out_dir, "--name", "two", "--checkpoints_dir", ckpt, "--nThreads", "0")
    assert gen.returncode == 0, gen.stderr[-3000:]
    assert "using the EMA generator" in gen.stdout
    files = sorted(os.listdir(out_dir))
    assert len(files) == 3
    from data.image_io import read_image
    image = read_image(os.path.join(out_dir, files[0]))
    assert image.shape == (96, 128, 3) and np.ptp(image) > 0

    # Continuing the finished run with a longer fine-tuning resumes the fine-tuning phase.
    more = run_script("train.py", "--recipe", "demo", *common, "--continue_train",
                      "--pretrain_args", "--niter 2 --pg_niter 2", "--finetune_args", "--niter 4")
    assert more.returncode == 0, more.stderr[-3000:]
    assert "=== pretrain" not in more.stdout and "--continue_train" in more.stdout
    assert os.path.isfile(checkpoint.net_path(folder, "4", "G"))


def test_improved_recipe_trains_ranks_and_averages_its_ema_generator(tiny_dataset, fid_weights_file, tmp_path):
    """As a user, at a tiny size: train.py --recipe improved (both phases, the EMA generator in every
    checkpoint), util/fid.py ranks the fine-tuning checkpoints with their EMA generators and averages the best
    two (EMA included), test.py generates from the average."""
    from util.core import checkpoint
    ckpt = str(tmp_path / "ck")
    common = ["--input_path", os.path.join(tiny_dataset, "train"), "--name", "imp", "--checkpoints_dir", ckpt,
              *TINY_NET_FLAGS, "--load_size", "144", "--batchSize", "4", "--print_freq", "1",
              "--inception_loss", "no", "--no_pure_dictionary"]
    result = run_script("train.py", "--recipe", "improved", *common,
                        "--pretrain_args", "--niter 2 --pg_niter 1", "--finetune_args", "--niter 4")
    assert result.returncode == 0, result.stderr[-3000:]
    folder = os.path.join(ckpt, "imp")
    for tag in ("2", "3", "4"):  # pre-training saves its last epoch, fine-tuning every epoch
        g, g_ema = checkpoint.read_net(folder, tag, "G"), checkpoint.read_net(folder, tag, "G_ema")
        assert set(g) == set(g_ema) and any(not np.array_equal(g[k], g_ema[k]) for k in g)
    rank = run_script("util/fid.py", os.path.join(tiny_dataset, "train", "imgs"),
                      os.path.join(tiny_dataset, "test", "labels"), folder, "3-4", "--average_best", "2",
                      "--inception_weights", fid_weights_file, "--gpu", "off", timeout=900)
    assert rank.returncode == 0, rank.stderr[-3000:]
    assert "EMA" in rank.stdout + rank.stderr
    averaged = checkpoint.read_net(folder, "avg_3_4", "G_ema")
    three, four = checkpoint.read_net(folder, "3", "G_ema"), checkpoint.read_net(folder, "4", "G_ema")
    key = next(k for k in averaged if k.endswith("conv_img.weight"))
    np.testing.assert_allclose(averaged[key], (three[key] + four[key]) / 2, rtol=1e-5, atol=1e-7)
    out_dir = str(tmp_path / "generated")
    gen = run_script("test.py", "--input_path", os.path.join(tiny_dataset, "test", "labels"), "--output_path",
                     out_dir, "--name", "imp", "--checkpoints_dir", ckpt, "--which_epoch", "avg_3_4",
                     "--nThreads", "0", "--gpu", "off")
    assert gen.returncode == 0, gen.stderr[-3000:]
    assert "EMA" in gen.stdout + gen.stderr and len(os.listdir(out_dir)) == 3
