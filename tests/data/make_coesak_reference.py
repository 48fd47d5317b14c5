"""Run wqliu657/Jittor-COESAK-Landscape's own code (ECGAN's generator, its style encoder and discriminator, one
training iteration, its Sobel edge targets and its test.py with the colour transfer) on small generated
networks and store what it computes, for tests/test_coesak_parity.py.

Not run by the test suite (it needs a checkout of COESAK's repository). It runs in this project's own
environment (Jittor 1.3.11) but imports nothing of this project: only COESAK's packages, from the checkout
given on the command line (none of its code is copied here), with stand-ins for what its imports need and the
networks never call (``dill`` as ``pickle``; ``dominate``, which draws its HTML pages), and Jittor's ``vgg19``
made without a download (generated weights):

    git clone https://github.com/wqliu657/Jittor-COESAK-Landscape /tmp/coesak
    .venv/bin/python tests/data/make_coesak_reference.py --coesak_repo /tmp/coesak

COESAK's own option defaults (netG spade with ECGAN's head, its 'more' layout, use_vae always on, z_dim 256,
norm_G spectralspadesyncbatch3x3, norm_E and norm_D spectralinstance, hinge loss, lambda_feat 10, lambda_vgg 10,
lambda_kld 0.05, Adam betas 0 / 0.9, TTUR), smaller: 29 classes, 256x192, ngf 8, ndf 8, num_D 2, n_layers_D 3.
Every tensor starts at ``reference_nets.generated_tensor`` of its name (gain 1: COESAK's spectral norm does
nothing, so its weights act raw).

It writes ``coesak_reference.npz`` next to itself:

``g/...``, ``e/...``: the generator and style encoder, the generator calibrated (20 train-mode passes without
gradient for the batch-norm statistics, eval mode, the last convolutions of the edge, the image branch and the
semantic-preserving head scaled, in that order, to output standard deviations of about 0.4). ``label``
[192, 256] and ``photo`` (``reference_nets.photos(SEED, 1, ...)``): ``mu``, ``logvar`` = E(photo) and the
eval forward G(one-hot, z=mu): ``image`` (the image branch), ``image2`` (the semantic-preserving output that
COESAK's test.py saves), ``edge`` (3 channels).

``d/...``: the discriminator (generated weights) on the label map with a photo and with a Sobel edge image
(3 channels in [-1, 1], as COESAK's data loader gives it): predictions whole, other features fingerprinted.

``train/...``: one ``Pix2PixTrainer`` iteration (G step, then D step) from generated weights, batch 2, the
reparameterisation's noise fed ``reference_nets.noise`` (both steps draw the same), edge maps
``training_edges``: losses, gradients and the states after the step (small tensors whole, large ones as
fingerprints), with VGG19 on generated weights.

``sobel/...``: the edge PNGs COESAK's ``edge_extract`` (the function in its train.py, taken from the checkout
and run) writes for ``SOBEL_PHOTOS`` uint8 photos ``reference_nets.photo_bytes`` saved as PNG.

``testpy/...``: COESAK's test.py run as a user runs it, on G and E saved with its own ``save_network`` in a
checkpoints folder, one label map and one reference photo, with the style code's noise at zero (z = mu): the
arrays it converts (``generated``: its uint8 image of image2; ``reference_converted``: of the reference photo,
``reference_nets.photo_bytes(reference_seed, ...)``) and the BGR array it writes after its whole-image LAB
transfer (``written``; its JPEG is not stored).
"""

import argparse
import ast
import contextlib
import io
import json
import os
import pickle
import runpy
import sys
import tempfile
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(HERE, "coesak_reference.npz")
sys.path.insert(0, HERE)
import reference_nets as nets  # noqa: E402  (NumPy only)
from runner_helpers import (commit_of, features_out, fingerprinted, gradients, load_generated,  # noqa: E402
                            state_numpy, use_generated_vgg19)

