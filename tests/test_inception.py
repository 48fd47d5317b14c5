"""InceptionV3 features (pytorch-fid's FID Inception) and the Inception feature loss.

The reference data in tests/data/ were made with PyTorch, torchvision and
pytorch-fid by tests/data/make_inception_manifests.py (see there): key/shape
manifests of both state dicts, and the outputs of pytorch-fid's InceptionV3
wrapper and of torchvision's Inception3 for random weights, which are rebuilt
here from the same NumPy seeds (only the calibrated BN statistics are stored).
"""

import os

import jittor as jt
import numpy as np
import pytest

from conftest import load_data_module
from options.train_options import DEFAULT_INCEPTION_WEIGHTS
from models.inception import (FEATURE_LAYERS, InceptionLoss, InceptionV3Features,
                              _is_ignored)
from util.core.errors import WeightsFileError

ref = load_data_module("make_inception_manifests")  # NumPy-only at import time; PyTorch only in its main()

FID_MANIFEST = ref.load_manifest(ref.FID_MANIFEST)
TV_MANIFEST = ref.load_manifest(ref.TV_MANIFEST)


def shapes_of(net):
    return {k: list(v.shape) for k, v in net.state_dict().items()}


def close(got, want, rtol=1e-4):
    """Max abs error relative to the reference's largest magnitude."""
    err = float(np.abs(np.asarray(got, np.float64) - want).max())
    scale = max(float(np.abs(want).max()), 1e-6)
    assert err <= rtol * scale, f"max abs error {err:.3g} vs reference scale {scale:.3g}"


@pytest.fixture(scope="module")
def reference():
    with np.load(ref.PARITY_FIXTURE) as f:
        return dict(f)


def _with_stats(state, reference, shapes):
    for key, value in reference.items():
        if key.startswith("stat:") and key[5:] in state:
            state[key[5:]] = value
    for key, shape in shapes.items():  # as in real PyTorch files
        if key.endswith("num_batches_tracked"):
            state[key] = np.array(0, dtype=np.int64)
    return state


# The FID weights (pytorch-fid's key layout: fc 1008 classes, num_batches_tracked included) are
# conftest's session fixtures fid_weights_state / fid_weights_file: random_inception_state(FID_MANIFEST)
# with the calibrated statistics of PARITY_FIXTURE, the weights the reference outputs were made with.

@pytest.fixture(scope="module")
def fid_net(fid_weights_file):
    return InceptionV3Features.from_file(fid_weights_file)


def test_shared_fid_weights_are_the_parity_weights(fid_weights_state, reference):
    assert fid_weights_state.keys() == FID_MANIFEST.keys()
    want = _with_stats(ref.random_inception_state(FID_MANIFEST), reference, FID_MANIFEST)
    for key, value in want.items():
        got = fid_weights_state[key]
        assert got.dtype == value.dtype and got.shape == value.shape, key
        np.testing.assert_array_equal(got, value, err_msg=key)


def test_names_and_shapes_equal_pytorch_fid_and_torchvision_keys():
    ours = shapes_of(InceptionV3Features())
    fid_ignored = sorted(k for k in FID_MANIFEST if _is_ignored(k))
    assert {k for k in fid_ignored if not k.endswith("num_batches_tracked")} == {"fc.weight", "fc.bias"}
    assert ours == {k: v for k, v in FID_MANIFEST.items() if not _is_ignored(k)}
    assert ours == {k: v for k, v in TV_MANIFEST.items() if not _is_ignored(k)}
    assert FID_MANIFEST["fc.weight"] == [1008, 2048] and TV_MANIFEST["fc.weight"] == [1000, 2048]
    assert any(k.startswith("AuxLogits.") for k in TV_MANIFEST)


def test_matches_pytorch_fid_at_299_with_resize(fid_net, reference):
    assert fid_net.variant == "fid"
    feats = fid_net(jt.array(ref.parity_inputs()["x299"]))
    assert list(feats) == list(FEATURE_LAYERS)
    close(feats["pool_3"].numpy(), reference["fid299/pool_3"])
    for name in ref.SAMPLED:
        got = feats[name].numpy()
        assert list(got.shape) == list(reference[f"fid299/{name}:shape"])
        close(got.reshape(-1)[reference[f"fid299/idx_{name}"]], reference[f"fid299/{name}:values"])
        close(got.mean(axis=(0, 2, 3)), reference[f"fid299/{name}:channel_mean"])
    assert feats["pool_3"].shape == (1, 2048, 1, 1)
    assert float(reference["fid299/pool_3"].std()) > 1e-3  # the random network is not degenerate


def test_matches_pytorch_fid_on_tiny_maps_without_resize(fid_net, reference):
    """75x75 is the smallest input: Mixed_6 maps are 3x3, Mixed_7 1x1 (Jittor's pool refuses those)."""
    feats = fid_net(jt.array(ref.parity_inputs()["x75"]), resize=False)
    for name in FEATURE_LAYERS:
        want = reference[f"fid75/{name}"]
        got = feats[name].numpy()
        assert got.shape == want.shape, name
        close(got, want)


