"""Output shapes of every network at two resolutions, encoders, losses and the lr schedule."""

import jittor as jt
import numpy as np
import pytest

from conftest import tiny_train_opt

SMALL = ["--ngf", "4", "--spade_hidden", "8"]


def _label(n, h, w, nc=29, seed=0):
    return jt.array(np.random.RandomState(seed).randint(0, nc, (n, h, w)).astype(np.uint8))


@pytest.mark.parametrize("size,mode,start", [((128, 96), "normal", (3, 4)), ((256, 192), "apf_more", (3, 4))])
@pytest.mark.parametrize("start_from", ["fc", "encode_mask", "use_vae"])
def test_generator_and_encoders_shapes(size, mode, start, start_from):
    from models.generator import start_size
    from models.networks import build_networks, one_hot
    w, h = size
    extra = {"fc": [], "encode_mask": ["--encode_mask"], "use_vae": ["--use_vae", "--z_dim", "16"]}[start_from]
    opt = tiny_train_opt(*SMALL, "--crop_size", str(w), "--num_upsampling_layers", mode, *extra)
    assert start_size(opt) == start
    nets = build_networks(opt, with_discriminator=False)
    seg = one_hot(_label(2, h, w), 29)
    mask_features = None
    if "E" in nets:
        mask_features = nets["E"](seg)
        assert mask_features.shape == (2, 16 * opt.ngf, *start)
    z = jt.randn(2, 16) if opt.use_vae else None
    fake = nets["G"](seg, z=z, mask_features=mask_features)
    out = fake.numpy()
    assert out.shape == (2, 3, h, w)
    assert np.all(np.abs(out) <= 1.0) and np.isfinite(out).all()


@pytest.mark.parametrize("size", [(12, 16), (6, 8), (48, 64), (7, 9), (17, 23), (31, 40)])
def test_resize_label_picks_the_nearest_source_pixel_and_stays_one_hot(size, fusion):
    """Every SPADE layer resizes the label map: output pixel i takes source pixel floor(i * in / out), the
    rule of PyTorch's nearest interpolate (scale in float32), fused and op by op."""
    from models.networks import one_hot
    from models.normalization import resize_label
    h, w = 24, 32
    classes = np.random.RandomState(3).randint(0, 29, (2, h, w))
    got = resize_label(one_hot(jt.array(classes.astype(np.uint8)), 29), size).numpy()
    rows = np.minimum(np.floor(np.arange(size[0], dtype=np.float32) * np.float32(h / size[0])), h - 1)
    cols = np.minimum(np.floor(np.arange(size[1], dtype=np.float32) * np.float32(w / size[1])), w - 1)
    expected = classes[:, rows.astype(int)][:, :, cols.astype(int)]
    assert got.shape == (2, 29, *size)
    np.testing.assert_array_equal(got.sum(axis=1), 1.0)
    np.testing.assert_array_equal(got.argmax(axis=1), expected)


def test_spade_more_layout_upsamples_between_the_middle_blocks():
    """SPADE's 'more': the parameters of 'normal', one more 2x upsampling after G_middle_0, so a start map of
    half the size (checked against the stored outputs of SPADE itself in tests/test_reference_parity.py)."""
    from models.generator import start_size
    from models.networks import build_networks, one_hot
    normal = build_networks(tiny_train_opt(*SMALL, "--crop_size", "128", "--aspect_ratio", "2"), False)["G"]
    opt = tiny_train_opt(*SMALL, "--crop_size", "128", "--aspect_ratio", "2", "--num_upsampling_layers",
                         "spade_more")
    more = build_networks(opt, False)["G"]
    assert {k: tuple(v.shape) for k, v in more.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in normal.state_dict().items()}
    assert start_size(opt) == (1, 2)
    assert tuple(more(one_hot(_label(1, 64, 128), 29)).shape) == (1, 3, 64, 128)


@pytest.mark.parametrize("kind", ["batch", "instance"])
@pytest.mark.parametrize("offset", [0.0, 30.0])
def test_param_free_norms_match_float64_even_with_a_large_mean(kind, offset, fusion):
    """Jittor's own norms compute E[x^2] - E[x]^2: 1.2% off at mean 30, std 0.5 (docs/jittor-defects.md)."""
    from models.normalization import param_free_norm
    rng = np.random.RandomState(3)
    x = (rng.normal(0, 0.5, (2, 16, 24, 32)) + offset).astype(np.float32)
    w = rng.normal(0, 1, x.shape).astype(np.float32)
    layer = param_free_norm(kind, 16)
    xv = jt.array(x)
    y = layer(xv)
    grad = jt.grad((y * jt.array(w)).sum(), xv).numpy()
    axes = (0, 2, 3) if kind == "batch" else (2, 3)
    x64 = x.astype(np.float64)
    std = np.sqrt(x64.var(axes, keepdims=True) + 1e-5)
    ref = (x64 - x64.mean(axes, keepdims=True)) / std
    ref_grad = (w - w.mean(axes, keepdims=True) - ref * (w * ref).mean(axes, keepdims=True)) / std
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-4)
    np.testing.assert_allclose(grad, ref_grad, atol=1e-5 * np.abs(ref_grad).max())
    if kind == "batch":
        n = x.size // 16
        np.testing.assert_allclose(layer.running_mean.numpy(), 0.1 * x64.mean((0, 2, 3)), atol=1e-7 + 1e-5 * offset)
        np.testing.assert_allclose(layer.running_var.numpy(), 0.9 + 0.1 * x64.var((0, 2, 3)) * n / (n - 1),
                                   rtol=1e-5)


