"""The two-phase recipe: shipped presets, train.py's phase plan, and a tiny
pre-training + fine-tuning run whose final checkpoint test_phase.py uses."""

import os
import types

import numpy as np
import pytest

from conftest import TINY_NET_FLAGS, run_script

import train as recipe
from options import presets, train_options
from util.errors import CheckpointError, OptionError, UserError


@pytest.mark.parametrize("name", presets.available())
def test_every_shipped_preset_parses(name):
    opt, _ = train_options.parse(["--input_path", "x", "--preset", name])
    assert opt.preset == name


def test_apf_presets_hold_the_reference_recipe():
    pre, _ = train_options.parse(["--input_path", "x", "--preset", "apf_pretrain"])
    fine, _ = train_options.parse(["--input_path", "x", "--preset", "apf_finetune"])
    assert (pre.batchSize, pre.niter, pre.pg_niter, pre.num_D, pre.crop_size) == (10, 180, 180, 4, 512)
    assert (fine.batchSize, fine.niter, fine.save_epoch_freq, fine.num_D) == (5, 310, 1, 4)
    assert fine.diff_aug == "color,crop,translation" and fine.use_seg_noise and fine.inception_loss
    assert fine.pg_niter == 0 and fine.crop_size == 512  # architecture inherited through "extends"


def test_demo_presets_grow_three_levels_within_pretraining():
    pre, _ = train_options.parse(["--input_path", "x", "--preset", "demo_pretrain"])
    fine, _ = train_options.parse(["--input_path", "x", "--preset", "demo_finetune"])
    assert pre.num_D == 3 and 0 < pre.pg_niter < pre.niter < fine.niter
    assert fine.no_vgg_loss and not fine.inception_loss  # the demo needs no pretrained weights


def test_command_line_flags_override_a_preset():
    opt, _ = train_options.parse(["--input_path", "x", "--preset", "apf_finetune", "--batchSize", "2",
                                  "--use_seg_noise", "no", "--diff_aug", ""])
    assert (opt.batchSize, opt.use_seg_noise, opt.diff_aug) == (2, False, "")


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(OptionError, match="shipped presets"):
        train_options.parse(["--input_path", "x", "--preset", "no_such_recipe"])


def test_recipes_are_the_preset_pairs():
    assert {"apf", "demo"} <= set(recipe.recipes())
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
    from util import checkpoint
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

    out_dir = str(tmp_path / "generated")
    gen = run_script("test_phase.py", "--input_path", os.path.join(tiny_dataset, "test", "labels"),
                     "--output_path", out_dir, "--name", "two", "--checkpoints_dir", ckpt, "--nThreads", "0")
    assert gen.returncode == 0, gen.stderr[-3000:]
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
