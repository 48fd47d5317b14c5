"""Parity of the SPADE layers against an independent NumPy (float64) reference,
and of the generator's parameter names/shapes against the reference manifests.

The reference below is written from the SPADE paper / PyTorch semantics, not
from the project code: cross-correlation conv2d with zero padding, nearest
resize with src = floor(dst * in / out), batch norm (biased variance over
N, H, W; eps 1e-5; running statistics in eval mode), instance norm (per sample
and channel over H, W; eps 1e-5), leaky ReLU 0.2 and spectral normalisation
(sigma = u . (W_mat v), W_mat = weight_orig reshaped [out, -1]; in training
mode one power-iteration step v = n(W^T u), u = n(W v) first).
"""

import jittor as jt
import numpy as np
import pytest

from conftest import reference_manifest, tiny_train_opt
from models.architecture import SPADEResnetBlock
from models.networks import build_networks, one_hot
from models.normalization import SPADE, avg_pool_exclude_pad, resize_label

TOL = 1e-4


# ----------------------------------------------------------------------------
# NumPy float64 reference
# ----------------------------------------------------------------------------

def np_conv2d(x, w, b=None, stride=1, pad=0):
    """Cross-correlation as in PyTorch/Jittor: x [N, C, H, W], w [O, C, kh, kw]."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    n, c, h, wd = x.shape
    o, c2, kh, kw = w.shape
    assert c == c2
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho = (h + 2 * pad - kh) // stride + 1
    wo = (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, o, ho, wo))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    if b is not None:
        out += np.asarray(b, np.float64).reshape(1, -1, 1, 1)
    return out


def np_nearest(x, size):
    """Nearest resize, src index = floor(dst * in / out) (integer arithmetic, no rounding issue)."""
    h, w = x.shape[2:]
    oh, ow = size
    ih = (np.arange(oh) * h) // oh
    iw = (np.arange(ow) * w) // ow
    return x[:, :, ih][:, :, :, iw]


def np_batch_norm_train(x, eps=1e-5):
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)  # biased
    return (x - mean) / np.sqrt(var + eps)


def np_batch_norm_eval(x, running_mean, running_var, eps=1e-5):
    return (x - running_mean.reshape(1, -1, 1, 1)) / np.sqrt(running_var.reshape(1, -1, 1, 1) + eps)


def np_instance_norm(x, eps=1e-5):
    mean = x.mean(axis=(2, 3), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(2, 3), keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


def np_leaky_relu(x, slope=0.2):
    return np.where(x > 0, x, slope * x)


def np_l2n(x, eps=1e-12):
    return x / (np.linalg.norm(x) + eps)


def np_power_step(w_mat, u):
    v = np_l2n(w_mat.T @ u)
    u = np_l2n(w_mat @ v)
    return u, v


def np_one_hot(label, nc):
    return (label[:, None, :, :] == np.arange(nc).reshape(1, nc, 1, 1)).astype(np.float64)


class Ref:
    """Evaluates SPADE / SPADEResnetBlock from a float64 copy of a state dict.

    ``train``: batch norm uses batch statistics and every spectral conv first
    runs one power-iteration step from the stored (u, v); the new vectors are
    recorded in ``self.new_uv`` so the test can check the layer stored the same.
    ``eval``: batch norm uses the running statistics, spectral convs the stored
    (u, v) unchanged.
    """

    def __init__(self, params, train):
        self.p = params
        self.train = train
        self.new_uv = {}

    def conv(self, prefix, x, pad):
        p = self.p
        if prefix + "weight_orig" in p:
            w = p[prefix + "weight_orig"]
            w_mat = w.reshape(w.shape[0], -1)
            u, v = p[prefix + "weight_u"], p[prefix + "weight_v"]
            if self.train:
                u, v = np_power_step(w_mat, u)
                self.new_uv[prefix] = (u, v)
            sigma = u @ (w_mat @ v)
            w = w / sigma
        else:
            w = p[prefix + "weight"]
        return np_conv2d(x, w, p.get(prefix + "bias"), pad=pad)

    def spade(self, prefix, x, seg, kind, kernel=3):
        p = self.p
        if kind == "batch":
            if self.train:
                normalized = np_batch_norm_train(x)
            else:
                normalized = np_batch_norm_eval(x, p[prefix + "param_free_norm.running_mean"],
                                                p[prefix + "param_free_norm.running_var"])
        else:
            normalized = np_instance_norm(x)
        if seg.shape[2:] != x.shape[2:]:
            seg = np_nearest(seg, x.shape[2:])
        pad = kernel // 2
        actv = np.maximum(np_conv2d(seg, p[prefix + "mlp_shared.0.weight"], p[prefix + "mlp_shared.0.bias"], pad=pad), 0)
        gamma = np_conv2d(actv, p[prefix + "mlp_gamma.weight"], p[prefix + "mlp_gamma.bias"], pad=pad)
        beta = np_conv2d(actv, p[prefix + "mlp_beta.weight"], p[prefix + "mlp_beta.bias"], pad=pad)
        return normalized * (1 + gamma) + beta

    def block(self, x, seg, kind, learned_shortcut):
        if learned_shortcut:
            x_s = self.conv("conv_s.", self.spade("norm_s.", x, seg, kind), pad=0)
        else:
            x_s = x
        dx = self.conv("conv_0.", np_leaky_relu(self.spade("norm_0.", x, seg, kind)), pad=1)
        dx = self.conv("conv_1.", np_leaky_relu(self.spade("norm_1.", dx, seg, kind)), pad=1)
        return x_s + dx


def randomize(module, rng):
    """Give every entry of the state dict a fresh random value (also running stats and u, v)
    so that nothing the reference reads is a default, and return a float64 copy."""
    for name, var in module.state_dict().items():
        shape = tuple(var.shape)
        if name.endswith("running_mean"):
            value = rng.normal(0.0, 0.5, shape)
        elif name.endswith("running_var"):
            value = rng.uniform(0.5, 2.0, shape)
        elif name.endswith(("weight_u", "weight_v")):
            value = np_l2n(rng.normal(size=shape))
        elif name.endswith(("weight", "weight_orig")):
            fan_in = int(np.prod(shape[1:]))
            value = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
        elif name.endswith("bias"):
            value = rng.normal(0.0, 0.1, shape)
        else:
            raise AssertionError(f"unexpected state entry {name}")
        var.assign(jt.array(value.astype(np.float32)))
    # Spectral layers: start (u, v) one power step away from a random u, as a checkpoint
    # would hold them. Fully random vectors can make sigma = u.(W v) arbitrarily close to 0
    # (W / sigma then blows up and float32 round-off dominates any comparison).
    state = module.state_dict()
    for name in [k for k in state if k.endswith("weight_orig")]:
        prefix = name[:-len("weight_orig")]
        w = state[name].numpy().astype(np.float64)
        u, v = np_power_step(w.reshape(w.shape[0], -1), np_l2n(rng.normal(size=w.shape[0])))
        state[prefix + "weight_u"].assign(jt.array(u.astype(np.float32)))
        state[prefix + "weight_v"].assign(jt.array(v.astype(np.float32)))
    return state64(module)


def state64(module):
    return {k: v.numpy().astype(np.float64) for k, v in module.state_dict().items()}


def random_one_hot(rng, n, nc, h, w):
    label = rng.randint(0, nc, (n, h, w))
    seg = one_hot(jt.array(label.astype(np.int32)), nc)
    seg_np = seg.numpy()
    np.testing.assert_array_equal(seg_np, np_one_hot(label, nc))
    return seg, seg_np.astype(np.float64)


# ----------------------------------------------------------------------------
# 0. the reference itself (so a wrong reference cannot hide behind the parity tests)
# ----------------------------------------------------------------------------

def test_reference_conv_against_direct_sum():
    rng = np.random.RandomState(1)
    x = rng.normal(size=(1, 2, 5, 4))
    w = rng.normal(size=(3, 2, 3, 3))
    out = np_conv2d(x, w, pad=1, stride=2)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    assert out.shape == (1, 3, 3, 2)
    for o in range(3):
        for i in range(3):
            for j in range(2):
                expect = (xp[0, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3] * w[o]).sum()
                assert abs(out[0, o, i, j] - expect) < 1e-12


# ----------------------------------------------------------------------------
# 1. one SPADE layer, label map at a lower resolution than x
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["batch", "instance"])
def test_spade_layer_matches_numpy(kind):
    rng = np.random.RandomState(10)
    layer = SPADE(kind, 3, 4, 5, nhidden=8)
    layer.train()
    params = randomize(layer, rng)
    x_np = rng.normal(0.3, 1.5, (2, 4, 8, 12))
    seg, seg_np = random_one_hot(rng, 2, 5, 5, 7)  # 5x7 -> 8x12: non-integer upsampling
    out = layer(jt.array(x_np.astype(np.float32)), seg).numpy()
    ref = Ref(params, train=True).spade("", x_np.astype(np.float32).astype(np.float64), seg_np, kind)
    assert out.shape == ref.shape == (2, 4, 8, 12)
    err = np.abs(out - ref).max()
    assert err < TOL, f"SPADE({kind}) max abs error {err}"
    # the label map really modulates the output (the test would notice a SPADE that ignored it)
    plain = np_batch_norm_train(x_np) if kind == "batch" else np_instance_norm(x_np)
    assert np.abs(ref - plain).max() > 0.1


# ----------------------------------------------------------------------------
# 2. full SPADEResnetBlock, with and without the learned shortcut
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("fin,fout", [(8, 4), (4, 4)])
@pytest.mark.parametrize("norm_G", ["spectralspadebatch3x3", "spadeinstance3x3"])
def test_resnet_block_matches_numpy(norm_G, fin, fout, mode):
    """Both modes are compared, each against its own semantics:

    * ``train``: batch norm uses batch statistics; every SNConv2d first runs one
      power-iteration step from the (u, v) it holds *before* the forward. The
      reference computes that step itself from the pre-forward vectors, and the
      test also checks the layer stored exactly those new vectors afterwards.
    * ``eval``: batch norm uses the (randomised) running statistics; SNConv2d
      uses the stored (u, v) unchanged (checked too).
    """
    rng = np.random.RandomState(20 + fin)
    block = SPADEResnetBlock(fin, fout, norm_G, 5, spade_hidden=8)
    assert block.learned_shortcut == (fin != fout)
    params = randomize(block, rng)
    getattr(block, mode)()
    x_np = rng.normal(0.2, 1.0, (2, fin, 8, 6)).astype(np.float32).astype(np.float64)
    seg, seg_np = random_one_hot(rng, 2, 5, 13, 11)  # 13x11 -> 8x6: non-integer downsampling
    out = block(jt.array(x_np.astype(np.float32)), seg).numpy()

    kind = "batch" if "batch" in norm_G else "instance"
    ref_model = Ref(params, train=(mode == "train"))
    ref = ref_model.block(x_np, seg_np, kind, fin != fout)
    assert out.shape == ref.shape == (2, fout, 8, 6)
    err = np.abs(out - ref).max()
    assert err < TOL, f"{norm_G} {fin}->{fout} {mode}: max abs error {err}"

    after = state64(block)
    spectral_convs = [k[:-len("weight_orig")] for k in params if k.endswith("weight_orig")]
    assert bool(spectral_convs) == norm_G.startswith("spectral")
    for prefix in spectral_convs:
        if mode == "train":
            u_ref, v_ref = ref_model.new_uv[prefix]
            np.testing.assert_allclose(after[prefix + "weight_u"], u_ref, atol=1e-5, err_msg=prefix)
            np.testing.assert_allclose(after[prefix + "weight_v"], v_ref, atol=1e-5, err_msg=prefix)
            assert np.abs(after[prefix + "weight_u"] - params[prefix + "weight_u"]).max() > 1e-3
        else:
            np.testing.assert_array_equal(after[prefix + "weight_u"], params[prefix + "weight_u"])
            np.testing.assert_array_equal(after[prefix + "weight_v"], params[prefix + "weight_v"])


# ----------------------------------------------------------------------------
# 3. nearest label resize
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("src,dst", [((5, 7), (8, 12)), ((3, 3), (9, 9)), ((16, 12), (8, 6)),
                                     ((13, 11), (8, 6)), ((96, 128), (3, 4)), ((7, 5), (21, 15))])
def test_nearest_resize_keeps_one_hot_and_index_rule(src, dst):
    rng = np.random.RandomState(3)
    nc = 6
    label = rng.randint(0, nc, (2,) + src)
    seg_np = np_one_hot(label, nc)
    out = resize_label(jt.array(seg_np.astype(np.float32)), dst).numpy()
    assert out.shape == (2, nc) + dst
    assert set(np.unique(out).tolist()) <= {0.0, 1.0}
    np.testing.assert_array_equal(out.sum(axis=1), 1.0)
    np.testing.assert_array_equal(out, np_nearest(seg_np, dst))
    # the index rule itself, on a map whose values encode their position
    pos = np.arange(src[0] * src[1], dtype=np.float32).reshape(1, 1, *src)
    got = resize_label(jt.array(pos), dst).numpy()[0, 0]
    rows = (np.arange(dst[0]) * src[0]) // dst[0]
    cols = (np.arange(dst[1]) * src[1]) // dst[1]
    np.testing.assert_array_equal(got, rows[:, None] * src[1] + cols[None, :])


# ----------------------------------------------------------------------------
# 4. average pooling that excludes the padding
# ----------------------------------------------------------------------------

def np_avg_pool_exclude_pad(x, k=3, s=2, p=1):
    n, c, h, w = x.shape
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            r0, r1 = max(i * s - p, 0), min(i * s - p + k, h)
            c0, c1 = max(j * s - p, 0), min(j * s - p + k, w)
            out[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return out


@pytest.mark.parametrize("shape", [(2, 3, 8, 6), (1, 2, 7, 5), (1, 2, 9, 4), (1, 1, 5, 11), (1, 1, 3, 5),
                                   (1, 1, 1, 2)])
def test_avg_pool_exclude_pad(shape):
    rng = np.random.RandomState(4)
    x = rng.uniform(0.5, 2.0, shape)  # positive: a padded (zero) element would lower the mean
    out = avg_pool_exclude_pad(jt.array(x.astype(np.float32))).numpy()
    ref = np_avg_pool_exclude_pad(x.astype(np.float32).astype(np.float64))
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() < 1e-5
    # the reference differs from a count_include_pad average at the border, so this can fail
    include_pad = np_conv2d(x.reshape(-1, 1, *shape[2:]), np.full((1, 1, 3, 3), 1 / 9), stride=2, pad=1)
    assert np.abs(include_pad.reshape(ref.shape) - ref).max() > 0.05


# ----------------------------------------------------------------------------
# 5. parameter names and shapes
# ----------------------------------------------------------------------------

def shapes(net):
    return {k: tuple(int(s) for s in v.shape) for k, v in net.state_dict().items()}


def test_generator_parameter_names_follow_spade():
    g = shapes(build_networks(tiny_train_opt(), False)["G"])  # ngf 8, default fc start
    for name in ["head_0.norm_0.mlp_shared.0.weight", "up_0.conv_s.weight_orig", "conv_img.weight", "fc.weight",
                 "head_0.conv_0.weight_u", "head_0.conv_0.weight_v", "head_0.conv_0.weight_orig",
                 "head_0.norm_0.param_free_norm.running_mean", "head_0.norm_0.param_free_norm.running_var",
                 "head_0.norm_0.mlp_gamma.weight", "head_0.norm_0.mlp_beta.bias",
                 "G_middle_1.norm_1.mlp_shared.0.bias", "up_3.norm_s.mlp_shared.0.weight"]:
        assert name in g, name
    assert g["head_0.conv_0.weight_v"] == (16 * 8 * 9,)


def test_apf_generator_and_mask_encoder_match_manifest():
    manifest = reference_manifest("apf_gan_jittor.json")
    opt = tiny_train_opt("--ngf", "64", "--label_nc", "29", "--num_upsampling_layers", "apf_more",
                         "--crop_size", "512", "--aspect_ratio", str(4 / 3), "--spade_hidden", "128",
                         "--encode_mask")
    nets = build_networks(opt, False)

    # --- G: the explicit differences between this model and the APF-GAN checkpoint ---
    ref_g = {k: tuple(v) for k, v in manifest["G"].items()}
    seg_noise = {k for k in ref_g if ".seg_noise_var." in k}   # a later feature, not built yet
    renamed = {"out_conv_img.weight": "conv_img.weight", "out_conv_img.bias": "conv_img.bias"}
    assert len(seg_noise) == 42 and set(renamed) <= set(ref_g)
    expected = {renamed.get(k, k): v for k, v in ref_g.items() if k not in seg_noise}
    ours = shapes(nets["G"])
    assert not any(k.startswith("fc.") for k in ours)  # APF starts from the mask encoder
    assert sorted(set(ours) - set(expected)) == [] and sorted(set(expected) - set(ours)) == []
    assert {k: v for k, v in ours.items() if expected[k] != v} == {}
    # every seg_noise_var conv belongs to a SPADE layer that we do have
    for k in seg_noise:
        assert k.split("seg_noise_var.")[0] + "mlp_shared.0.weight" in ours, k

    # --- E: everything but the VAE heads, which the mask path does not use ---
    ref_e = {k: tuple(v) for k, v in manifest["E"].items()}
    unused_heads = {"fc_mu.weight", "fc_mu.bias", "fc_var.weight", "fc_var.bias"}
    assert unused_heads <= set(ref_e)
    expected_e = {k: v for k, v in ref_e.items() if k not in unused_heads}
    assert shapes(nets["E"]) == expected_e


def test_ade20k_generator_matches_official_spade_manifest():
    manifest = reference_manifest("spade_pytorch.json")
    opt = tiny_train_opt("--ngf", "64", "--label_nc", "151", "--num_upsampling_layers", "normal",
                         "--crop_size", "256", "--aspect_ratio", "1", "--spade_hidden", "128",
                         "--norm_G", "spectralspadesyncbatch3x3")
    ours = shapes(build_networks(opt, False)["G"])
    expected = {k: tuple(v) for k, v in manifest["ade20k"].items() if not k.endswith("num_batches_tracked")}
    assert sorted(set(ours) ^ set(expected)) == []
    assert {k: (v, expected[k]) for k, v in ours.items() if expected[k] != v} == {}