SEED = 31
HEIGHT, WIDTH = 192, 256
OPTIONS = ["--label_nc", "29", "--crop_size", "256", "--load_size", "256", "--ngf", "8", "--gpu_ids", "-1",
           "--nThreads", "0"]
TRAIN_OPTIONS = [*OPTIONS, "--ndf", "8", "--num_D", "2", "--n_layers_D", "3", "--batchSize", "2"]
OUTPUT_STD = 0.4
VGG_GAIN = float(np.sqrt(2.0))  # keeps random ReLU features from fading out over 16 layers
# Last convolution of each output, scaled in this order (the semantic-preserving head reads the other two).
CALIBRATED = (("edge", "conv_edge4"), ("image", "conv_img4"), ("image2", "conv_comb"))
SOBEL_PHOTOS = ((2, 96, 128),)  # (count, height, width)


def import_coesak(repo):
    """COESAK's packages importable on a CPU without downloads."""
    os.environ["nvcc_path"] = ""  # CPU: hide nvcc from Jittor's CUDA probe
    os.environ.setdefault("log_silent", "1")
    sys.modules["dill"] = pickle
    dominate = types.ModuleType("dominate")
    dominate.tags = types.ModuleType("dominate.tags")
    sys.modules.update({"dominate": dominate, "dominate.tags": dominate.tags})
    sys.path.insert(0, repo)
    use_generated_vgg19(SEED, VGG_GAIN)


def coesak_options(kind, argv):
    """COESAK's parsed options (its option classes print them: silenced)."""
    if kind == "test":
        from options.test_options import TestOptions as Options
    else:
        from options.train_options import TrainOptions as Options
    saved, sys.argv = sys.argv, ["coesak", *argv]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return Options().parse()
    finally:
        sys.argv = saved


def quietly(build, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return build(*args)


def one_hot(opt, label):
    """COESAK's own one-hot label map (Pix2PixModel.preprocess_input) of int labels [N, H, W]."""
    from models.pix2pix_model import Pix2PixModel
    import jittor as jt
    holder = types.SimpleNamespace(opt=opt, FloatTensor=jt.float32)  # what preprocess_input reads of self
    n, h, w = label.shape
    semantics, label_map, _, _ = Pix2PixModel.preprocess_input(holder, {
        "label": jt.array(label[:, None].astype(np.float32)), "image": jt.zeros((n, 3, h, w)),
        "edge": jt.zeros((n, 3, h, w)), "instance": 0})
    return semantics, label_map


def sobel_function(repo):
    """``edge_extract`` as COESAK's train.py defines it (the module itself trains when imported: only the
    function, with the imports it uses, is taken from the file and run)."""
    source = open(os.path.join(repo, "train.py"), encoding="utf-8").read()
    tree = ast.parse(source)
    wanted = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "edge_extract"]
    imports = [node for node in tree.body if isinstance(node, ast.Import)
               and all(alias.name in ("os", "cv2") for alias in node.names)]
    assert len(wanted) == 1, "COESAK's train.py has no (or several) edge_extract"
    namespace = {}
    exec(compile(ast.Module(body=imports + wanted, type_ignores=[]), "train.py", "exec"), namespace)
    return namespace["edge_extract"]


def sobel_case(repo, workdir):
    from PIL import Image
    edge_extract = sobel_function(repo)
    out = {}
    for count, h, w in SOBEL_PHOTOS:
        folder = os.path.join(workdir, f"sobel_{h}x{w}")
        os.makedirs(os.path.join(folder, "imgs_new"))
        photos = nets.photo_bytes(SEED, count, h, w)
        for i, photo in enumerate(photos):
            Image.fromarray(photo).save(os.path.join(folder, "imgs_new", f"p{i}.png"))
        with contextlib.redirect_stdout(io.StringIO()):
            edge_extract(folder)
        edges = np.stack([np.asarray(Image.open(os.path.join(folder, "edges", f"p{i}.png")))
                          for i in range(count)])
        out[f"sobel/{h}x{w}"] = edges
        print(f"Sobel edges of {count} photos {w}x{h}: mean {edges.mean():.1f}, max {edges.max()}")
    return out