def test_torchvision_state_dict_loads_with_torchvision_pooling(reference):
    state = _with_stats(ref.random_inception_state(TV_MANIFEST), reference, TV_MANIFEST)
    assert any(k.startswith("AuxLogits.") for k in state)
    net = InceptionV3Features.from_state_dict(state, path="inception_v3_google-random.pth")
    assert net.variant == "torchvision"
    feats = net(jt.array(ref.parity_inputs()["x75"]), resize=False)
    for name in FEATURE_LAYERS:
        close(feats[name].numpy(), reference[f"tv75/{name}"])


def test_missing_file_says_what_and_where(tmp_path):
    path = str(tmp_path / "nothing" / "pt_inception-2015-12-05-6726825d.pth")
    with pytest.raises(WeightsFileError) as err:
        InceptionV3Features.from_file(path)
    msg = str(err.value)
    assert path in msg and "pytorch-fid" in msg and "--inception_weights" in msg and "--inception_loss" in msg
    assert DEFAULT_INCEPTION_WEIGHTS == os.path.join("pretrained", "pt_inception-2015-12-05-6726825d.pth")


def test_unreadable_file(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a state dict at all")
    with pytest.raises(WeightsFileError, match="cannot read"):
        InceptionV3Features.from_file(str(path))


def test_wrong_state_dicts_are_refused(fid_weights_state):
    fid_state = fid_weights_state
    small = {k: v for k, v in fid_state.items() if not k.startswith("Mixed_7c.")}
    with pytest.raises(WeightsFileError, match="missing Mixed_7c"):
        InceptionV3Features.from_state_dict(small)
    shapes = dict(fid_state, **{"Mixed_5b.branch1x1.conv.weight": np.zeros((64, 192, 3, 3), np.float32)})
    with pytest.raises(WeightsFileError, match=r"Mixed_5b.branch1x1.conv.weight \(64, 192, 3, 3\)"):
        InceptionV3Features.from_state_dict(shapes)
    with pytest.raises(WeightsFileError, match="unexpected keys.*Mixed_8a"):
        InceptionV3Features.from_state_dict(dict(fid_state, **{"Mixed_8a.conv.weight": np.zeros(1, np.float32)}))
    with pytest.raises(WeightsFileError, match="not an InceptionV3 state dict"):
        InceptionV3Features.from_state_dict([1, 2, 3])


def test_inception_loss_zero_positive_gradient_and_frozen(fid_weights_file):
    loss_fn = InceptionLoss(fid_weights_file, resize=False)
    params = loss_fn.inception.parameters()
    assert params and all(p.is_stop_grad() for p in params)
    rs = np.random.RandomState(7)
    real = jt.array(rs.uniform(-1, 1, (1, 3, 75, 75)).astype(np.float32))
    fake = jt.array(rs.uniform(-1, 1, (1, 3, 75, 75)).astype(np.float32))
    assert loss_fn(real, real).item() == 0.0
    loss = loss_fn(fake, real)
    grad = jt.grad(loss, fake).numpy()
    value = loss.item()
    assert value > 0 and np.isfinite(grad).all() and np.abs(grad).max() > 0
    # A parent's train() reaches every descendant in Jittor: BN must keep its running stats, params stay frozen.
    loss_fn.train()
    assert all(p.is_stop_grad() for p in loss_fn.inception.parameters())
    assert abs(loss_fn(fake, real).item() - value) <= 1e-6 * value


def numpy_bilinear_resize(x, size):
    """PyTorch's bilinear interpolate with align_corners=False, in float64."""
    def axis(n_in, n_out):
        src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0)
        lo = np.minimum(np.floor(src).astype(int), n_in - 1)
        return lo, np.minimum(lo + 1, n_in - 1), src - lo
    (y0, y1, wy), (x0, x1, wx) = axis(x.shape[2], size[0]), axis(x.shape[3], size[1])
    x = x.astype(np.float64)
    rows = x[:, :, y0] * (1 - wy)[:, None] + x[:, :, y1] * wy[:, None]
    return rows[:, :, :, x0] * (1 - wx) + rows[:, :, :, x1] * wx


@pytest.mark.parametrize("shape,size", [((96, 128), (299, 299)), ((384, 512), (299, 299)), ((37, 53), (299, 299)),
                                        ((96, 128), (256, 256))])
def test_bilinear_resize_of_the_feature_networks_matches_numpy(shape, size, fusion):
    """The resize in front of Inception (299) and the style encoder (256) is Jittor's interpolate, a floor
    index and a fractional weight from one coordinate: right fused and op by op (coordinates near 512 are
    good to ~3e-5 pixel in float32; a wrong pixel would be off by up to 2)."""
    from jittor import nn
    x = np.random.RandomState(5).uniform(-1, 1, (2, 3, *shape)).astype(np.float32)
    got = nn.interpolate(jt.array(x), size=size, mode="bilinear", align_corners=False).numpy()
    np.testing.assert_allclose(got, numpy_bilinear_resize(x, size), atol=2e-4)
