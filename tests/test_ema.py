"""The EMA generator (--ema_decay): the update rule of models.ema, the trainer's EMA networks (G_ema,
E_ema), their checkpoints through training, resume and --init_from-like starts, generation with them
(and --no_ema without), weight averaging of them, and the option's check."""

import argparse
import contextlib
import io
import math
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_NET_FLAGS, run_script, tiny_train_opt
from util.core import checkpoint
from util.core.errors import CheckpointError, OptionError

DECAY = 0.9
# one iteration per epoch (4 pairs, batch 4): checkpoint N holds the state after N generator steps
TRAIN_FLAGS = [*TINY_NET_FLAGS, "--batchSize", "4", "--max_dataset_size", "4", "--lambda_l1", "1",
               "--print_freq", "1", "--display_freq", "2", "--save_epoch_freq", "1"]
# state-dict entries that are buffers (copied, not averaged): spectral-norm vectors, batch-norm statistics
BUFFER_SUFFIXES = (".weight_u", ".weight_v", "running_mean", "running_var", "num_batches_tracked")


def is_buffer(key):
    return key.endswith(BUFFER_SUFFIXES)


# -- the update rule (models.ema) -------------------------------------------------------------------

def tiny_module():
    """A module with trainable parameters (linear weight, bias, spectral-norm conv weight), float buffers
    (a running statistic, the spectral-norm vectors) and an integer buffer."""
    import jittor as jt
    from jittor import nn

    from models.normalization import SNConv2d

    class Tiny(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(3, 2)
            self.conv = SNConv2d(2, 2, 1)
            self.stat = jt.zeros(2).stop_grad()
            self.count = jt.zeros((1,), "int32").stop_grad()

        def execute(self, x):
            return self.fc(x)

    return Tiny()


def numpy_state(net):
    return {k: v.numpy().copy() for k, v in net.state_dict().items()}


def set_state(net, values):
    import jittor as jt
    for key, var in net.state_dict().items():
        if key in values:
            var.assign(jt.array(values[key]).astype(var.dtype))


def test_update_rule_matches_the_closed_form_and_copies_buffers():
    from models.ema import ExponentialMovingAverage
    net = tiny_module()
    start = numpy_state(net)
    ema = ExponentialMovingAverage({"G": net}, 0.75)
    copy = ema.copies["G"]
    assert not copy.is_training() and numpy_state(copy).keys() == start.keys()
    for key, value in numpy_state(copy).items():
        np.testing.assert_array_equal(value, start[key], err_msg=key)  # starts as an exact copy
    assert not {id(v) for v in copy.state_dict().values()} & {id(v) for v in net.state_dict().values()}

    trainable = {k for k, v in net.state_dict().items() if not v.is_stop_grad()}
    assert trainable == {"fc.weight", "fc.bias", "conv.weight_orig", "conv.bias"}
    rng = np.random.RandomState(0)
    shown = []
    for step in range(1, 5):
        values = {k: (rng.randn(*v.shape) * 3).astype(v.dtype) for k, v in start.items()}
        values["count"] = np.array([step], np.int32)
        set_state(net, values)
        shown.append(values)
        ema.update()
    got, d, k = numpy_state(copy), 0.75, len(shown)
    for key in trainable:  # ema_k = d^k e_0 + (1 - d) sum_i d^(k-i) p_i
        want = d ** k * start[key].astype(np.float64) + sum(
            (1 - d) * d ** (k - i) * shown[i - 1][key].astype(np.float64) for i in range(1, k + 1))
        np.testing.assert_allclose(got[key], want, rtol=1e-5, atol=1e-6, err_msg=key)
    for key in set(start) - trainable:  # buffers: the live values of the last update
        np.testing.assert_array_equal(got[key], shown[-1][key], err_msg=key)
    assert got["count"].dtype == np.int32
    # the live network is not touched
    for key, value in numpy_state(net).items():
        np.testing.assert_array_equal(value, shown[-1][key], err_msg=key)


def test_decay_zero_copies_and_partial_copy_from_live():
    from models.ema import ExponentialMovingAverage
    net = tiny_module()
    ema = ExponentialMovingAverage({"net": net}, 0.0)
    values = {k: v + 1 for k, v in numpy_state(net).items()}
    set_state(net, values)
    ema.update()
    for key, value in numpy_state(ema.copies["net"]).items():
        np.testing.assert_array_equal(value, values[key], err_msg=key)

    ema = ExponentialMovingAverage({"net": net}, 0.5)
    set_state(net, {k: v + 1 for k, v in values.items()})
    ema.copy_from_live("net", ["fc.bias"])
    got = numpy_state(ema.copies["net"])
    np.testing.assert_array_equal(got["fc.bias"], values["fc.bias"] + 1)
    np.testing.assert_array_equal(got["fc.weight"], values["fc.weight"])


def test_decay_range_and_a_copy_that_no_longer_mirrors_its_network():
    from models.ema import ExponentialMovingAverage
    for bad in (1.0, -0.1, math.nan):
        with pytest.raises(ValueError, match="decay"):
            ExponentialMovingAverage({"net": tiny_module()}, bad)
    net = tiny_module()
    ema = ExponentialMovingAverage({"net": net}, 0.5)
    del net.conv  # a structural change made to one of the two only
    with pytest.raises(ValueError, match="no longer mirrors"):
        ema.update()
    del ema.copies["net"].conv  # ... and to both
    ema.update()


# -- the trainer's EMA networks ---------------------------------------------------------------------

def max_abs(a, b):
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) if a[k].size else 0.0 for k in a)