def calibrated_generator(opt, seg, label_map, photo, g_seed, e_seed):
    """(G, E) on generated weights, batch-norm statistics from 20 train-mode passes, then eval mode with the
    output convolutions of CALIBRATED scaled to an output std of OUTPUT_STD."""
    import jittor as jt
    import models.networks as networks
    net_g, net_e = quietly(networks.define_G, opt), quietly(networks.define_E, opt)
    load_generated(net_g, g_seed)
    load_generated(net_e, e_seed)

    def forward():
        mu, _ = net_e(photo)
        return dict(zip(("image", "image2", "edge"), net_g(seg, label_map, z=mu)))
    net_g.train()
    net_e.train()
    with jt.no_grad():
        for _ in range(20):
            forward()["image2"].sync()
    net_g.eval()
    net_e.eval()
    with jt.no_grad():
        for output, layer in CALIBRATED:
            conv = getattr(net_g, layer)
            for _ in range(6):
                factor = OUTPUT_STD / float(forward()[output].numpy().std())
                conv.weight.assign(conv.weight * factor)
                conv.bias.assign(conv.bias * factor)
    return net_g, net_e


def generator_case(opt):
    import jittor as jt
    g_seed, e_seed = f"{SEED}:G", f"{SEED}:E"
    label = nets.label_map(SEED, 1, HEIGHT, WIDTH, 29)
    photo = nets.photos(SEED, 1, HEIGHT, WIDTH)
    seg, label_map = one_hot(opt, label)
    net_g, net_e = calibrated_generator(opt, seg, label_map, jt.array(photo), g_seed, e_seed)
    with jt.no_grad():
        mu, logvar = net_e(jt.array(photo))
        image, image2, edge = net_g(seg, label_map, z=mu)
    out = {"g_seed": np.array(g_seed), "e_seed": np.array(e_seed), "label": label[0].astype(np.int16),
           "mu": mu.numpy(), "logvar": logvar.numpy(), "image": image.numpy(), "image2": image2.numpy(),
           "edge": edge.numpy()}
    g_stored, g_shapes = nets.split_state(state_numpy(net_g), g_seed)
    e_stored, e_shapes = nets.split_state(state_numpy(net_e), e_seed)
    out.update(nets.pack("g/state", g_stored, g_shapes))
    out.update(nets.pack("e/state", e_stored, e_shapes))
    print(f"COESAK generator + style encoder: std image {out['image'].std():.3f}, image2 {out['image2'].std():.3f}, "
          f"edge {out['edge'].std():.3f}; mu std {out['mu'].std():.3f}; {len(g_stored)} of {len(g_shapes)} "
          f"generator tensors stored")
    return out, net_g, net_e


def training_edges(n, h, w):
    """The edge maps of the training iteration: any [N, H, W] uint8 maps (the photos' channel means)."""
    return nets.photo_bytes(SEED, n, h, w).mean(axis=3).astype(np.uint8)


def edge_images(edges):
    """COESAK's data loader's edge input: the single-channel edge PNG read as RGB, in [-1, 1] ([N, 3, H, W])."""
    x = edges.astype(np.float32) / 255.0 * 2 - 1
    return np.repeat(x[:, None], 3, axis=1)


