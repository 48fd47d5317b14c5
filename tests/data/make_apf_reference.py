"""Run zcablii/APF-GAN-jittor's own code on a small random generator + mask encoder and store what it
computes, for tests/test_reference_parity.py.

Not run by the test suite (it needs an APF-GAN-jittor checkout). It runs in
this project's own environment (Jittor 1.3.11) but imports nothing of this
project: only APF-GAN's packages, from the checkout given on the command line
(none of its code is copied here), with two stand-ins its imports need and
that the networks never call (``torchvision``, ``dill``):

    git clone https://github.com/zcablii/APF-GAN-jittor /tmp/apf
    .venv/bin/python tests/data/make_apf_reference.py --apf_repo /tmp/apf

The configuration is the winning run's (``checkpoints/label2img/opt.txt``:
29 classes, mask-encoder start, seg noise, spectralspadesyncbatch3x3 G,
spectralinstance E, APF's 'more' layout) at ngf 16 and 256x192. Every tensor
starts at ``reference_nets.generated_tensor`` of its name (gain 1: APF's
spectral norm does nothing, so its weights act raw); the generator is then
calibrated as for SPADE (20 train-mode passes without gradient for the
batch-norm statistics, eval mode, ``out_conv_img`` scaled to an output std of
about 0.4). Seg noise is fed ``reference_nets.noise(shape)`` (APF draws
``jt.randn(N, 1, H, W)`` in every SPADE layer).

It writes ``apf_reference.npz`` next to itself: ``commit``; ``g/state`` and
``e/state`` (``reference_nets.split_state``), ``seed``, ``label`` [192, 256];
``output`` [1, 3, 192, 256], the eval forward (``netG(one_hot, z=netE(one_hot))``)
with the generated seg-noise amplitudes; ``output_without_noise``, the same
with every seg-noise convolution (weight and bias) at zero.
"""

import argparse
import os
import pickle
import subprocess
import sys
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(HERE, "apf_reference.npz")
sys.path.insert(0, HERE)
import reference_nets as nets  # noqa: E402  (NumPy only)

SEED = 16
OPTIONS = ["--label_nc", "29", "--no_instance", "--crop_size", "256", "--load_size", "256", "--aspect_ratio",
           str(4 / 3), "--ngf", "16", "--num_upsampling_layers", "more", "--norm_G", "spectralspadesyncbatch3x3",
           "--norm_E", "spectralinstance", "--use_vae", "--encode_mask", "--use_seg_noise", "--gpu_ids", "-1"]
HEIGHT, WIDTH = 192, 256
OUTPUT_STD = 0.4


def commit_of(repo, given):
    if given:
        return given
    try:
        return subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        sys.exit(f"{repo} is not a git checkout: give its commit with --commit")


def import_apf(repo, workdir):
    os.environ["nvcc_path"] = ""  # CPU: hide nvcc from Jittor's CUDA probe
    os.environ.setdefault("log_silent", "1")
    sys.modules["torchvision"] = types.ModuleType("torchvision")
    sys.modules["dill"] = pickle
    sys.path.insert(0, repo)
    from options.test_options import TestOptions
    saved, sys.argv = sys.argv, ["apf", *OPTIONS, "--checkpoints_dir", workdir]
    try:
        return TestOptions().parse()
    finally:
        sys.argv = saved


def load_generated(net, seed):
    import jittor as jt
    net.load_state_dict({k: jt.array(nets.generated_tensor(seed, k, v.shape)) for k, v in net.state_dict().items()})


def state_numpy(net):
    return {k: v.numpy().copy() for k, v in net.state_dict().items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apf_repo", required=True, help="a checkout of https://github.com/zcablii/APF-GAN-jittor")
    parser.add_argument("--commit", help="its commit, when the checkout is not a git repository")
    parser.add_argument("--out", default=OUTPUT, help="the .npz to write (default: %(default)s)")
    args = parser.parse_args(argv)
    commit = commit_of(args.apf_repo, args.commit)
    import tempfile
    workdir = tempfile.mkdtemp()
    opt = import_apf(os.path.abspath(args.apf_repo), workdir)
    import jittor as jt
    import models.networks as networks
    from models.pix2pix_model import Pix2PixModel

    jt.randn = lambda *shape, **kwargs: jt.array(nets.noise(shape[0] if len(shape) == 1 else shape))
    net_g, net_e = networks.define_G(opt), networks.define_E(opt)
    g_seed, e_seed = f"{SEED}:G", f"{SEED}:E"
    load_generated(net_g, g_seed)
    load_generated(net_e, e_seed)
    label = nets.label_map(SEED, 1, HEIGHT, WIDTH, 29)[0]
    holder = types.SimpleNamespace(opt=opt)  # preprocess_input reads only self.opt
    semantics, _ = Pix2PixModel.preprocess_input(holder, {
        "label": jt.array(label[None, None].astype(np.float32)), "image": jt.zeros((1, 3, HEIGHT, WIDTH))})

    def forward():
        return net_g(semantics, z=net_e(semantics))
    net_g.train()
    net_e.train()
    with jt.no_grad():
        for _ in range(20):
            forward().sync()
    net_g.eval()
    net_e.eval()
    with jt.no_grad():
        for _ in range(6):
            factor = OUTPUT_STD / float(forward().numpy().std())
            net_g.out_conv_img.weight.assign(net_g.out_conv_img.weight * factor)
            net_g.out_conv_img.bias.assign(net_g.out_conv_img.bias * factor)
        output = forward().numpy()
        g_state, e_state = state_numpy(net_g), state_numpy(net_e)
        for key, var in net_g.state_dict().items():
            if ".seg_noise_var." in key:
                var.assign(jt.zeros(var.shape))
        output_without_noise = forward().numpy()
    g_stored, g_shapes = nets.split_state(g_state, g_seed)
    e_stored, e_shapes = nets.split_state(e_state, e_seed)
    print(f"APF-GAN generator + mask encoder: output std {output.std():.3f} ({output_without_noise.std():.3f} "
          f"without seg noise), {len(g_stored)} of {len(g_shapes)} generator tensors stored")
    out = {"commit": np.array(commit), "jittor": np.array(jt.__version__), "g_seed": np.array(g_seed),
           "e_seed": np.array(e_seed), "label": label.astype(np.int16), "output": output,
           "output_without_noise": output_without_noise,
           **nets.pack("g/state", g_stored, g_shapes), **nets.pack("e/state", e_stored, e_shapes)}
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 2 ** 20:.1f} MiB), APF-GAN-jittor {commit[:7]}")


if __name__ == "__main__":
    main()