def test_trainer_keeps_ema_copies_outside_the_optimiser_and_loads_them():
    from models.networks import ema_network_names
    from models.trainer import SPADETrainer
    opt = tiny_train_opt("--ema_decay", "0.5", "--encode_mask", "--pg_niter", "2")
    assert ema_network_names(opt) == ["G_ema", "E_ema"]
    assert ema_network_names(tiny_train_opt()) == []
    trainer = SPADETrainer(opt, 1)
    assert list(trainer.nets) == ["G", "E", "D", "G_ema", "E_ema"] and trainer.progressive
    optimised = {id(p) for group in trainer.optimizer_G.param_groups for p in group["params"]}
    for name in ("G", "E"):
        live, ema = trainer.nets[name], trainer.nets[name + "_ema"]
        assert max_abs(numpy_state(ema), numpy_state(live)) == 0.0 and not ema.is_training()
        assert not optimised & {id(p) for p in ema.parameters()}
    assert "to_rgb_0.weight" in trainer.network_states()["G_ema"]

    trainer.finish_progressive()  # the EMA generator loses its to-RGB heads too
    states = {name: numpy_state(net) for name, net in trainer.nets.items()}
    assert not [k for k in states["G_ema"] if k.startswith("to_rgb_")]
    assert list(states["G_ema"]) == list(states["G"])
    trainer.update_ema()

    # resuming a checkpoint without EMA networks: they start from the loaded G, E
    shifted = {name: {k: v + 1 if v.dtype.kind == "f" else v for k, v in s.items()} for name, s in states.items()}
    assert trainer.load_networks({n: shifted[n] for n in ("G", "E", "D")}, "src") == ["G_ema", "E_ema"]
    assert max_abs(numpy_state(trainer.nets["G_ema"]), shifted["G"]) == 0.0
    # ... and with them, from theirs
    shifted["G_ema"] = {k: v + 2 if v.dtype.kind == "f" else v for k, v in states["G_ema"].items()}
    assert trainer.load_networks(shifted, "src") == [] and trainer.ema_from_live == []
    assert max_abs(numpy_state(trainer.nets["G_ema"]), shifted["G_ema"]) == 0.0

    # --init_from into a model with seg noise: the EMA's new parameters start from G's values
    fine = SPADETrainer(tiny_train_opt("--ema_decay", "0.5", "--encode_mask", "--use_seg_noise"), 3)
    new = fine.init_networks(shifted, "src")
    assert new["G_ema"] == new["G"] and new["G"] and all("seg_noise" in k for k in new["G"])
    g, g_ema = numpy_state(fine.nets["G"]), numpy_state(fine.nets["G_ema"])
    for key in g_ema:
        np.testing.assert_array_equal(g_ema[key], g[key] if key in new["G"] else shifted["G_ema"][key], key)
    fine.init_networks({n: shifted[n] for n in ("G", "E", "D")}, "src")
    assert fine.ema_from_live == ["G_ema", "E_ema"]


# -- training runs ------------------------------------------------------------------------------------