def discriminator_case(opt, sobel):
    import jittor as jt
    import models.networks as networks
    d_seed = f"{SEED}:D"
    net_d = quietly(networks.define_D, opt)
    load_generated(net_d, d_seed)
    label = nets.label_map(SEED, 2, 96, 128, 29)
    seg, _ = one_hot(opt, label)
    out = {"d/seed": np.array(d_seed), "d/shapes": np.array(json.dumps(
        {k: list(v.shape) for k, v in net_d.state_dict().items()}))}
    inputs = {"photo": nets.photos(SEED, 2, 96, 128), "edge": edge_images(sobel["sobel/96x128"])}
    with jt.no_grad():
        for name, image in inputs.items():
            pred = net_d(jt.concat([seg, jt.array(image)], dim=1))
            out.update(features_out(f"d/{name}", pred))
    print(f"COESAK discriminator: {len(pred)} sub-discriminators of {len(pred[0])} features")
    return out


def training_case(opt):
    """One G step and one D step of COESAK's Pix2PixTrainer from generated weights."""
    import jittor as jt
    from trainers.pix2pix_trainer import Pix2PixTrainer
    trainer = quietly(Pix2PixTrainer, opt)
    model = trainer.pix2pix_model
    seeds = {net: f"{SEED}:train:{net}" for net in ("G", "E", "D")}
    for net, seed in seeds.items():
        load_generated(getattr(model, "net" + net), seed)
    n, h, w = 2, HEIGHT, WIDTH
    label = nets.label_map(SEED, n, h, w, 29)
    image = nets.photos(SEED, n, h, w)
    edge = edge_images(training_edges(n, h, w))
    batch = {"label": jt.array(label[:, None].astype(np.float32)), "image": jt.array(image),
             "edge": jt.array(edge), "instance": 0}
    out = {"train/label": label.astype(np.int16), "train/lr": np.array(opt.lr)}
    for net, seed in seeds.items():
        out[f"train/{net}/seed"] = np.array(seed)
        out[f"train/{net}/shapes"] = np.array(json.dumps(
            {k: list(v.shape) for k, v in getattr(model, "net" + net).state_dict().items()}))
    trainer.run_generator_one_step(batch)
    g_grads = {"G": gradients(trainer.optimizer_G, model.netG), "E": gradients(trainer.optimizer_G, model.netE)}
    trainer.run_discriminator_one_step(batch)
    losses = {k: float(v.mean().numpy().reshape(-1)[0]) for k, v in trainer.get_latest_losses().items()}
    print("training iteration, losses: " + ", ".join(f"{k} {v:.6f}" for k, v in sorted(losses.items())))
    out["train/loss_names"] = np.array(sorted(losses))
    out["train/losses"] = np.array([losses[k] for k in sorted(losses)])
    grads = {**g_grads, "D": gradients(trainer.optimizer_D, model.netD)}
    for net in seeds:
        out.update(fingerprinted(f"train/{net}/grad", grads[net]))
        out.update(fingerprinted(f"train/{net}/after", state_numpy(getattr(model, "net" + net))))
    return out


class CpuFlags:
    """Jittor's flags, except that switching CUDA on is ignored."""

    def __init__(self, flags):
        object.__setattr__(self, "_flags", flags)

    def __getattr__(self, name):
        return getattr(self._flags, name)

    def __setattr__(self, name, value):
        if name != "use_cuda":
            setattr(self._flags, name, value)


