"""The project's CPU convolutions (models/convolution.py) against Jittor's own: forward, gradients to the
input, weights and bias, in each mode, fused and operator by operator."""

import numpy as np
import pytest

# (batch, in channels, height, width, out channels, kernel, stride, padding, dilation, bias)
GEOMETRIES = {
    "3x3, Winograd-sized map": (2, 32, 48, 64, 24, 3, 1, 1, 1, True),
    "3x3, small map (direct)": (1, 32, 12, 16, 16, 3, 1, 1, 1, True),
    "3x3, 3 input channels": (2, 3, 48, 64, 16, 3, 1, 1, 1, True),
    "3x3, 29 input channels, no bias": (2, 29, 48, 64, 32, 3, 1, 1, 1, False),
    "4x4 stride 2 (PatchGAN)": (2, 35, 24, 32, 16, 4, 2, 2, 1, True),
    "1x1": (2, 32, 12, 16, 8, 1, 1, 0, 1, False),
    "5x5, odd sizes": (2, 10, 17, 13, 7, 5, 1, 2, 1, True),
    "3x3 dilation 2": (1, 16, 20, 24, 16, 3, 1, 2, 2, True),
}
# Relative to the largest magnitude of the compared tensor: the kernels sum in different orders, and
# Winograd's transforms round differently from the direct sum (measured: up to 7e-6).
TOL = 3e-5


def run_convolution(mode, x, w, b, geometry, dy):
    import jittor as jt

    from models import convolution
    _, _, _, _, _, _, stride, padding, dilation, _ = geometry
    convolution.set_cpu_conv(mode)
    xv, wv = jt.array(x), jt.array(w)
    bv = jt.array(b) if b is not None else None
    y = convolution.conv2d(xv, wv, bv, stride, padding, dilation)
    wrt = [xv, wv] + ([bv] if bv is not None else [])
    grads = jt.grad((y * jt.array(dy)).sum(), wrt)
    return [y.numpy()] + [g.numpy() for g in grads]


@pytest.mark.parametrize("mode", ["direct", "winograd"])
@pytest.mark.parametrize("case", sorted(GEOMETRIES))
def test_cpu_convolution_equals_jittors(case, mode, fusion):
    geometry = GEOMETRIES[case]
    n, ic, h, w_, oc, k, stride, padding, dilation, bias = geometry
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, ic, h, w_)).astype(np.float32)
    w = (rng.standard_normal((oc, ic, k, k)) * 0.1).astype(np.float32)
    b = rng.standard_normal(oc).astype(np.float32) if bias else None
    oh = (h + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    ow = (w_ + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    dy = rng.standard_normal((n, oc, oh, ow)).astype(np.float32)
    ours = run_convolution(mode, x, w, b, geometry, dy)
    jittors = run_convolution("jittor", x, w, b, geometry, dy)
    assert ours[0].shape == (n, oc, oh, ow)
    for name, mine, ref in zip(["y", "dx", "dw", "db"], ours, jittors):
        assert mine.shape == ref.shape, name
        err = np.abs(mine - ref).max() / np.abs(ref).max()
        assert err <= TOL, f"{case}, {mode}: {name} differs by {err:.2e} of its scale"


def test_winograd_runs_only_on_large_enough_maps():
    """Below WINOGRAD_MIN_OUTPUT_PIXELS the winograd mode computes exactly what the direct mode does; above it
    (on a CPU where oneDNN has Winograd kernels) it computes with another algorithm."""
    from models import convolution
    rng = np.random.default_rng(1)
    small, large = GEOMETRIES["3x3, small map (direct)"], GEOMETRIES["3x3, Winograd-sized map"]
    assert small[0] * small[2] * small[3] < convolution.WINOGRAD_MIN_OUTPUT_PIXELS
    assert large[0] * large[2] * large[3] >= convolution.WINOGRAD_MIN_OUTPUT_PIXELS
    for geometry, same in ((small, True), (large, not convolution.winograd_available())):
        n, ic, h, w_, oc, k, *_ = geometry
        x = rng.standard_normal((n, ic, h, w_)).astype(np.float32)
        w = (rng.standard_normal((oc, ic, k, k)) * 0.1).astype(np.float32)
        dy = rng.standard_normal((n, oc, h, w_)).astype(np.float32)
        results = [run_convolution(mode, x, w, None, geometry, dy) for mode in ("direct", "winograd")]
        assert all(np.array_equal(a, b) for a, b in zip(*results)) == same, geometry


def test_conv2d_module_keeps_jittors_parameters():
    """Checkpoints do not change: the project's Conv2d has nn.Conv2d's parameter names and shapes."""
    from jittor import nn

    from models.convolution import Conv2d
    ours, jittors = Conv2d(4, 6, 3, padding=1), nn.Conv2d(4, 6, 3, padding=1)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in jittors.state_dict().items()}


def test_cpu_conv_option_is_checked():
    from models.convolution import set_cpu_conv
    with pytest.raises(ValueError, match="winograd, direct, jittor"):
        set_cpu_conv("fast")


def test_profiler_names_the_passes():
    """util.metrics.op_profile files the three passes under the convolution kinds."""
    from models import convolution
    from util.metrics.op_profile import op_kind
    header = "code«IN_SIZE:2«HEADER:" + convolution._HEADER
    kinds = {kind: op_kind(header + "«CODE:" + convolution._PROBLEM + source)
             for kind, source in convolution._SOURCES.items()}
    assert kinds == {"forward": "convolution, forward", "backward data": "convolution, backward to the input",
                     "backward weights": "convolution, backward to the weights"}


def test_networks_take_the_cpu_conv_option():
    """build_networks applies --cpu_conv; every convolution of the networks is the project's."""
    from conftest import tiny_train_opt
    from jittor import nn

    from models import convolution
    from models.networks import build_networks
    opt = tiny_train_opt("--cpu_conv", "direct")
    nets = build_networks(opt, with_discriminator=True)
    assert convolution._mode["cpu"] == "direct"
    convs = [m for net in nets.values() for m in net.modules() if isinstance(m, nn.Conv)]
    assert convs and all(isinstance(m, convolution.Conv2d) for m in convs)


def test_without_onednn_jittors_convolution_runs(monkeypatch):
    """Jittor run with use_mkl=0 has no oneDNN to compile against: conv2d is then Jittor's conv2d."""
    import jittor as jt
    from jittor import nn

    from models import convolution
    monkeypatch.setitem(convolution._flags, "options", None)
    monkeypatch.setattr(convolution, "_pass", lambda *a, **k: pytest.fail("oneDNN operator used"))
    x, w = jt.randn(1, 4, 8, 8), jt.randn(2, 4, 3, 3)
    np.testing.assert_array_equal(convolution.conv2d(x, w, None, 1, 1).numpy(), nn.conv2d(x, w, None, 1, 1).numpy())