def test_more_layout_has_up_4_at_half_channels():
    from models.networks import build_networks
    opt = tiny_train_opt(*SMALL, "--crop_size", "256", "--num_upsampling_layers", "apf_more")
    g = build_networks(opt, with_discriminator=False)["G"]
    sd = g.state_dict()
    assert "up_4.conv_0.weight_orig" in sd and "up_5.conv_0.weight_orig" not in sd
    assert tuple(sd["conv_img.weight"].shape) == (3, opt.ngf // 2, 3, 3)


@pytest.mark.parametrize("size", [(128, 96), (256, 192)])
def test_discriminator_shapes(size):
    from models.networks import build_networks, one_hot
    w, h = size
    opt = tiny_train_opt(*SMALL, "--crop_size", str(w), "--num_upsampling_layers", "normal")
    d = build_networks(opt, with_discriminator=True)["D"]
    out = d(one_hot(_label(2, h, w), 29), jt.randn(2, 3, h, w))
    assert len(out) == opt.num_D
    for k, scale in enumerate(out):
        assert len(scale) == opt.n_layers_D + 1
        # every scale halves the input; the patch map is roughly input/4 + padding growth
        sh, sw = -(-h // 2 ** k), -(-w // 2 ** k)
        pred = scale[-1].numpy()
        assert pred.shape[:2] == (2, 1)
        assert abs(pred.shape[2] - sh / 4) <= 4 and abs(pred.shape[3] - sw / 4) <= 4


def test_image_encoder_and_kld():
    from models.encoder import ImageEncoder, kld_loss
    opt = tiny_train_opt(*SMALL, "--use_vae", "--z_dim", "16")
    mu, logvar = ImageEncoder(opt)(jt.randn(2, 3, 96, 128))
    assert mu.shape == (2, 16) and logvar.shape == (2, 16)
    m = np.array([[0.5, -1.0], [0.0, 2.0]], np.float32)
    lv = np.array([[0.0, 0.3], [-0.2, 0.1]], np.float32)
    expected = -0.5 * np.sum(1 + lv - m ** 2 - np.exp(lv))
    assert abs(kld_loss(jt.array(m), jt.array(lv)).item() - expected) < 1e-5


def test_hinge_loss_values():
    from models.loss import gan_loss
    pred = [[jt.array(np.array([[-2.0, 0.5, 3.0]], np.float32))]]
    # D real: mean(relu(1 - x)); D fake: mean(relu(1 + x)); G: -mean(x)
    assert abs(gan_loss(pred, True, True).item() - np.mean([3.0, 0.5, 0.0])) < 1e-6
    assert abs(gan_loss(pred, False, True).item() - np.mean([0.0, 1.5, 4.0])) < 1e-6
    assert abs(gan_loss(pred, True, False).item() + np.mean([-2.0, 0.5, 3.0])) < 1e-6


def test_learning_rate_schedule():
    from models.trainer import learning_rates
    opt = tiny_train_opt("--niter", "2", "--niter_decay", "4", "--lr", "0.0002")
    table = {1: 2e-4, 2: 2e-4, 3: 2e-4, 4: 1.5e-4, 5: 1e-4, 6: 0.5e-4}
    for epoch, lr in table.items():
        g, d = learning_rates(opt, epoch)
        assert g == pytest.approx(lr / 2) and d == pytest.approx(lr * 2)
    opt.no_TTUR = True
    assert learning_rates(opt, 5) == (pytest.approx(1e-4), pytest.approx(1e-4))


def test_vgg_weights_loaded_from_torchvision_format(tmp_path):
    """A file in torchvision's .pth layout (written without PyTorch) is read and mapped by name."""
    from models.vgg import CONV_CHANNELS, VGG19Features
    from torch_format import save_torch_state_dict
    rng = np.random.RandomState(0)
    state = {}
    for idx, (cin, cout) in CONV_CHANNELS.items():
        state[f"features.{idx}.weight"] = (rng.randn(cout, cin, 3, 3) * 0.05).astype(np.float32)
        state[f"features.{idx}.bias"] = (rng.randn(cout) * 0.05).astype(np.float32)
    state["classifier.0.weight"] = np.zeros((4, 4), np.float32)  # ignored part of the file
    path = str(tmp_path / "vgg19-dcbb9e9d.pth")
    save_torch_state_dict(path, state)
    net = VGG19Features.from_file(path)
    np.testing.assert_array_equal(net.features[28].weight.numpy(), state["features.28.weight"])
    np.testing.assert_array_equal(net.features[0].bias.numpy(), state["features.0.bias"])
    feats = net(jt.rand(1, 3, 32, 32) * 2 - 1)
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512]


def test_missing_vgg_weights_message(tmp_path):
    from models.vgg import VGG19Features
    from util.core.errors import WeightsFileError
    path = str(tmp_path / "nowhere" / "vgg19-dcbb9e9d.pth")
    with pytest.raises(WeightsFileError) as err:
        VGG19Features.from_file(path)
    assert path in str(err.value) and "--no_vgg_loss" in str(err.value) and "--vgg_weights" in str(err.value)