def test_py_case(repo, workdir, net_g, net_e):
    """COESAK's test.py on one label map and one reference photo, with G and E saved by its save_network."""
    import cv2
    import jittor as jt
    from PIL import Image
    import data
    import util.util as coesak_util
    from models.pix2pix_model import Pix2PixModel
    name, checkpoints = "coesak", os.path.join(workdir, "checkpoints")
    os.makedirs(os.path.join(checkpoints, name))
    saving = types.SimpleNamespace(checkpoints_dir=checkpoints, name=name)
    coesak_util.save_network(net_g, "G", "latest", saving)
    coesak_util.save_network(net_e, "E", "latest", saving)
    from data.base_dataset import get_params, get_transform
    label = nets.label_map(SEED, 1, HEIGHT, WIDTH, 29)
    reference = nets.photo_bytes(f"{SEED}:reference", 1, HEIGHT, WIDTH)[0]  # regenerated by the tests
    label_dir = os.path.join(workdir, "labels")
    os.makedirs(label_dir)
    Image.fromarray(label[0].astype(np.uint8)).save(os.path.join(label_dir, "scene.png"))
    argv = ["test.py", *OPTIONS, "--input_path", label_dir, "--img_path", workdir, "--checkpoints_dir", checkpoints,
            "--name", name, "--output_path", os.path.join(workdir, "out"), "--batchSize", "1"]
    # the reference photo as its loader gives it (its transform; only its label loading needs an older Jittor)
    opt = coesak_options("test", argv[1:])
    photo = Image.fromarray(reference)
    image = get_transform(opt, get_params(opt, photo.size))(photo)
    batch = {"label": jt.array(label[:, None].astype(np.float32)), "image": jt.array(np.asarray(image)[None]),
             "edge": jt.zeros((1, 3, HEIGHT, WIDTH)), "instance": 0, "path": [os.path.join(label_dir, "scene.png")]}
    converted, written = [], []
    real_tensor2im = coesak_util.tensor2im

    def recording_tensor2im(*args, **kwargs):
        converted.append(real_tensor2im(*args, **kwargs))
        return converted[-1]
    patches = [(data, "create_dataloader", lambda opt: [batch]),
               (coesak_util, "tensor2im", recording_tensor2im),
               (cv2, "imwrite", lambda path, array: written.append(array.copy()) or True),
               (Pix2PixModel, "reparameterize", lambda self, mu, logvar: mu),  # z = mu
               (jt, "flags", CpuFlags(jt.flags))]  # test.py switches CUDA on
    saved = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in patches]
    saved_argv = sys.argv
    try:
        for owner, attr, value in patches:
            setattr(owner, attr, value)
        sys.argv = argv
        with contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(os.path.join(repo, "test.py"), run_name="__main__")
    finally:
        sys.argv = saved_argv
        for owner, attr, value in saved:
            setattr(owner, attr, value)
    assert len(converted) == 3 and len(written) == 1, (len(converted), len(written))
    generated, converted_reference = converted[1], converted[2]  # its order: image, image2, the reference photo
    print(f"COESAK test.py: wrote a {written[0].shape} image, mean {written[0].mean():.1f} (generated "
          f"{generated.mean():.1f}, reference {converted_reference.mean():.1f})")
    return {"testpy/label": label[0].astype(np.int16), "testpy/reference_seed": np.array(f"{SEED}:reference"),
            "testpy/generated": generated, "testpy/reference_converted": converted_reference,
            "testpy/written": written[0]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coesak_repo", required=True,
                        help="a checkout of https://github.com/wqliu657/Jittor-COESAK-Landscape")
    parser.add_argument("--commit", help="its commit, when the checkout is not a git repository")
    parser.add_argument("--out", default=OUTPUT, help="the .npz to write (default: %(default)s)")
    args = parser.parse_args(argv)
    repo = os.path.abspath(args.coesak_repo)
    commit = commit_of(repo, args.commit)
    workdir = tempfile.mkdtemp()
    import_coesak(repo)
    import jittor as jt
    jt.randn_like = lambda x, **kwargs: jt.array(nets.noise(tuple(x.shape)))
    opt = coesak_options("train", [*TRAIN_OPTIONS, "--input_path", workdir, "--checkpoints_dir", workdir])
    out = {"commit": np.array(commit), "jittor": np.array(jt.__version__),
           "options": np.array(" ".join(TRAIN_OPTIONS))}
    out.update(sobel_case(repo, workdir))
    generated, net_g, net_e = generator_case(opt)
    out.update(generated)
    out.update(discriminator_case(opt, out))
    out.update(test_py_case(repo, os.path.join(workdir, "testpy"), net_g, net_e))
    out.update(training_case(opt))
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 2 ** 20:.2f} MiB), Jittor-COESAK-Landscape {commit[:7]}")


if __name__ == "__main__":
    main()
