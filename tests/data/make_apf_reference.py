"""Run zcablii/APF-GAN-jittor's own code on small random networks (generator + mask encoder, discriminator, one
training iteration) and store what it computes, for tests/test_reference_parity.py.

Not run by the test suite (it needs an APF-GAN-jittor checkout). It runs in
this project's own environment (Jittor 1.3.11) but imports nothing of this
project: only APF-GAN's packages, from the checkout given on the command line
(none of its code is copied here), with two stand-ins its imports need and
that the networks never call (``torchvision``, ``dill``), and Jittor's
``vgg19`` made without a download (generated weights):

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

``d/...``: APF-GAN's discriminator (its MultiscaleDiscriminator with
pg_strategy 1, as the winning run; 3 levels, ndf 16, n_layers_D 3,
pg_niter 12, so 6 epochs per growth) on generated weights, without
gradient, at the epochs of ``D_CASES``: a level trained alone, a fade
(alpha 2/3), after pre-training, and the first epoch of a fade (where APF-GAN
copies sub-discriminator 0 into 1; ``grown_keys`` names what that changed).
Inputs: ``reference_nets.label_map`` and ``photos`` (seed 16, batch 2) at
``size``. Each sub-discriminator's prediction is stored whole, its other
features as ``reference_nets.fingerprint``.

``train/...``, ``pre_level/...``, ``pre_fade/...``, ``finetune/...``: one
``Pix2PixTrainer`` iteration (G step, then D step) at the epochs and with the
options of ``TRAIN_CASES`` (after pre-training; a level trained alone; a
fade; fine-tuning with seg noise and the Inception loss in place of VGG),
DiffAugment off: 29 classes, 256x192, batch 2, ngf 8, ndf 8, 3
discriminator levels, mask encoder, seg noise fed ``reference_nets.noise``,
hinge + feature matching + VGG19 with generated weights on [-1, 1] images
(what APF-GAN's VGG loss computes; its pretrained weights would be a
download) or APF-GAN's Inception loss on Jittor's InceptionV3 with
generated weights (``INCEPTION_SEED``), TTUR Adam. Stored: the starting
seeds and shapes (every tensor generated), the losses, the gradients of the
step and the states after it (small tensors whole, large ones as
fingerprints).

"""

import argparse
import json
import os
import pickle
import sys
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(HERE, "apf_reference.npz")
sys.path.insert(0, HERE)
import reference_nets as nets  # noqa: E402  (NumPy only)
from runner_helpers import (commit_of, features_out, fingerprinted, gradients, load_generated,  # noqa: E402
                            state_numpy, use_generated_vgg19)

SEED = 16
OPTIONS = ["--label_nc", "29", "--no_instance", "--crop_size", "256", "--load_size", "256", "--aspect_ratio",
           str(4 / 3), "--ngf", "16", "--num_upsampling_layers", "more", "--norm_G", "spectralspadesyncbatch3x3",
           "--norm_E", "spectralinstance", "--use_vae", "--encode_mask", "--use_seg_noise", "--gpu_ids", "-1"]
HEIGHT, WIDTH = 192, 256
OUTPUT_STD = 0.4
VGG_GAIN = float(np.sqrt(2.0))  # keeps random ReLU features from fading out over 16 layers
# APF-GAN's discriminator as the winning run configured it (pg_strategy 1, norm_D spectralinstance), smaller.
D_SEED = f"{SEED}:D"
D_OPTIONS = ["--label_nc", "29", "--no_instance", "--crop_size", "128", "--load_size", "128", "--aspect_ratio",
             str(4 / 3), "--ndf", "16", "--num_D", "3", "--n_layers_D", "3", "--norm_D", "spectralinstance",
             "--pg_strategy", "1", "--pg_niter", "12", "--niter", "20", "--name", "d", "--gpu_ids", "-1"]
