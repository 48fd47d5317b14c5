"""Mixed precision (--amp): the loss scaler, the device decision, and the optimiser step's mechanics on a
small network (half-precision activations, float32 weights, buffers and moments, skipped overflow steps).

Whole-model half-precision training is for GPUs: on the CPU, Jittor's matrix products are float32-only,
so the spectral-normalised layers cannot run in half precision there and --amp falls back to float32.
"""

import os

import numpy as np
import pytest

from conftest import TINY_NET_FLAGS, run_script
from models.mixed_precision import LossScaler, MixedPrecision


def test_loss_scaler_halves_on_overflow_and_grows_after_good_steps():
    scaler = LossScaler(scale=1024.0, growth_interval=3, min_scale=1.0)
    assert scaler.update(True) and scaler.update(True) and scaler.scale == 1024.0
    assert scaler.update(True) and scaler.scale == 2048.0 and scaler.good_steps == 0
    assert not scaler.update(False) and scaler.scale == 1024.0
    assert scaler.update(True) and scaler.good_steps == 1
    for _ in range(20):
        scaler.update(False)
    assert scaler.scale == 1.0
    other = LossScaler()
    other.load(scaler.state())
    assert other.state() == scaler.state()


def test_device_decision():
    assert MixedPrecision.for_device("off", True)[0].dtype is None
    precision, note = MixedPrecision.for_device("bf16", False)
    assert precision.dtype is None and "needs a GPU" in note and "float32" in note
    precision, note = MixedPrecision.for_device("bf16", True)
    assert (precision.dtype, precision.scaler, note) == ("bfloat16", None, None)
    precision, _ = MixedPrecision.for_device("fp16", True)
    assert precision.dtype == "float16" and precision.scaler.scale == 2.0 ** 16
    with pytest.raises(ValueError):
        MixedPrecision.for_device("fp8", True)


def small_net():
    import jittor as jt
    from jittor import nn
    jt.set_global_seed(0, different_seed_for_mpi=False)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm(8, affine=False), nn.ReLU(),
                         nn.Conv2d(8, 3, 3, padding=1))


def fit(precision, steps=8, poison_step=None):
    """Train ``small_net`` to map x to a fixed target; returns (losses, net, dtype seen inside autocast)."""
    import jittor as jt
    from jittor import nn
    net = small_net()
    optimizer = nn.Adam(net.parameters(), lr=0.01)
    rs = np.random.RandomState(0)
    x, target = jt.array(rs.randn(2, 3, 8, 8).astype(np.float32)), jt.array(rs.randn(2, 3, 8, 8).astype(np.float32))
    losses, seen = [], None
    for step in range(steps):
        with precision.autocast():
            y = net(precision.cast(x))
            seen = str(y.dtype)
            loss = ((y - precision.cast(target)) ** 2).mean()
            if step == poison_step:
                loss = loss * 1e30  # overflows half precision: the step must be skipped
        applied = precision.step(optimizer, loss, {"net": net})
        losses.append((float(loss.float32().item()), applied))
    return losses, net, seen


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_step_keeps_float32_state_and_learns(dtype):
    reference, _, seen32 = fit(MixedPrecision())
    # a float16 scale of 2**16 overflows this net's gradients: it would back off first (tested below)
    losses, net, seen = fit(MixedPrecision(dtype, LossScaler(scale=256.0) if dtype == "float16" else None))
    assert seen32 == "float32" and seen == dtype
    assert all(applied for _, applied in losses)
    assert {str(p.dtype) for p in net.parameters()} == {"float32"}  # weights and batch-norm statistics
    assert losses[-1][0] < 0.8 * losses[0][0]
    assert losses[0][0] == pytest.approx(reference[0][0], rel=0.05)  # the same function, rounded (bf16: 8 bits)
    assert losses[-1][0] == pytest.approx(reference[-1][0], rel=0.1)


def test_float16_overflow_skips_the_step_and_backs_off():
    precision = MixedPrecision("float16")
    precision.scaler.scale = 1024.0
    losses, net, _ = fit(precision, steps=4, poison_step=1)
    assert [applied for _, applied in losses] == [True, False, True, True]
    assert precision.skipped_steps == 1 and precision.scaler.scale == 512.0
    assert {str(p.dtype) for p in net.parameters()} == {"float32"}
    assert all(np.isfinite(p.numpy()).all() for p in net.parameters())


def test_amp_on_the_cpu_trains_in_float32_with_a_note(tiny_dataset, tmp_path):
    result = run_script("train_phase.py", "--input_path", os.path.join(tiny_dataset, "train"), "--name", "amp",
                        "--checkpoints_dir", str(tmp_path), *TINY_NET_FLAGS, "--batchSize", "2",
                        "--max_dataset_size", "2", "--niter", "1", "--amp", "bf16")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--amp bf16: mixed precision needs a GPU" in result.stdout
    from util.core.checkpoint import read_file
    state = read_file(os.path.join(str(tmp_path), "amp", "latest_state.pkl"))
    assert state["precision"] == {"dtype": None, "scaler": None}
