"""Importing the released SPADE (PyTorch) and APF-GAN (Jittor) generator checkpoints
(util/import_ckpt.py, models/source_checkpoints.py).

For each configuration of the reference manifests (SPADE ade20k, cityscapes,
coco; APF-GAN G + E) a file with random tensors of exactly the manifest's names
and shapes is written in the source format (SPADE: a PyTorch zip made without
PyTorch, tests/torch_format.py; APF-GAN: a Jittor pickle of NumPy arrays), is
imported through the real script, and then:
  * every imported tensor equals its source tensor under the documented mapping;
  * the inferred options are the configuration's;
  * eval-mode layers of the imported generator (start, head_0 with seg noise,
    an up block with a learned shortcut, the output convolution; the APF mask
    encoder) match a float64 NumPy computation from the *source* tensors, with
    source names and APF's seg-noise bias unfolded;
  * for tiny SPADE-like and APF-like generators the whole eval-mode forward
    matches the NumPy computation (with the same seg noise, fed by patching
    jt.randn);
  * the ade20k import generates through test_phase.py at 256x256, and a tiny
    imported model fine-tunes with train_phase.py --continue_train
    --which_epoch imported;
  * bad files and wrong formats stop with a clear message and write nothing.
"""

import json
import os
import shutil

import jittor as jt
import numpy as np
import pytest
from PIL import Image

from conftest import reference_manifest, run_script, tiny_train_opt
from test_spade_parity import (np_batch_norm_eval, np_conv2d, np_instance_norm, np_l2n, np_leaky_relu, np_nearest,
                               np_one_hot, np_power_step)
from torch_format import save_torch_state_dict

TOL = 1e-4

CONFIGS = {  # configuration -> options the import must infer
    "ade20k": dict(label_nc=151, label_edges=False, dontcare_255=True, crop_size=256, aspect_ratio=1.0, num_upsampling_layers="normal",
                   use_seg_noise=False, encode_mask=False),
    "cityscapes": dict(label_nc=35, label_edges=True, dontcare_255=False, crop_size=512, aspect_ratio=2.0,
                       num_upsampling_layers="spade_more", use_seg_noise=False, encode_mask=False),
    "coco": dict(label_nc=183, label_edges=True, dontcare_255=True, crop_size=256, aspect_ratio=1.0, num_upsampling_layers="normal",
                 use_seg_noise=False, encode_mask=False),
    "apf": dict(label_nc=29, label_edges=False, dontcare_255=False, crop_size=512, aspect_ratio=4 / 3, num_upsampling_layers="apf_more",
                use_seg_noise=True, encode_mask=True),
}


# ----------------------------------------------------------------------------
# source files
# ----------------------------------------------------------------------------

def random_state(shapes, seed):
    """Random tensors of the given {name: shape}: spectral u/v one power step from the weight (as a trained
    checkpoint holds them), positive BN variances, int64 counters."""
    rng = np.random.RandomState(seed)
    state = {}
    for name, shape in sorted(shapes.items()):
        shape = tuple(shape)
        if name.endswith("num_batches_tracked"):
            state[name] = np.array(rng.randint(1, 10 ** 6), np.int64).reshape(shape)
        elif name.endswith("running_var"):
            state[name] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        elif name.endswith("running_mean"):
            state[name] = rng.normal(0.0, 0.5, shape).astype(np.float32)
        elif ".seg_noise_var." in name:
            state[name] = rng.normal(0.0, 0.3, shape).astype(np.float32)
        elif name.endswith(("weight", "weight_orig")):
            fan_in = int(np.prod(shape[1:]))
            state[name] = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape).astype(np.float32)
        elif name.endswith("bias"):
            state[name] = rng.normal(0.0, 0.1, shape).astype(np.float32)
    for name in [k for k in shapes if k.endswith("weight_orig")]:
        prefix = name[:-len("weight_orig")]
        w = state[name].astype(np.float64)
        u, v = np_power_step(w.reshape(w.shape[0], -1), np_l2n(rng.normal(size=w.shape[0])))
        state[prefix + "weight_u"] = u.astype(np.float32)
        state[prefix + "weight_v"] = v.astype(np.float32)
    assert set(state) == set(shapes)
    return state