# case -> (epoch, input height, width). With pg_niter 12 and 3 levels a growth period is 6 epochs: epoch 6
# trains level 1 alone; epoch 5 fades level 1 in (alpha 2/3, inside sub-discriminator 1); epoch 12 is after
# pre-training; epoch 4 is the first of a fade, where APF-GAN copies sub-discriminator 0 into 1 first.
D_CASES = {"level1": (6, 48, 64), "fade": (5, 48, 64), "after": (12, 96, 128), "grow": (4, 48, 64)}
TRAIN_OPTIONS = ["--label_nc", "29", "--no_instance", "--crop_size", "256", "--load_size", "256", "--aspect_ratio",
                 str(4 / 3), "--ngf", "8", "--ndf", "8", "--num_D", "3", "--n_layers_D", "3", "--num_upsampling_layers",
                 "more", "--norm_G", "spectralspadesyncbatch3x3", "--norm_E", "spectralinstance", "--norm_D",
                 "spectralinstance", "--use_vae", "--encode_mask", "--pg_strategy", "1",
                 "--pg_niter", "12", "--niter", "20", "--batchSize", "2", "--gpu_ids", "-1"]
TRAIN_SIZE = (2, 192, 256)  # batch, height, width
# case -> (epoch, extra options). pg_niter 12, 3 levels: 6 epochs per growth. train: after pre-training with
# seg noise and VGG (the iteration of a fine-tuning run without its augmentations and Inception loss);
# pre_level: epoch 6, level 1 (128x96) alone, sub-discriminators 1 and 0; pre_fade: epoch 5, level 1 fading in
# over level 0 at alpha 2/3 (the second epoch of that fade: APF-GAN copies sub-discriminator 0 into 1 during
# the first only); finetune: after pre-training, APF-GAN's fine-tuning losses: seg noise and the Inception loss
# in place of VGG (DiffAugment off).
TRAIN_CASES = {"train": (12, ["--use_seg_noise"]), "pre_level": (6, []), "pre_fade": (5, []),
               "finetune": (12, ["--use_seg_noise", "--inception_loss"])}
INCEPTION_SEED = f"{SEED}:inception"
GENERATED_INCEPTION = {}


def import_apf(repo, workdir):
    """APF-GAN's packages importable on a CPU without downloads; returns its test options for OPTIONS."""
    os.environ["nvcc_path"] = ""  # CPU: hide nvcc from Jittor's CUDA probe
    os.environ.setdefault("log_silent", "1")
    sys.modules["torchvision"] = types.ModuleType("torchvision")
    sys.modules["dill"] = pickle
    sys.path.insert(0, repo)
    use_generated_vgg19(SEED, VGG_GAIN)
    from jittor import models as jittor_models
    real_inception = jittor_models.inception_v3

    def inception_generated(pretrained=False, **kwargs):
        import jittor as jt
        model = real_inception(pretrained=False, **kwargs)
        shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
        model.load_state_dict({k: jt.array(nets.generated_tensor(INCEPTION_SEED, k, v)) for k, v in shapes.items()})
        GENERATED_INCEPTION["shapes"] = shapes  # torchvision's names (APF-GAN's loss renumbers the layers)
        return model
    jittor_models.inception_v3 = inception_generated
    return apf_options("test", OPTIONS, workdir)


def apf_options(kind, argv, workdir):
    if kind == "test":
        from options.test_options import TestOptions as Options
    else:
        from options.train_options import TrainOptions as Options
    saved, sys.argv = sys.argv, ["apf", *argv, "--checkpoints_dir", workdir]
    try:
        return Options().parse()
    finally:
        sys.argv = saved


def one_hot(opt, label):
    """APF-GAN's own one-hot label map (Pix2PixModel.preprocess_input) of int labels [N, H, W]."""
    import jittor as jt
    from models.pix2pix_model import Pix2PixModel
    holder = types.SimpleNamespace(opt=opt)  # preprocess_input reads only self.opt
    n, h, w = label.shape
    semantics, _ = Pix2PixModel.preprocess_input(holder, {
        "label": jt.array(label[:, None].astype(np.float32)), "image": jt.zeros((n, 3, h, w))})
    return semantics