def train(data, ckpt, name, *extra):
    result = run_script("train_phase.py", "--input_path", os.path.join(data, "train"), "--name", name,
                        "--checkpoints_dir", ckpt, *TRAIN_FLAGS, *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def expected_average(ema_before, live_after, decay=DECAY):
    """decay * ema + (1 - decay) * weights for the parameters (buffers left out: not comparable here, the
    discriminator step runs G in training mode after the EMA update)."""
    return {k: decay * ema_before[k].astype(np.float64) + (1 - decay) * live_after[k]
            for k in live_after if not is_buffer(k)}


def assert_parameters_close(got, want):
    assert want and set(want) < set(got)
    for key, value in want.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.fixture(scope="module")
def ema_run(tiny_dataset, tmp_path_factory):
    ckpt = str(tmp_path_factory.mktemp("ema"))
    out = train(tiny_dataset, ckpt, "ema", "--niter", "2", "--ema_decay", str(DECAY))
    return {"ckpt": ckpt, "folder": os.path.join(ckpt, "ema"), "out": out.stdout}


def test_training_saves_the_ema_generator_and_updates_it_every_step(ema_run):
    folder = ema_run["folder"]
    assert "keeping an exponential moving average (--ema_decay 0.9) of G, saved as TAG_net_G_ema.pkl" in \
        ema_run["out"]
    for tag in ("1", "2", "latest"):
        assert os.path.isfile(checkpoint.net_path(folder, tag, "G_ema")), tag
        assert "G_ema" in checkpoint.networks_of(folder, tag)
    assert not os.path.exists(checkpoint.net_path(folder, "1", "D_ema"))
    g1, ema1 = checkpoint.read_net(folder, "1", "G"), checkpoint.read_net(folder, "1", "G_ema")
    g2, ema2 = checkpoint.read_net(folder, "2", "G"), checkpoint.read_net(folder, "2", "G_ema")
    assert list(ema1) == list(g1) and [k for k in g1 if is_buffer(k)]
    # an average, not G: one Adam step (lr 1e-4) from the start moved G by about 1e-4, the EMA 0.1 of that
    assert max(np.abs(ema1[k] - g1[k]).max() for k in g1 if not is_buffer(k)) > 5e-5
    # step 2 (the only one of epoch 2): ema2 = 0.9 * ema1 + 0.1 * G after the step
    assert_parameters_close(ema2, expected_average(ema1, g2))


def test_resume_continues_the_ema_exactly(tiny_dataset, ema_run, tmp_path):
    ckpt = str(tmp_path)
    shutil.copytree(ema_run["folder"], os.path.join(ckpt, "ema"))
    out = train(tiny_dataset, ckpt, "ema", "--niter", "2", "--ema_decay", str(DECAY), "--continue_train",
                "--which_epoch", "1").stdout
    assert "resumed from 1: epoch 2" in out and "has no G_ema" not in out
    straight = checkpoint.read_net(ema_run["folder"], "2", "G_ema")
    assert max_abs(checkpoint.read_net(os.path.join(ckpt, "ema"), "2", "G_ema"), straight) < 1e-5


def test_resume_without_ema_networks_starts_the_ema_from_g(tiny_dataset, ema_run, tmp_path):
    # checkpoint 1 of the EMA run as a run without EMA had written it
    ckpt, src = str(tmp_path), ema_run["folder"]
    folder = os.path.join(ckpt, "plain")
    state, nets, _ = checkpoint.read_training_checkpoint(src, "1", ["G", "D"], optional=["G_ema"])
    assert sorted(nets) == ["D", "G", "G_ema"]
    del nets["G_ema"], state["net_digests"]
    checkpoint.write_checkpoint(folder, "1", nets, state)
    shutil.copy(os.path.join(src, "opt.json"), folder)
    out = train(tiny_dataset, ckpt, "plain", "--niter", "2", "--ema_decay", str(DECAY), "--continue_train",
                "--which_epoch", "1").stdout
    assert "the checkpoint has no G_ema: started from the loaded G" in out
    # the EMA started equal to G before the step: after it, 0.9 * G_1 + 0.1 * G_2
    assert_parameters_close(checkpoint.read_net(folder, "2", "G_ema"),
                            expected_average(nets["G"], checkpoint.read_net(folder, "2", "G")))


# -- generation and averaging -----------------------------------------------------------------------

def generate(tiny_dataset, ema_run, out, *extra):
    import test_phase
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = test_phase.main(["--input_path", os.path.join(tiny_dataset, "test", "labels"), "--output_path",
                                str(out), "--name", "ema", "--checkpoints_dir", ema_run["ckpt"], "--which_epoch", "2",
                                "--gpu", "off", "--image_format", "png", "--ref_json", "none", *extra])
    assert code == 0
    images = {name: np.asarray(Image.open(os.path.join(out, name))) for name in sorted(os.listdir(out))}
    return buffer.getvalue(), images


def test_generation_uses_the_ema_generator_unless_no_ema(tiny_dataset, ema_run, tmp_path):
    out, with_ema = generate(tiny_dataset, ema_run, tmp_path / "ema")
    assert "using the EMA generator of checkpoint 2 (2_net_G_ema.pkl)" in out
    out, raw = generate(tiny_dataset, ema_run, tmp_path / "raw", "--no_ema")
    assert "using the raw generator of checkpoint 2 (2_net_G.pkl; --no_ema)" in out
    assert with_ema.keys() == raw.keys() and len(raw) == 3
    assert any(not np.array_equal(with_ema[name], raw[name]) for name in raw)


def test_generator_files_needs_every_ema_network(tmp_path):
    from models.generation import generator_files
    folder = str(tmp_path / "exp")
    state = {"w": np.zeros(2, np.float32)}
    checkpoint.write_checkpoint(folder, "5", {"G": state, "E": state, "G_ema": state})
    opt = argparse.Namespace(checkpoints_dir=str(tmp_path), name="exp", which_epoch="5", no_ema=False)
    sources, note = generator_files(opt, ["G", "E"])
    assert sources == {"G": "G", "E": "E"} and "has G_ema but no E_ema" in note
    assert generator_files(opt, ["G"])[0] == {"G": "G_ema"}
    # a G_ema left behind by an earlier save of a training tag does not count
    opt.which_epoch = "latest"
    checkpoint.write_checkpoint(folder, "latest", {"G": state, "G_ema": state}, {"next_epoch": 2})
    assert generator_files(opt, ["G"])[0] == {"G": "G_ema"}
    checkpoint.write_checkpoint(folder, "latest", {"G": state}, {"next_epoch": 3})
    assert os.path.isfile(checkpoint.net_path(folder, "latest", "G_ema"))
    assert "G_ema" not in checkpoint.networks_of(folder, "latest")
    sources, note = generator_files(opt, ["G"])
    assert sources == {"G": "G"} and "has no EMA generator" in note
    _, nets, _ = checkpoint.read_training_checkpoint(folder, "latest", ["G"], optional=["G_ema"])
    assert list(nets) == ["G"]


def test_merge_averages_the_ema_networks(ema_run, capsys):
    from models.averaging import average_states
    from util import merge_ckpt
    folder = ema_run["folder"]
    assert merge_ckpt.main([folder, "1", "2", "--out", "avg_ema"]) == 0
    printed = capsys.readouterr().out
    assert checkpoint.net_path(folder, "avg_ema", "G_ema") in printed
    want, _ = average_states([checkpoint.read_net(folder, t, "G_ema") for t in ("1", "2")])
    got = checkpoint.read_net(folder, "avg_ema", "G_ema")
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert not os.path.exists(checkpoint.net_path(folder, "avg_ema", "D"))

    # a tag without EMA networks: the default set leaves them out, with a note; asking for them is refused
    checkpoint.write_checkpoint(folder, "plain", {"G": checkpoint.read_net(folder, "1", "G")})
    assert merge_ckpt.main([folder, "2", "plain", "--out", "avg_plain"]) == 0
    assert "G_ema) are not averaged: tag(s) plain" in capsys.readouterr().out
    assert not os.path.exists(checkpoint.net_path(folder, "avg_plain", "G_ema"))
    with pytest.raises(CheckpointError, match="asks for G_ema but tag plain"):
        merge_ckpt.main([folder, "2", "plain", "--nets", "G,G_ema", "--out", "avg_x"])


# -- the option -------------------------------------------------------------------------------------

def test_invalid_ema_decay_is_a_clean_error(tiny_dataset):
    assert tiny_train_opt("--ema_decay", "0.999").ema_decay == 0.999
    for bad in ("1.0", "-0.1", "nan"):
        with pytest.raises(OptionError, match="--ema_decay must be within 0 <= d < 1"):
            tiny_train_opt("--ema_decay", bad)
    r = run_script("train_phase.py", "--input_path", os.path.join(tiny_dataset, "train"), *TRAIN_FLAGS,
                   "--ema_decay", "1.0", timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and "--ema_decay must be within 0 <= d < 1" in r.stderr