def save_apf(path, state):
    jt.save({k: np.asarray(v) for k, v in state.items()}, path)


def expected_mapping(source, fmt, net="G"):
    """The documented mapping, written independently of models/source_checkpoints.py."""
    out = {}
    for key, value in source.items():
        if key.endswith("num_batches_tracked") or (net == "E" and key.startswith(("fc_mu.", "fc_var."))):
            continue
        if fmt == "apf" and key.endswith("seg_noise_var.bias"):
            continue
        if fmt == "apf" and key.endswith(("weight_u", "weight_v")):
            continue  # APF-GAN's spectral norm never normalised: the raw weight_orig is the weight
        if fmt == "apf" and key.endswith("weight_orig"):
            key = key[:-len("_orig")]
        if fmt == "apf" and key.endswith("seg_noise_var.weight"):
            bias = source[key.replace(".weight", ".bias")].astype(np.float64)
            value = (value.astype(np.float64) + bias[:, None, None, None]).astype(np.float32)
        out[key.replace("out_conv_img.", "conv_img.")] = value
    return out


def import_ckpt(fmt, files, name, ckpt_dir, *extra):
    return run_script("util/import_ckpt.py", "--format", fmt, *files, "--name", name, "--checkpoints_dir",
                      ckpt_dir, *extra)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """{config: (source {net: state}, experiment folder, import stdout)}, imported once per module."""
    root = tmp_path_factory.mktemp("import")
    src_dir, ckpt_dir = root / "src", str(root / "checkpoints")
    src_dir.mkdir()
    out = {}
    spade = reference_manifest("spade_pytorch.json")
    for i, config in enumerate(("ade20k", "cityscapes", "coco")):
        source = random_state(spade[config], seed=100 + i)
        path = str(src_dir / f"{config}_latest_net_G.pth")
        save_torch_state_dict(path, source)
        result = import_ckpt("spade", [path], config, ckpt_dir)
        assert result.returncode == 0, result.stderr[-3000:]
        os.remove(path)  # ~400 MB each; the tests compare with ``source``
        out[config] = ({"G": source}, os.path.join(ckpt_dir, config), result.stdout)
    apf = reference_manifest("apf_gan_jittor.json")
    sources = {"G": random_state(apf["G"], seed=200), "E": random_state(apf["E"], seed=201)}
    paths = [str(src_dir / f"avg_273_299_net_{n}.pkl") for n in ("G", "E")]
    for net, path in zip(("G", "E"), paths):
        save_apf(path, sources[net])
    result = import_ckpt("apf", paths, "apf", ckpt_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    for path in paths:
        os.remove(path)
    out["apf"] = (sources, os.path.join(ckpt_dir, "apf"), result.stdout)
    yield out
    shutil.rmtree(str(root), ignore_errors=True)  # ~2 GB of full-size checkpoints


# ----------------------------------------------------------------------------
# NumPy float64 eval-mode reference on the source tensors
# ----------------------------------------------------------------------------

def up2(x):
    return x.repeat(2, axis=2).repeat(2, axis=3)


def np_label_edges(label):
    """[N, H, W] -> [N, 1, H, W]: 1 where a 4-neighbour has another class."""
    t = label
    e = np.zeros(t.shape, bool)
    e[:, :, 1:] |= t[:, :, 1:] != t[:, :, :-1]
    e[:, :, :-1] |= t[:, :, 1:] != t[:, :, :-1]
    e[:, 1:, :] |= t[:, 1:, :] != t[:, :-1, :]
    e[:, :-1, :] |= t[:, 1:, :] != t[:, :-1, :]
    return e[:, None].astype(np.float64)


class SourceRef:
    """Eval-mode forward from source tensors (source names): spectral layers divide by u.(W v) with the stored
    vectors (SPADE) or use the raw weight_orig (``raw_spectral``: APF-GAN, whose spectral norm never
    normalised), batch norm uses the running statistics, seg noise uses the given draws (consumed in order)."""

    def __init__(self, params, noise=(), raw_spectral=False):
        self.p = {k: np.asarray(v, np.float64) for k, v in params.items()}
        self.noise = list(noise)
        self.raw_spectral = raw_spectral

    def conv(self, name, x, pad, stride=1):
        p = self.p
        if name + ".weight_orig" in p:
            w = p[name + ".weight_orig"]
            if not self.raw_spectral:
                w = w / (p[name + ".weight_u"] @ (w.reshape(w.shape[0], -1) @ p[name + ".weight_v"]))
        else:
            w = p[name + ".weight"]
        return np_conv2d(x, w, p.get(name + ".bias"), stride=stride, pad=pad)

    def spade(self, name, x, seg):
        p = self.p
        if seg.shape[2:] != x.shape[2:]:
            seg = np_nearest(seg, x.shape[2:])
        if name + ".seg_noise_var.weight" in p:
            x = x + self.noise.pop(0) * self.conv(name + ".seg_noise_var", seg, pad=0)
        if name + ".param_free_norm.running_mean" in p:
            normalized = np_batch_norm_eval(x, p[name + ".param_free_norm.running_mean"],
                                            p[name + ".param_free_norm.running_var"])
        else:
            normalized = np_instance_norm(x)
        pad = p[name + ".mlp_shared.0.weight"].shape[2] // 2
        actv = np.maximum(self.conv(name + ".mlp_shared.0", seg, pad), 0)
        return normalized * (1 + self.conv(name + ".mlp_gamma", actv, pad)) + self.conv(name + ".mlp_beta", actv, pad)

    def block(self, name, x, seg):
        learned = any(k.startswith(name + ".conv_s.") for k in self.p)
        x_s = self.conv(name + ".conv_s", self.spade(name + ".norm_s", x, seg), 0) if learned else x
        dx = self.conv(name + ".conv_0", np_leaky_relu(self.spade(name + ".norm_0", x, seg)), 1)
        dx = self.conv(name + ".conv_1", np_leaky_relu(self.spade(name + ".norm_1", dx, seg)), 1)
        return x_s + dx

    def image(self, x):
        head = "out_conv_img" if "out_conv_img.weight" in self.p else "conv_img"
        return np.tanh(self.conv(head, np_leaky_relu(x), 1))

    def mask_encoder(self, seg):
        x, i = seg, 1
        while f"layer{i}.0.weight_orig" in self.p:
            x = np_instance_norm(self.conv(f"layer{i}.0", x if i == 1 else np_leaky_relu(x), pad=1, stride=2))
            i += 1
        return np_leaky_relu(x)

    def generator(self, seg, start_hw, encoder=None):
        x = encoder.mask_encoder(seg) if encoder is not None else self.conv("fc", np_nearest(seg, start_hw), 1)
        x = self.block("head_0", x, seg)
        x = self.block("G_middle_1", self.block("G_middle_0", up2(x), seg), seg)
        i = 0
        while f"up_{i}.conv_0.weight_orig" in self.p:
            x = self.block(f"up_{i}", up2(x), seg)
            i += 1
        return self.image(x)


def recording_randn(monkeypatch, seed):
    """Make jt.randn return float32 N(0, 1) draws from ``seed`` and record them (float64), in call order."""
    rng = np.random.RandomState(seed)
    drawn = []

    def fake_randn(*shape, **kwargs):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        arr = rng.normal(size=tuple(int(s) for s in shape)).astype(np.float32)
        drawn.append(arr.astype(np.float64))
        return jt.array(arr)

    monkeypatch.setattr(jt, "randn", fake_randn)
    return drawn


def saved_options(folder):
    with open(os.path.join(folder, "opt.json")) as f:
        return json.load(f)


def load_imported(folder, tag="imported"):
    """The imported networks built from the experiment's opt.json, in eval mode."""
    from models.networks import build_networks, load_state
    from options.base_options import ARCHITECTURE_KEYS
    from util.core.checkpoint import read_net
    saved = saved_options(folder)
    opt = tiny_train_opt()
    for key in ARCHITECTURE_KEYS:
        setattr(opt, key, saved[key])
    nets = build_networks(opt, with_discriminator=False)
    for name, net in nets.items():
        load_state(net, read_net(folder, tag, name), name)
        net.eval()
    return opt, nets


def random_seg(opt, n, h, w, seed):
    from models.networks import semantic_input
    label = np.random.RandomState(seed).randint(0, opt.label_nc, (n, h, w))
    seg = semantic_input(jt.array(label.astype(np.int32)), opt)
    ref = np_one_hot(label, opt.label_nc)
    if opt.label_edges:
        ref = np.concatenate([ref, np_label_edges(label)], axis=1)
    np.testing.assert_array_equal(seg.numpy(), ref)
    return seg, ref


def assert_close(ours, ref, what):
    assert ours.shape == ref.shape, (what, ours.shape, ref.shape)
    err = float(np.abs(ours - ref).max())
    assert err < TOL * max(1.0, float(np.abs(ref).max())), f"{what}: max abs error {err}"


# ----------------------------------------------------------------------------
# the four released configurations
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("config", list(CONFIGS))
def test_every_tensor_lands_and_options_are_inferred(imported, config):
    from util.core.checkpoint import read_net, read_file
    sources, folder, stdout = imported[config]
    fmt = "apf" if config == "apf" else "spade"
    for net, source in sources.items():
        ours = read_net(folder, "imported", net)
        expected = expected_mapping(source, fmt, net)
        assert sorted(ours) == sorted(expected), net
        for key, value in expected.items():
            assert ours[key].dtype == np.float32, key
            np.testing.assert_array_equal(ours[key], value, err_msg=f"{net} {key}")
    assert sorted(n for n in ("G", "E") if os.path.exists(os.path.join(folder, f"imported_net_{n}.pkl"))) == \
        sorted(sources)
    saved = saved_options(folder)
    for key, value in CONFIGS[config].items():
        assert saved[key] == pytest.approx(value) if isinstance(value, float) else saved[key] == value, key
    assert saved["ngf"] == 64 and saved["spade_hidden"] == 128 and saved["use_vae"] is False
    assert saved["norm_G"] == ("spadesyncbatch3x3" if fmt == "apf" else "spectralspadesyncbatch3x3")
    assert read_file(os.path.join(folder, "imported_state.pkl"))["imported"] == fmt
    assert "inferred options:" in stdout and f"--label_nc {CONFIGS[config]['label_nc']}" in stdout
    if fmt == "spade":
        assert "dropped 18 batch-norm counters" in stdout
    else:
        assert "folded the bias of 21 seg-noise convolutions" in stdout and "fc_mu.weight" in stdout


@pytest.mark.parametrize("config", ["ade20k", "cityscapes", "coco"])
def test_spade_layers_match_numpy(imported, config):
    from models.generator import start_size
    sources, folder, _ = imported[config]
    opt, nets = load_imported(folder)
    g, ref = nets["G"], SourceRef(sources["G"])
    sh, sw = start_size(opt)
    n = 6 if config == "cityscapes" else 5  # SPADE's Cityscapes layout ('more') upsamples once more
    assert (sh * 2 ** n, sw * 2 ** n) == (opt.crop_size / opt.aspect_ratio, opt.crop_size)
    seg, seg_np = random_seg(opt, 1, 2 * sh, 2 * sw, seed=1)  # SPADE layers resize the label map themselves
    with jt.no_grad():
        start = g.start_features(seg).numpy()
        assert_close(start, ref.conv("fc", np_nearest(seg_np, (sh, sw)), 1), f"{config} fc")
        head = g.head_0(jt.array(start), seg).numpy()
        assert_close(head, ref.block("head_0", start.astype(np.float64), seg_np), f"{config} head_0")
        x = np.random.RandomState(2).normal(0, 1, (1, 2 * opt.ngf, 6, 5)).astype(np.float32)
        assert_close(g.up_3(jt.array(x), seg).numpy(), ref.block("up_3", x.astype(np.float64), seg_np),
                     f"{config} up_3")
        y = np.random.RandomState(3).normal(0, 1, (1, opt.ngf, 6, 5)).astype(np.float32)
        assert_close(g.to_rgb(0, jt.array(y)).numpy(), ref.image(y.astype(np.float64)), f"{config} conv_img")


def test_apf_layers_match_numpy_with_the_same_noise(imported, monkeypatch):
    from models.generator import start_size
    sources, folder, _ = imported["apf"]
    opt, nets = load_imported(folder)
    assert opt.use_seg_noise and opt.encode_mask
    g, e = nets["G"], nets["E"]
    g_ref, e_ref = SourceRef(sources["G"], raw_spectral=True), SourceRef(sources["E"], raw_spectral=True)
    seg, seg_np = random_seg(opt, 1, 192, 256, seed=4)  # 6 stride-2 layers: 3x4 at the end
    with jt.no_grad():
        start = e(seg).numpy()
        assert_close(start, e_ref.mask_encoder(seg_np), "APF mask encoder")
        assert start.shape == (1, 16 * opt.ngf, 3, 4)
        assert start_size(opt) == (6, 8)  # the 512x384 native size
        drawn = recording_randn(monkeypatch, seed=5)
        head = g.head_0(jt.array(start), seg).numpy()
        assert len(drawn) == 2  # norm_0 and norm_1 (no learned shortcut)
        g_ref.noise = list(drawn)
        assert_close(head, g_ref.block("head_0", start.astype(np.float64), seg_np), "APF head_0 with seg noise")
        drawn.clear()
        x = np.random.RandomState(6).normal(0, 1, (1, opt.ngf, 6, 5)).astype(np.float32)
        out = g.up_4(jt.array(x), seg).numpy()
        assert len(drawn) == 3
        g_ref.noise = list(drawn)
        assert_close(out, g_ref.block("up_4", x.astype(np.float64), seg_np), "APF up_4 with seg noise")
        y = np.random.RandomState(7).normal(0, 1, (1, opt.ngf // 2, 6, 5)).astype(np.float32)
        assert_close(g.to_rgb(0, jt.array(y)).numpy(), g_ref.image(y.astype(np.float64)), "APF out_conv_img")


def test_ade20k_import_generates_at_native_resolution(imported, tmp_path):
    _, folder, _ = imported["ade20k"]
    labels = tmp_path / "labels"
    labels.mkdir()
    rng = np.random.RandomState(8)
    label = np.zeros((256, 256), np.uint8)
    for k in range(6):  # blocky label map with ADE20K ids
        label[:, k * 43:(k + 1) * 43] = rng.randint(0, 151)
    label[200:] = 255  # unlabelled: read as the dont-care class 150, as SPADE does
    Image.fromarray(label).save(labels / "scene.png")
    out = tmp_path / "out"
    result = run_script("test_phase.py", "--input_path", str(labels), "--output_path", str(out),
                        "--name", os.path.basename(folder), "--checkpoints_dir", os.path.dirname(folder),
                        "--which_epoch", "imported", "--image_format", "png", "--nThreads", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    image = np.asarray(Image.open(out / "scene.png"))
    assert image.shape == (256, 256, 3) and image.std() > 0


# ----------------------------------------------------------------------------
# tiny models: whole forward, fine-tuning
# ----------------------------------------------------------------------------

def tiny_source(fmt, tmp_path, seed, *flags):
    """A tiny generator (+ encoder) state dict in the source layout, written in the source format.

    Built from this framework's own network at tiny size, renamed to the source's names: SPADE gets
    num_batches_tracked counters, APF-GAN its out_conv_img name, a seg-noise bias and the encoder's VAE heads.
    """
    from models.networks import build_networks
    opt = tiny_train_opt(*flags)
    nets = build_networks(opt, False)
    shapes = {}
    for key, var in nets["G"].state_dict().items():
        if fmt == "apf":
            key = key.replace("conv_img.", "out_conv_img.")
        shapes[key] = tuple(var.shape)
        if key.endswith("running_mean") and fmt == "spade":
            shapes[key.replace("running_mean", "num_batches_tracked")] = ()
        if key.endswith("seg_noise_var.weight"):
            shapes[key.replace("weight", "bias")] = (var.shape[0],)
    source = {"G": random_state(shapes, seed)}
    if "E" in nets:
        e_shapes = {k: tuple(v.shape) for k, v in nets["E"].state_dict().items()}
        e_shapes.update({"fc_mu.weight": (16, 32), "fc_mu.bias": (16,), "fc_var.weight": (16, 32),
                         "fc_var.bias": (16,)})
        source["E"] = random_state(e_shapes, seed + 1)
    paths = []
    for name, state in source.items():
        path = str(tmp_path / (f"tiny_{fmt}_net_{name}.pkl" if fmt == "apf" else "latest_net_G.pth"))
        save_apf(path, state) if fmt == "apf" else save_torch_state_dict(path, state)
        paths.append(path)
    return source, paths


def test_tiny_spade_whole_forward_matches_numpy(tmp_path):
    from models.generator import start_size
    source, paths = tiny_source("spade", tmp_path, 20, "--label_nc", "6", "--crop_size", "64",
                                "--aspect_ratio", "2", "--norm_G", "spectralspadebatch3x3")
    ckpt = str(tmp_path / "ckpt")
    result = import_ckpt("spade", paths, "tiny", ckpt, "--crop_size", "64", "--aspect_ratio", "2",
                         "--label_edges", "yes")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "not one of SPADE's released configurations" in result.stdout
    opt, nets = load_imported(os.path.join(ckpt, "tiny"))
    assert (opt.label_nc, opt.label_edges, opt.ngf, image_h(opt)) == (5, True, 8, 32)
    seg, seg_np = random_seg(opt, 2, 32, 64, seed=21)
    with jt.no_grad():
        out = nets["G"](seg).numpy()
    assert_close(out, SourceRef(source["G"]).generator(seg_np, start_size(opt)), "tiny SPADE forward")


def image_h(opt):
    from models.layout import image_height
    return image_height(opt)


def test_tiny_apf_whole_forward_matches_numpy_with_the_same_noise(tmp_path, monkeypatch):
    source, paths = tiny_source("apf", tmp_path, 30, "--label_nc", "7", "--crop_size", "128", "--aspect_ratio", "1",
                                "--encode_mask", "--use_seg_noise", "--num_upsampling_layers", "apf_more")
    ckpt = str(tmp_path / "ckpt")
    result = import_ckpt("apf", paths, "tiny", ckpt, "--crop_size", "128", "--aspect_ratio", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    opt, nets = load_imported(os.path.join(ckpt, "tiny"))
    assert (opt.label_nc, opt.num_upsampling_layers, opt.encode_mask, opt.use_seg_noise) == (7, "apf_more", True, True)
    seg, seg_np = random_seg(opt, 2, 128, 128, seed=31)
    drawn = recording_randn(monkeypatch, seed=32)
    with jt.no_grad():
        out = nets["G"](seg, mask_features=nets["E"](seg)).numpy()
    assert len(drawn) == 3 * 2 + 3 * 5  # head_0, G_middle_0/1: 2 SPADE layers each; up_0..up_4: 3 each
    ref = SourceRef(source["G"], drawn, raw_spectral=True).generator(
        seg_np, None, encoder=SourceRef(source["E"], raw_spectral=True))
    assert_close(out, ref, "tiny APF forward")
    # the noise matters: without it the output differs
    assert np.abs(SourceRef(source["G"], [0 * d for d in drawn], raw_spectral=True).generator(
        seg_np, None, encoder=SourceRef(source["E"], raw_spectral=True)) - ref).max() > 1e-3


@pytest.mark.parametrize("fmt,flags,import_flags", [
    ("apf", ["--label_nc", "29", "--encode_mask", "--use_seg_noise"], []),
    ("spade", ["--label_nc", "30"], ["--label_edges", "yes"]),  # 29 classes + the edge channel
])
def test_imported_model_fine_tunes_with_continue_train(tiny_dataset, tmp_path, fmt, flags, import_flags):
    _, paths = tiny_source(fmt, tmp_path, 40, *flags)
    ckpt = str(tmp_path / "ckpt")
    result = import_ckpt(fmt, paths, "tuned", ckpt, "--crop_size", "128", "--aspect_ratio", "1.3333",
                         "--ndf", "8", "--num_D", "2", "--n_layers_D", "3", *import_flags)
    assert result.returncode == 0, result.stderr[-3000:]
    assert saved_options(os.path.join(ckpt, "tuned"))["label_nc"] == 29
    result = run_script("train_phase.py", "--input_path", os.path.join(tiny_dataset, "train"), "--name", "tuned",
                        "--checkpoints_dir", ckpt, "--continue_train", "--which_epoch", "imported", "--niter", "1",
                        "--batchSize", "4", "--max_dataset_size", "4", "--no_vgg_loss", "--lambda_l1", "1",
                        "--nThreads", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"fine-tuning the {fmt} networks imported" in result.stdout
    assert "D: " in result.stdout  # the discriminator starts fresh, and says so
    from util.core.checkpoint import read_net
    folder = os.path.join(ckpt, "tuned")
    before, after = read_net(folder, "imported", "G"), read_net(folder, "1", "G")
    assert sorted(before) == sorted(after)
    conv_weights = [k for k in before if k.endswith(("conv_0.weight", "conv_0.weight_orig"))]
    assert conv_weights and max(float(np.abs(after[k] - before[k]).max()) for k in conv_weights) > 0
    assert os.path.exists(os.path.join(folder, "1_net_D.pkl"))
    assert os.path.exists(os.path.join(folder, "1_net_E.pkl")) == (fmt == "apf")
    if fmt == "spade":  # the discriminator sees the edge channel too: 29 + 1 + 3 input channels
        assert read_net(folder, "1", "D")["discriminator_0.model0.0.weight"].shape[1] == 33


def test_dontcare_255_reads_unlabelled_as_the_last_class(tmp_path):
    from data.image_io import read_label
    from util.core.errors import LabelMapError
    path = str(tmp_path / "coco.png")
    Image.fromarray(np.array([[0, 181, 255]], np.uint8)).save(path)
    np.testing.assert_array_equal(read_label(path, 183, dontcare_255=True), [[0, 181, 182]])
    with pytest.raises(LabelMapError, match="255"):
        read_label(path, 183)


def test_style_projection_gives_the_aspect_ratio():
    from models.source_checkpoints import infer_architecture
    ngf, z = 4, 16
    state = {"head_0.norm_0.mlp_shared.0.weight": np.zeros((8, 10, 3, 3), np.float32),
             "head_0.conv_0.weight": np.zeros((16 * ngf, 16 * ngf, 3, 3), np.float32),
             "fc.weight": np.zeros((16 * ngf * 3 * 4, z), np.float32)}  # a 3x4 start
    state.update({f"up_{i}.conv_0.weight": np.zeros((1,), np.float32) for i in range(4)})
    options, _, notes = infer_architecture(state, "spade", "src", crop_size=128)
    assert options["use_vae"] and options["z_dim"] == z and not options["encode_mask"]
    assert options["aspect_ratio"] == pytest.approx(128 / 96) and "aspect ratio" in " ".join(notes)


# ----------------------------------------------------------------------------
# bad inputs
# ----------------------------------------------------------------------------

def expect_error(result, *fragments):
    assert result.returncode == 2, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    message = " ".join(result.stderr.split())  # messages are wrapped at 100 columns
    for fragment in fragments:
        assert fragment in message, (fragment, result.stderr[-3000:])


@pytest.fixture(scope="module")
def tiny_spade_file(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tinyspade")
    source, paths = tiny_source("spade", tmp, 50)
    return source["G"], paths[0], tmp


def test_non_checkpoint_and_truncated_files(tiny_spade_file, tmp_path):
    source, good, _ = tiny_spade_file
    ckpt = str(tmp_path / "ckpt")
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    expect_error(import_ckpt("spade", [str(text)], "x", ckpt), str(text), "not a PyTorch zip checkpoint")
    expect_error(import_ckpt("apf", [str(text), str(text)], "x", ckpt), "not a readable Jittor checkpoint")
    data = open(good, "rb").read()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[:len(data) // 2])
    expect_error(import_ckpt("spade", [str(cut)], "x", ckpt), str(cut), "truncated or damaged")
    apf = tmp_path / "apf.pkl"
    save_apf(str(apf), source)
    apf_data = open(apf, "rb").read()
    cut_apf = tmp_path / "cut_net_G.pkl"
    cut_apf.write_bytes(apf_data[:len(apf_data) - 100])
    expect_error(import_ckpt("apf", [str(cut_apf)], "x", ckpt), str(cut_apf), "truncated or damaged")
    expect_error(import_ckpt("spade", [str(tmp_path / "absent.pth")], "x", ckpt), "not found")
    assert not os.path.exists(os.path.join(ckpt, "x"))


def test_wrong_format(tiny_spade_file, tmp_path):
    source, good, _ = tiny_spade_file
    ckpt = str(tmp_path / "ckpt")
    expect_error(import_ckpt("apf", [good], "x", ckpt), "use --format spade")
    apf = tmp_path / "apf_net_G.pkl"
    save_apf(str(apf), source)
    expect_error(import_ckpt("spade", [str(apf)], "x", ckpt), "Jittor pickle: use --format apf")
    result = import_ckpt("tensorflow", [good], "x", ckpt)
    assert result.returncode == 2 and "invalid choice" in result.stderr
    assert not os.path.exists(os.path.join(ckpt, "x"))


def test_different_architecture_lists_the_names(tiny_spade_file, tmp_path):
    source, _, _ = tiny_spade_file
    ckpt = str(tmp_path / "ckpt")
    cases = {
        "missing": ({k: v for k, v in source.items() if k != "up_1.norm_0.mlp_gamma.bias"},
                    ["model parameters not filled", "up_1.norm_0.mlp_gamma.bias"]),
        "extra": (dict(source, **{"up_9.extra.weight": np.zeros((3, 3), np.float32)}),
                  ["source tensors not used", "up_9.extra.weight"]),
        "shape": (dict(source, **{"G_middle_0.norm_1.mlp_beta.bias": np.zeros((5,), np.float32)}),
                  ["shapes that differ", "G_middle_0.norm_1.mlp_beta.bias (5,) vs (128,)"]),
    }
    for case, (state, fragments) in cases.items():
        path = str(tmp_path / f"{case}.pth")
        save_torch_state_dict(path, state)
        expect_error(import_ckpt("spade", [path], case, ckpt), path, "nothing was written", *fragments)
        assert not os.path.exists(os.path.join(ckpt, case, "imported_net_G.pkl")), case
    # a generator that starts from a mask encoder needs the encoder file
    no_fc = {k: v for k, v in source.items() if not k.startswith("fc.")}
    path = str(tmp_path / "no_fc.pth")
    save_torch_state_dict(path, no_fc)
    expect_error(import_ckpt("spade", [path], "no_fc", ckpt), "give the encoder file too")