def discriminator_case(workdir):
    """APF-GAN's MultiscaleDiscriminator (pg_strategy 1) at each kind of epoch: D_CASES."""
    import jittor as jt
    import models.networks as networks
    opt = apf_options("train", D_OPTIONS, workdir)
    net_d = networks.define_D(opt)
    load_generated(net_d, D_SEED)
    start = state_numpy(net_d)
    stored, shapes = nets.split_state(start, D_SEED)
    out = {"d/seed": np.array(D_SEED), "d/pg_niter": np.array(opt.pg_niter), "d/num_d": np.array(opt.num_D),
           **nets.pack("d/state", stored, shapes)}
    for name, (epoch, h, w) in D_CASES.items():
        label = nets.label_map(SEED, 2, h, w, 29)
        x = jt.concat([one_hot(opt, label), jt.array(nets.photos(SEED, 2, h, w))], dim=1)
        with jt.no_grad():
            pred = net_d(x if epoch >= opt.pg_niter else [x], epoch)
        out.update(features_out(f"d/{name}", pred))
        out[f"d/{name}/epoch"] = np.array(epoch)
        out[f"d/{name}/size"] = np.array([h, w])
        print(f"discriminator at epoch {epoch} ({name}, {w}x{h}): {len(pred)} sub-discriminators, predictions std "
              + ", ".join(f"{float(p[-1].numpy().std()):.3f}" for p in pred))
    grown = state_numpy(net_d)
    changed = sorted(k for k in grown if not np.array_equal(grown[k], start[k]))
    out["d/grown_keys"] = np.array(changed)
    return out


def training_case(workdir, case):
    """One G step and one D step of APF-GAN's Pix2PixTrainer at the epoch of TRAIN_CASES[case], DiffAugment off,
    from generated weights; stored under ``case``/."""
    import jittor as jt
    from trainers.pix2pix_trainer import Pix2PixTrainer
    epoch, extra = TRAIN_CASES[case]
    opt = apf_options("train", [*TRAIN_OPTIONS, *extra, "--name", case], workdir)
    trainer = Pix2PixTrainer(opt)
    model = trainer.pix2pix_model
    seeds = {net: f"{SEED}:train:{net}" for net in ("G", "E", "D")}
    for net, seed in seeds.items():
        load_generated(getattr(model, "net" + net), seed)
    n, h, w = TRAIN_SIZE
    label = nets.label_map(SEED, n, h, w, 29)
    image = nets.photos(SEED, n, h, w)
    batch = {"label": jt.array(label[:, None].astype(np.float32)), "image": jt.array(image)}
    out = {f"{case}/label": label.astype(np.int16), f"{case}/image": image, f"{case}/epoch": np.array(epoch),
           f"{case}/pg_niter": np.array(opt.pg_niter), f"{case}/options": np.array(" ".join(extra))}
    for net, seed in seeds.items():
        out[f"{case}/{net}/seed"] = np.array(seed)
        out[f"{case}/{net}/shapes"] = np.array(json.dumps(
            {k: list(v.shape) for k, v in getattr(model, "net" + net).state_dict().items()}))
    if opt.inception_loss:
        out[f"{case}/inception/seed"] = np.array(INCEPTION_SEED)
        out[f"{case}/inception/shapes"] = np.array(json.dumps(GENERATED_INCEPTION["shapes"]))
    trainer.run_generator_one_step(batch, epoch)
    g_grads = {"G": gradients(trainer.optimizer_G, model.netG), "E": gradients(trainer.optimizer_G, model.netE)}
    fake = trainer.get_latest_generated().numpy()
    out[f"{case}/fake_shape"] = np.array(fake.shape)
    print(f"training iteration {case} (epoch {epoch}): generated image {fake.shape[3]}x{fake.shape[2]}, std "
          f"{fake.std():.3f}, {np.mean(np.abs(fake) > 0.99):.1%} saturated")
    trainer.run_discriminator_one_step(batch, epoch)
    losses = {k: float(v.mean().numpy().reshape(-1)[0]) for k, v in trainer.get_latest_losses().items()}
    print(f"  losses: " + ", ".join(f"{k} {v:.6f}" for k, v in sorted(losses.items())))
    out[f"{case}/loss_names"] = np.array(sorted(losses))
    out[f"{case}/losses"] = np.array([losses[k] for k in sorted(losses)])
    grads = {**g_grads, "D": gradients(trainer.optimizer_D, model.netD)}
    for net in seeds:
        out.update(fingerprinted(f"{case}/{net}/grad", grads[net]))
        out.update(fingerprinted(f"{case}/{net}/after", state_numpy(getattr(model, "net" + net))))
    out[f"{case}/lr"] = np.array(opt.lr)
    return out


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
    out.update(discriminator_case(os.path.join(workdir, "d")))
    for case in TRAIN_CASES:
        out.update(training_case(os.path.join(workdir, case), case))
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 2 ** 20:.1f} MiB), APF-GAN-jittor {commit[:7]}")


if __name__ == "__main__":
    main()
