"""Benchmark of training: speed of both phases, generation, data loading, peak memory and model FLOPs.

    python -m util.bench [--preset apf|cpu] [--what train,generate,loader,flops] [--json OUT.json]
                         [--train_args "--amp bf16"] [--peak_tflops 989]

With randomly initialised networks (speed does not depend on the weights'
values) and random label maps / photos, it measures:

* train: the real training step of train_phase.py (models.trainer.SPADETrainer:
  generator_step, discriminator_step, jt.sync_all(); the batch handed over as
  fresh Jittor arrays each iteration, as the data loader does) for the two
  phases of the recipe: pre-training (preset apf_pretrain at the full size,
  i.e. --pg_niter 0: the plain full-size model the last progressive stage
  trains) and fine-tuning (preset apf_finetune: DiffAugment, seg noise,
  Inception loss). Iterations/s and images/s (images = batch size x
  iterations). Data loading, logging and checkpoints are not included.
* generate: the generator's forward pass in eval mode under jt.no_grad, output
  copied to the host (.numpy()), images/s; the fine-tuning model (with seg
  noise: the one test.py generates with) unless only --phases pretrain.
* loader: data.datasets.PairedDataset with the real transforms, reading JPEG
  photos and PNG label maps at the preset's size, batch --loader_batch, one
  full epoch per timed pass with set_epoch before it, as training does (which
  restarts Jittor's worker processes), for each --loader_threads value.
  Unless --data names a training folder, the data is a procedural demo set
  in a temporary folder: --loader_unique distinct scenes repeated as hard
  links up to --loader_images pairs, an epoch long enough that the start-up
  weighs little. Also reported: the time to an epoch's first batch.
* memory: the process's peak resident set size (host RAM, getrusage) after
  each training phase, and the peak of Jittor's live tensor memory in one
  extra, untimed training iteration with Jittor's memory profiler
  (profile_memory_enable; on a GPU device tensors only) plus, on a GPU, the
  device memory held by Jittor's caching allocator (used + cached; it only
  grows, so it is the peak reserved). Both peaks are of the process so far:
  run one phase at a time (--phases) for a per-phase figure.
* flops: multiply-adds of every convolution and linear layer (2 FLOPs each;
  util/metrics/flops.py), from Jittor's lazy graph at the preset's real sizes without
  executing it: forward FLOPs per image of G, D (all scales), VGG19 and
  InceptionV3, and FLOPs per training iteration (both steps, backward pass
  included: util/metrics/flops.py explains the 1x/2x/3x accounting). With train, the
  achieved TFLOP/s = FLOPs per iteration x iterations/s, and with
  --peak_tflops the utilisation of the device's peak.
* profile (only when asked: --what profile): Jittor's operator profiler over
  --iters training iterations of each phase: seconds per iteration of each
  kind of work (convolutions forward and backward, matrix products,
  reductions, fused element-wise kernels, ...; util/metrics/op_profile.py),
  the most expensive operators in the JSON.

Each timed measurement runs --warmup iterations first (compilation; not
counted), then --repeats passes of --iters iterations; the median rate is
reported and all of them go into the JSON.

Presets: apf = the real settings (512x384, ngf 64, ndf 64, num_D 4,
n_layers_D 4, apf_more layout, 29 labels, batch 10 pre-training / 5
fine-tuning, VGG loss; Inception loss in fine-tuning); cpu = the same loss
terms and phases at a size that runs on a small CPU (128x96, ngf 16, ndf 16,
spade_hidden 32, num_D 2, n_layers_D 3, 'normal' upsampling, batch 2).
--train_args adds train_phase.py flags to both phases' options (after the
preset's, so they win), e.g. --train_args "--batchSize 4" or "--amp bf16"
(mixed precision set up as train_phase.py does: on the CPU it falls back to
float32 with a note).
The VGG19 and Inception weight files are written with random values to a
temporary folder (He-normal convolutions, identity batch-norm statistics)
unless --train_args names other files.

Side by side with the references (instead of the parts above):

    python -m util.bench --compare spade --spade_repo DIR [--torch_python PATH] [--gpu off]
    python -m util.bench --compare apf --apf_repo DIR [--gpu off]

runs the reference's own training iteration and this project's at the same
settings, in alternating timed passes (reference, project, reference, ...,
--repeats each, --iters iterations a pass, after --warmup untimed iterations
on each side), and prints each side's iterations/s (median of its passes),
the ratio project / reference (the median of the paired passes' ratios), the
number of parameters each side's two optimisers train, and the settings. Both sides:
ngf 32, ndf 32, num_D 2, n_layers_D 4, batch 2, 29 labels, hinge GAN loss +
feature matching + VGG19 perceptual loss (random weights, on the [-1, 1]
images as the references feed it), TTUR Adam, one G step and one D step per
iteration, random label maps / photos; this project's side is the training
step above (SPADETrainer generator_step + discriminator_step + jt.sync_all()).

* spade, 128x96: NVlabs/SPADE's Pix2PixTrainer (PyTorch, 'normal' layout,
  spectral norm + batch norm in the SPADE blocks, multiscale discriminator
  with spectral instance norm) against the same networks here. It runs in a
  subprocess with --torch_python, a Python with torch, torchvision and dill
  (default: python3 or python on PATH if it has them; PyTorch is not a
  requirement of this project). Create one with
  python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.14.1 torchvision==0.29.1 dill
* apf, 256x192: zcablii/APF-GAN-jittor's Pix2PixTrainer as its winning run
  configured it, after the progressive stages (the full-size networks): the
  mask-encoder start, its 'more' layout, spectralspadesyncbatch3x3 /
  spectralinstance norms (its spectral norm never takes effect), its
  progressive discriminator; here the preset apf_pretrain at the full size
  (apf_more, no spectral norm, netD apf_progressive). 256x192 because that
  mask encoder and layout need sides that are multiples of 64. It runs in a
  subprocess with this project's Python in the checkout (APF-GAN's packages
  models/, options/, util/, data/ share this project's names), torchvision
  and dill stubbed, Jittor's vgg19 built without pretrained weights.

The reference side runs the driver scripts in util/metrics/reference_steps/
(standalone: they import only the reference's code and PyTorch or Jittor). A
missing checkout, or no Python with PyTorch for SPADE, stops with a message
saying what to install or where to point.
"""

import argparse
import gc
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

from options.base_options import HelpFormatter, positive_float, positive_int
from util.core import cuda_check, device, distributed, isa
from util.core.cli import run_main
from util.core.errors import OptionError, UserError

PARTS = ("train", "generate", "loader", "flops", "profile")
DEFAULT_PARTS = ("train", "generate", "loader", "flops")
PHASES = ("pretrain", "finetune")
PHASE_TITLES = {"pretrain": "pre-training", "finetune": "fine-tuning"}

# Options of each phase: a recipe preset, then the preset's own values (train_phase.py options).
PRESETS = {
    "apf": {
        "pretrain": {"preset": "apf_pretrain", "pg_niter": 0},
        "finetune": {"preset": "apf_finetune"},
        "flags": {},
        "gen_batch": 10,
        "about": "the real settings",
    },
    "cpu": {
        "pretrain": {"preset": "apf_pretrain", "pg_niter": 0},
        "finetune": {"preset": "apf_finetune"},
        "flags": {"crop_size": 128, "num_upsampling_layers": "normal", "ngf": 16, "ndf": 16, "spade_hidden": 32,
                  "num_D": 2, "n_layers_D": 3, "batchSize": 2},
        "gen_batch": 2,
        "about": "a CPU-sized model with the real loss terms",
    },
}
VGG_FILE, INCEPTION_FILE = "vgg19-random.pkl", "inception-random.pkl"


def comma_list(allowed, what):
    def parse(text):
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(map(repr, bad))}; choose from "
                                             f"{', '.join(allowed)} (comma-separated)" if bad else
                                             f"no {what} given; choose from {', '.join(allowed)}")
        return list(dict.fromkeys(items))
    return parse


def thread_list(text):
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        values = None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated worker counts >= 0 (e.g. 0,2,4), got {text!r}")
    return list(dict.fromkeys(values))


def build_parser():
    p = argparse.ArgumentParser(prog="python -m util.bench", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--preset", choices=tuple(PRESETS), default=None,
                   help="settings (default: apf on a GPU, cpu on the CPU)%(default).0s")
    p.add_argument("--what", type=comma_list(PARTS, "part"), default=list(DEFAULT_PARTS),
                   help="parts to run, comma-separated: " + ", ".join(PARTS) + " (default: all but profile: "
                        "Jittor's operator profiler over --iters training iterations of each phase, its time "
                        "per kind of work)%(default).0s")
    p.add_argument("--phases", type=comma_list(PHASES, "phase"), default=list(PHASES),
                   help="training phases for train/flops: pretrain, finetune (default: both)%(default).0s")
    p.add_argument("--gpu", choices=device.GPU_MODES, default="auto", help="auto, on or off (CPU)")
    p.add_argument("--train_args", default="", metavar="ARGS",
                   help="extra train_phase.py flags for both phases' options, one shell-quoted string")
    p.add_argument("--iters", type=positive_int, default=None,
                   help="iterations (generation: batches) per timed pass (default: 20 on a GPU, 2 on the "
                        "CPU)%(default).0s")
    p.add_argument("--repeats", type=positive_int, default=3, help="timed passes per measurement (median reported)")
    p.add_argument("--warmup", type=positive_int, default=None,
                   help="untimed iterations before the timed passes (default: 3 on a GPU, 2 on the CPU); the "
                        "loader always runs one untimed epoch%(default).0s")
    p.add_argument("--gen_batch", type=positive_int, default=None,
                   help="generation batch size (default: apf 10, cpu 2)%(default).0s")
    p.add_argument("--loader_threads", type=thread_list, default=None,
                   help="data-loader worker counts to measure (default: 0 and the options' --nThreads)%(default).0s")
    p.add_argument("--loader_batch", type=positive_int, default=10, help="data-loader batch size")
    p.add_argument("--loader_images", type=positive_int, default=1000,
                   help="pairs of the generated loader dataset, i.e. images per epoch")
    p.add_argument("--loader_unique", type=positive_int, default=50,
                   help="distinct scenes among them (the others repeat them as hard links)")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="loader: a training folder (DIR/imgs, DIR/labels) instead of generated demo data%(default).0s")
    p.add_argument("--peak_tflops", type=positive_float, default=None,
                   help="the device's peak TFLOP/s at the training precision, for the utilisation%(default).0s")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON%(default).0s")
    g = p.add_argument_group("side by side with a reference implementation (--compare)")
    g.add_argument("--compare", choices=tuple(REFERENCES), default=None,
                   help="time the reference's own training step and this project's at the same settings, in "
                        "alternating passes, instead of the parts above: spade (NVlabs/SPADE, PyTorch) or apf "
                        "(zcablii/APF-GAN-jittor)%(default).0s")
    g.add_argument("--spade_repo", default=None, metavar="DIR",
                   help="--compare spade: a checkout of https://github.com/NVlabs/SPADE%(default).0s")
    g.add_argument("--apf_repo", default=None, metavar="DIR",
                   help="--compare apf: a checkout of https://github.com/zcablii/APF-GAN-jittor%(default).0s")
    g.add_argument("--d_fake", choices=tuple(D_FAKE_NOTES), default="reuse",
                   help="the image this project's discriminator step judges: reuse (the default of training: the "
                        "generator step's image, one generator forward per iteration) or regenerate (generated "
                        "again by the updated generator, as both references do: the same computation as theirs)")
    g.add_argument("--torch_python", default=None, metavar="PATH",
                   help="--compare spade: a Python with torch, torchvision and dill (default: python3 or python "
                        "on PATH if it has them)%(default).0s")
    return p


D_FAKE_NOTES = {
    "reuse": "; --d_fake reuse (the training default): the D step judges the G step's image, one generator forward "
             "per iteration where the references run two",
    "regenerate": "; --d_fake regenerate: the D step generates again, as the references do",
}

# options of the parts above that --compare does not use
NOT_WITH_COMPARE = ("preset", "what", "phases", "train_args", "gen_batch", "loader_threads", "loader_batch",
                    "loader_images", "loader_unique", "data", "peak_tflops")


def check_compare_arguments(parser, args):
    """Refuse flags that the chosen mode (--compare or the parts) would ignore."""
    if args.compare:
        ignored = [d for d in NOT_WITH_COMPARE if getattr(args, d) != parser.get_default(d)]
        if ignored:
            parser.error(f"--compare runs the side-by-side training benchmark alone; drop "
                         f"{', '.join('--' + d for d in ignored)}")
    if args.d_fake != parser.get_default("d_fake") and not args.compare:
        parser.error("--d_fake is used with --compare only (the parts above take --train_args \"--d_fake ...\")")
    for flag, kinds in (("spade_repo", ("spade",)), ("torch_python", ("spade",)), ("apf_repo", ("apf",))):
        if getattr(args, flag) is not None and args.compare not in kinds:
            parser.error(f"--{flag} is used with --compare {kinds[0]} only")


# ----------------------------------------------------------------------------- device and memory
def gpu_name():
    """Name of CUDA device 0 from the driver library (None when it cannot be asked)."""
    import ctypes
    lib = cuda_check.cuda_driver()
    handle, buf = ctypes.c_int(0), ctypes.create_string_buffer(256)
    if lib is not None and lib.cuDeviceGet(ctypes.byref(handle), 0) == 0 and \
            lib.cuDeviceGetName(buf, 256, handle) == 0:
        return buf.value.decode(errors="replace")
    return None


def peak_rss_bytes():
    """Peak resident set size of this process so far (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def profiled_peak_tensor_bytes(run_once, use_cuda):
    """Peak live tensor memory of Jittor's memory profiler during ``run_once()`` (device tensors only
    on a GPU). The profiler's maximum is of the process so far; None when it cannot be read."""
    import jittor as jt
    try:
        with jt.flag_scope(profile_memory_enable=2 if use_cuda else 1):
            run_once()
            info = jt.get_max_memory_info()
        return int(info.split("[!@#div1!@#]")[0])
    except Exception:  # noqa: BLE001 - an optional figure; the timing stands without it
        return None


def device_pool_bytes():
    """Device memory held by Jittor's caching allocators (used + cached)."""
    import jittor as jt
    return int(jt.get_mem_info().total_cuda_used)


# ----------------------------------------------------------------------------- options and weights
def phase_values(preset, phase, tmp):
    """The option values of ``phase`` under ``preset`` (before --train_args)."""
    cfg = PRESETS[preset]
    return dict(cfg[phase], input_path=os.path.join(tmp, "unused"), name="bench",
                checkpoints_dir=os.path.join(tmp, "checkpoints"), vgg_weights=os.path.join(tmp, VGG_FILE),
                inception_weights=os.path.join(tmp, INCEPTION_FILE), **cfg["flags"])


def parse_phase_options(values, train_args, train_args_text):
    """The training options of ``values`` with the --train_args flags ``train_args`` applied after them."""
    from options import train_options
    try:
        opt, _ = train_options.from_values(argv=train_args, **values)
    except SystemExit as exit_:
        if exit_.code in (0, None):
            raise
        raise OptionError(f"--train_args {train_args_text!r}: not valid train_phase.py options (argparse's "
                          f"message above names the flag).") from None
    return opt


def write_random_vgg(path, rng):
    """A Jittor .pkl with torchvision's VGG19 'features.N.*' keys: He-normal weights, zero biases."""
    import jittor as jt

    from models.vgg import CONV_CHANNELS
    state = {}
    for idx, (cin, cout) in CONV_CHANNELS.items():
        state[f"features.{idx}.weight"] = (rng.standard_normal((cout, cin, 3, 3), dtype=np.float32)
                                           * np.float32(np.sqrt(2.0 / (cin * 9))))
        state[f"features.{idx}.bias"] = np.zeros(cout, np.float32)
    jt.save(state, path)


def write_random_inception(path, rng):
    """A Jittor .pkl with pytorch-fid's FID Inception keys: He-normal convolutions and identity
    batch-norm statistics (mean 0, var 1, scale 1, shift 0), which keep the activations' scale through
    the network: finite losses, a realistic numeric range for reduced precision. (Unlike the real
    weights these features separate images poorly; speed does not depend on it.)"""
    import jittor as jt

    from models.inception import InceptionV3Features
    state = {}
    for key, var in InceptionV3Features("fid").state_dict().items():
        shape = tuple(int(s) for s in var.shape)
        if key.endswith("conv.weight"):
            fan_in = int(np.prod(shape[1:]))
            state[key] = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        elif key.endswith(("running_var", "bn.weight")):
            state[key] = np.ones(shape, np.float32)
        else:
            state[key] = np.zeros(shape, np.float32)
    jt.save(state, path)


def ensure_weights(opts, tmp):
    """Write the random VGG19 / Inception files the options point at inside ``tmp`` (others are the user's)."""
    rng = np.random.default_rng(0)
    for opt in opts.values():
        if not opt.no_vgg_loss and opt.vgg_weights == os.path.join(tmp, VGG_FILE) and \
                not os.path.isfile(opt.vgg_weights):
            write_random_vgg(opt.vgg_weights, rng)
        if opt.inception_loss and opt.inception_weights == os.path.join(tmp, INCEPTION_FILE) and \
                not os.path.isfile(opt.inception_weights):
            write_random_inception(opt.inception_weights, rng)


def settings_of(opt):
    from models.layout import image_height
    return {"size": f"{opt.crop_size}x{image_height(opt)}", "ngf": opt.ngf, "ndf": opt.ndf, "num_D": opt.num_D,
            "n_layers_D": opt.n_layers_D, "num_upsampling_layers": opt.num_upsampling_layers,
            "label_nc": opt.label_nc, "spade_hidden": opt.spade_hidden, "batch": opt.batchSize,
            "vgg_loss": not opt.no_vgg_loss, "inception_loss": bool(opt.inception_loss),
            "diff_aug": opt.diff_aug, "use_seg_noise": bool(opt.use_seg_noise), "norm_G": opt.norm_G}


# ----------------------------------------------------------------------------- timing
def timed_passes(step, iters, repeats, warmup, finish):
    """``warmup`` untimed calls of ``step(i)``, then ``repeats`` timed passes of ``iters`` calls, each
    ending with ``finish()``: (median passes' calls/s, all calls/s, seconds of each pass)."""
    for i in range(warmup):
        step(i)
    finish()
    rates, seconds = [], []
    for r in range(repeats):
        start = time.perf_counter()
        for i in range(iters):
            step(warmup + r * iters + i)
        finish()
        elapsed = time.perf_counter() - start
        seconds.append(elapsed)
        rates.append(iters / elapsed)
    return statistics.median(rates), rates, seconds


def random_batches(opt, n, count=2, seed=0):
    """``count`` (label uint8 [n, H, W], photo float32 [n, 3, H, W] in [-1, 1]) as the loader yields them."""
    from models.layout import image_height
    rs = np.random.RandomState(seed)
    h, w = image_height(opt), opt.crop_size
    return [(rs.randint(0, opt.label_nc, (n, h, w)).astype(np.uint8),
             rs.uniform(-1, 1, (n, 3, h, w)).astype(np.float32)) for _ in range(count)]


def training_step(opt, use_cuda, log):
    """The benchmarked training iteration of train_phase.py: (step(i), finish(), trainer, precision). ``step``
    runs one G step and one D step on fresh Jittor arrays of two random batches taken in turn (as the data
    loader hands them over) and ``jt.sync_all()``; ``finish`` waits for the device (``jt.sync_all(True)``)."""
    import jittor as jt

    from models.mixed_precision import MixedPrecision
    from models.trainer import SPADETrainer
    precision, note = MixedPrecision.for_device(opt.amp, use_cuda)
    if note:
        log(f"  {note}")
    trainer = SPADETrainer(opt, 1, precision)
    trainer.set_epoch_learning_rate(1)
    batches = random_batches(opt, opt.batchSize)

    def step(i):
        label_np, real_np = batches[i % len(batches)]
        label, real = jt.array(label_np), jt.array(real_np)
        trainer.generator_step(label, real, None)
        trainer.discriminator_step(label, real, None)
        jt.sync_all()

    return step, lambda: jt.sync_all(True), trainer, precision


def measure_training(opt, args, use_cuda, log):
    step, finish, _, precision = training_step(opt, use_cuda, log)
    rate, rates, seconds = timed_passes(step, args.iters, args.repeats, args.warmup, finish)
    out = {"batch": opt.batchSize, "iterations_per_s": rate, "images_per_s": rate * opt.batchSize,
           "all_iterations_per_s": rates, "all_images_per_s": [r * opt.batchSize for r in rates],
           "pass_seconds": seconds, "iterations_per_pass": args.iters, "settings": settings_of(opt),
           "precision": precision.describe()}
    log(f"  {rate:.3f} it/s, {rate * opt.batchSize:.3f} img/s (passes: "
        + ", ".join(f"{r:.3f}" for r in rates) + " it/s)")
    memory = {"peak_host_rss_bytes": peak_rss_bytes()}
    tensors = profiled_peak_tensor_bytes(lambda: step(0), use_cuda)
    if tensors is not None:
        memory["peak_tensor_bytes"] = tensors
    if use_cuda:
        memory["device_pool_bytes"] = device_pool_bytes()
    out["memory"] = memory
    return out


def measure_profile(opt, args, use_cuda, log):
    """Jittor's operator profiler over --iters training iterations (after --warmup), by kind of work."""
    from util.metrics.op_profile import profile
    step, finish, _, _ = training_step(opt, use_cuda, log)
    for i in range(args.warmup):
        step(i)
    finish()
    done = iter(range(args.warmup, args.warmup + args.iters))
    summary = profile(lambda: (step(next(done)), finish()), args.iters)
    log(f"  {summary['per_call_seconds']:.3f} s of operators per iteration")
    return summary


def measure_generation(opt, args, log):
    import jittor as jt

    from models.networks import build_networks, one_hot
    nets = build_networks(opt, with_discriminator=False)  # G, and the mask encoder E with --encode_mask
    for net in nets.values():
        net.eval()
    labels = [b[0] for b in random_batches(opt, args.gen_batch)]

    def step(i):
        with jt.no_grad():
            seg = one_hot(jt.array(labels[i % len(labels)]), opt.label_nc)
            nets["G"](seg, mask_features=nets["E"](seg) if "E" in nets else None).numpy()

    rate, rates, seconds = timed_passes(step, args.iters, args.repeats, args.warmup, lambda: None)
    b = args.gen_batch
    log(f"  {rate * b:.2f} img/s")
    return {"batch": b, "images_per_s": rate * b, "all_images_per_s": [r * b for r in rates],
            "pass_seconds": seconds, "batches_per_pass": args.iters,
            "model": "fine-tuning" if opt.use_seg_noise else "pre-training", "settings": settings_of(opt)}


def measure_loader(root, opt, threads, batch, repeats):
    """Images/s of PairedDataset (real transforms) over full epochs: one untimed epoch, then ``repeats``
    timed ones, each after set_epoch as in training (which restarts the worker processes). Returns the
    median rate, all rates, each epoch's seconds and its seconds to the first batch."""
    import jittor as jt

    from data.datasets import PairedDataset, raise_batch_errors
    from models.layout import image_height
    dataset = PairedDataset(root, opt.label_nc, opt.crop_size, image_height(opt), opt.load_size,
                            allow_flip=not opt.no_flip, seed=opt.seed, batch_size=batch, num_workers=threads)
    state = {"epoch": 0}

    def epoch():
        state["epoch"] += 1
        start = time.perf_counter()
        dataset.set_epoch(state["epoch"])
        n, first = 0, None
        for b in dataset:
            raise_batch_errors(b)
            jt.sync([b["label"], b["image"]])
            n += int(b["image"].shape[0])
            first = first or time.perf_counter()
        return n, time.perf_counter() - start, first - start

    epoch()
    runs = [epoch() for _ in range(repeats)]
    dataset.close()
    rates = [n / seconds for n, seconds, _ in runs]
    return {"images_per_s": statistics.median(rates), "all_images_per_s": rates,
            "epoch_seconds": [r[1] for r in runs], "first_batch_seconds": [r[2] for r in runs],
            "median_first_batch_seconds": statistics.median(r[2] for r in runs), "epoch_images": runs[-1][0]}


# ----------------------------------------------------------------------------- FLOPs
def optimizer_params(optimizer):
    return [p for group in optimizer.param_groups for p in group["params"]]


def count_flops(opt, use_cuda=False):
    """FLOPs of one phase's networks and training iteration, from the lazy graph (nothing is executed)."""
    import jittor as jt

    from models.mixed_precision import MixedPrecision
    from models.networks import one_hot
    from models.trainer import SPADETrainer
    from util.metrics import flops

    start = time.perf_counter()
    trainer = SPADETrainer(opt, 1, MixedPrecision.for_device(opt.amp, use_cuda)[0])
    nets = dict(trainer.nets)
    if trainer.vgg_loss is not None:
        nets["VGG19"] = trainer.vgg_loss.vgg
    if trainer.inception_loss is not None:
        nets["Inception"] = trainer.inception_loss.inception
    g_targets, d_targets = optimizer_params(trainer.optimizer_G), optimizer_params(trainer.optimizer_D)
    n = opt.batchSize
    label_np, real_np = random_batches(opt, n, count=1)[0]
    label, real = jt.array(label_np), jt.array(real_np)
    result = {"batch": n}
    with flops.FlopCounter(nets) as counter:
        seg = one_hot(label, opt.label_nc)
        per_image = {}
        trainer.generate(seg, real)
        per_image["G"] = counter.flops() / n
        for name in ("E", "Es"):
            if name in nets:
                per_image[name] = counter.flops(name) / n
                per_image["G"] -= per_image[name]
        counter.clear()
        nets["D"](seg, real)
        per_image["D"] = counter.flops() / n
        for name, run in (("VGG19", lambda x: nets["VGG19"](x)),
                          ("Inception", lambda x: nets["Inception"](x, resize=trainer.inception_loss.resize))):
            if name in nets:
                counter.clear()
                run(real)
                per_image[name] = counter.flops() / n
        counter.clear()
        result["forward_per_image"] = per_image

        # the steps' forward graphs as training builds them (autocast included), without the update
        # (back-propagation, optimiser) and without reading the losses, either of which would run them
        trainer.precision.step = lambda optimizer, loss, nets: True
        trainer._check_finite = lambda terms, which: {}
        trainer.generator_step(label, real, None)
        g_step = flops.training_flops(counter.calls, g_targets)
        g_naive = flops.naive_training_flops(counter.calls)
        counter.clear()
        trainer.discriminator_step(label, real, None)
        d_step = flops.training_flops(counter.calls, d_targets)
        d_naive = flops.naive_training_flops(counter.calls)
        counter.clear()
    result["generator_step"] = g_step
    result["discriminator_step"] = d_step
    result["per_iteration"] = g_step["total"] + d_step["total"]
    result["per_iteration_forward_only"] = g_step["forward"] + d_step["forward"]
    result["per_iteration_naive_3x"] = g_naive + d_naive
    result["per_image"] = result["per_iteration"] / n
    result["seconds_to_count"] = time.perf_counter() - start
    return result


# ----------------------------------------------------------------------------- report
def human(value, unit=""):
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def gib(value):
    return f"{value / 2 ** 30:.2f} GiB"


def table_rows(results):
    rows = []
    train = results.get("train", {})
    flops = results.get("flops", {})
    for phase in PHASES:
        if phase in train:
            t = train[phase]
            title = PHASE_TITLES[phase]
            rows.append((title, "iterations/s", f"{t['iterations_per_s']:.3f}", f"batch {t['batch']}, "
                         f"{t['settings']['size']}, {t['precision']}"))
            rows.append((title, "images/s", f"{t['images_per_s']:.3f}", ""))
    for phase, summary in results.get("profile", {}).items():
        title = f"profile, {PHASE_TITLES[phase]}"
        rows.append((title, "operators, s/iteration", f"{summary['per_call_seconds']:.3f}",
                     "Jittor's profiler (each operator synchronised: slower than the timed iterations)"))
        for kind, seconds, share in summary["kinds"]:
            rows.append((title, kind, f"{seconds:.3f}", f"{100 * share:.0f} %"))
    if "generate" in results:
        g = results["generate"]
        rows.append(("generation", "images/s", f"{g['images_per_s']:.2f}",
                     f"batch {g['batch']}, {g['model']} G, eval, no_grad, to host"))
    if "loader" in results:
        ld = results["loader"]
        for threads, r in ld["threads"].items():
            rows.append(("data loader", f"images/s, {threads} workers", f"{r['images_per_s']:.1f}",
                         f"{ld['size']}, batch {ld['batch']}, epochs of {r['epoch_images']} images, first batch "
                         f"after {r['median_first_batch_seconds']:.2f} s"))
    for phase in PHASES:
        if phase in train:
            m = train[phase]["memory"]
            title = PHASE_TITLES[phase]
            rows.append(("memory", f"peak host RSS after {title}", gib(m["peak_host_rss_bytes"]),
                         "main process, so far"))
            if "peak_tensor_bytes" in m:
                rows.append(("memory", f"peak {'device ' if results['gpu'] else ''}tensors, {title}",
                             gib(m["peak_tensor_bytes"]), "Jittor memory profiler, so far"))
            if "device_pool_bytes" in m:
                rows.append(("memory", f"device allocator pool after {title}", gib(m["device_pool_bytes"]),
                             "used + cached = peak reserved"))
    if flops:
        per_net = {}
        for phase in PHASES:
            if phase in flops:
                for net, value in flops[phase]["forward_per_image"].items():
                    per_net.setdefault(net, {})[phase] = value
        for net, values in per_net.items():
            if len(set(values.values())) == 1:
                rows.append(("FLOPs/image", f"{net} forward", human(next(iter(values.values()))), ""))
            else:
                for phase, value in values.items():
                    rows.append(("FLOPs/image", f"{net} forward, {PHASE_TITLES[phase]}", human(value), ""))
        for phase in PHASES:
            if phase in flops:
                f = flops[phase]
                forward = f["per_iteration_forward_only"]
                rows.append(("FLOPs/iteration", f"training, {PHASE_TITLES[phase]}", human(f["per_iteration"]),
                             f"batch {f['batch']}, G and D steps: forward {human(forward)} + backward "
                             f"{human(f['per_iteration'] - forward)}"))
        for phase in PHASES:
            if phase in flops and "achieved_tflops" in flops[phase]:
                f = flops[phase]
                rows.append(("achieved", f"TFLOP/s, {PHASE_TITLES[phase]}", f"{f['achieved_tflops']:.3f}",
                             "FLOPs/iteration x iterations/s"))
                if "utilisation" in f:
                    rows.append(("utilisation", PHASE_TITLES[phase], f"{100 * f['utilisation']:.1f} %",
                                 f"of {results['peak_tflops']:g} TFLOP/s peak"))
    return rows


def print_table(rows, header=("part", "measure", "value", "notes")):
    rows = [tuple(header)] + list(rows)
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"  {s:<{widths[0]}}  {n:<{widths[1]}}  {v:>{widths[2]}}  {note}".rstrip() for s, n, v, note in rows]
    rule = "  " + "-" * (max(len(x) for x in lines) - 2)
    print("\n".join([rule, lines[0], rule] + lines[1:] + [rule]))


# ----------------------------------------------------------------------------- side by side with the references
class ReferenceSetupError(UserError):
    """--compare: the reference's checkout, or a Python with PyTorch for it, is missing or unusable."""


class ReferenceRunError(UserError):
    """--compare: the reference's training driver stopped before the benchmark ended."""


DRIVERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "metrics", "reference_steps")
# runs a driver script's main() with the reference checkout (the working directory) first on sys.path
DRIVER_BOOT = 'import runpy, sys; sys.exit(runpy.run_path(sys.argv[1])["main"](sys.argv[2:]))'
TORCH_VENV = ("python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.14.1 torchvision==0.29.1 "
              "dill")
# The settings both sides share (--compare): one G step and one D step per iteration, hinge GAN loss + feature
# matching (lambda 10) + VGG19 perceptual loss (lambda 10, random weights, on the [-1, 1] images as the references
# feed it), TTUR Adam (lr 0.0002: G 0.0001, D 0.0004, betas 0 / 0.9), random label maps and photos.
COMPARE_COMMON = {"ngf": 32, "ndf": 32, "num_D": 2, "n_layers_D": 4, "batch": 2, "label_nc": 29}
REFERENCES = {
    "spade": {
        "title": "NVlabs/SPADE", "url": "https://github.com/NVlabs/SPADE", "flag": "--spade_repo",
        "driver": "spade_step.py", "size": (128, 96),
        # a file of the checkout and a text only this reference's version of it holds
        "marker": (os.path.join("trainers", "pix2pix_trainer.py"), "DataParallelWithCallback"),
        "runs": "SPADE's own Pix2PixTrainer (PyTorch, in a subprocess with --torch_python): run_generator_one_step "
                "+ run_discriminator_one_step; SPADE generator, 'normal' layout (start: 3x3 convolution of the "
                "label map downsampled to 4x3), spectral norm and batch norm in its SPADE blocks "
                "(spectralspadesyncbatch3x3, 128 hidden channels), multiscale PatchGAN discriminator with spectral "
                "instance norm, VGG19 from torchvision with weights=None",
        "project_runs": "the same networks and losses: netG spade, num_upsampling_layers normal, norm_G "
                        "spectralspadesyncbatch3x3, spade_hidden 128, netD multiscale, norm_D spectralinstance, "
                        "vgg_input raw (VGG19 with random He-normal weights)",
    },
    "apf": {
        "title": "zcablii/APF-GAN-jittor", "url": "https://github.com/zcablii/APF-GAN-jittor", "flag": "--apf_repo",
        "driver": "apf_step.py", "size": (256, 192),
        "marker": (os.path.join("trainers", "pix2pix_trainer.py"), "jittor"),
        "pg_niter": 180, "epoch": 181,
        "runs": "APF-GAN's own Pix2PixTrainer (Jittor, in a subprocess with this Python) as its winning run "
                "trained after the progressive stages (epoch 181, --pg_niter 180, --pg_strategy 1: the full-size "
                "networks): mask-encoder start (--use_vae --encode_mask), its 'more' layout (the extra final block "
                "up_4), norm_G spectralspadesyncbatch3x3, norm_E and norm_D spectralinstance (its spectral norm "
                "never takes effect), its progressive discriminator (sub-discriminator k at 1/2^k size with "
                "ndf/2^k first channels), VGG19 from jittor.models with pretrained=False",
        "project_runs": "preset apf_pretrain at the full size (--pg_niter 0): mask encoder, num_upsampling_layers "
                        "apf_more, norm_G spadesyncbatch3x3, norm_E and norm_D instance (what APF-GAN's spectral "
                        "norm computes), netD apf_progressive, vgg_input raw (VGG19 with random He-normal weights)",
        "size_note": "APF-GAN's mask encoder (six stride-2 convolutions) and 'more' layout (six upsamplings) need "
                     "sides that are multiples of 64: 256x192 is the smallest 4:3 size its winning configuration "
                     "runs at (at 128x96 its generator's output would not match the label map)",
    },
}


def check_reference_repo(kind, repo):
    """The checkout given for --compare ``kind`` (absolute path); ReferenceSetupError when it is missing or is
    not that reference."""
    ref = REFERENCES[kind]
    clone = f"git clone {ref['url']} DIR and pass {ref['flag']} DIR"
    if not repo:
        raise ReferenceSetupError(f"--compare {kind} runs {ref['title']}'s own training step next to this "
                                  f"project's and needs a checkout of it: {clone}.")
    if not os.path.isdir(repo):
        raise ReferenceSetupError(f"{ref['flag']} {repo}: no such folder. It should be a checkout of "
                                  f"{ref['url']}: {clone}.")
    path, text = ref["marker"]
    missing = [p for p in (path, os.path.join("models", "pix2pix_model.py"),
                           os.path.join("options", "train_options.py")) if not os.path.isfile(os.path.join(repo, p))]
    try:
        with open(os.path.join(repo, path), encoding="utf-8", errors="replace") as f:
            found = text in f.read()
    except OSError:
        found = False
    if missing or not found:
        what = f"{', '.join(missing)} missing" if missing else f"its {path} is not {ref['title']}'s"
        raise ReferenceSetupError(f"{ref['flag']} {repo}: not a checkout of {ref['url']} ({what}). {clone}.")
    return os.path.abspath(repo)


def find_torch_python(given):
    """The interpreter for SPADE: ``given``, else the first of python3 / python on PATH that imports torch,
    torchvision and dill. ReferenceSetupError (with how to make one) when there is none."""
    import subprocess
    if given:
        candidates = [os.path.abspath(given) if os.sep in given else (shutil.which(given) or given)]
    else:
        candidates = list(dict.fromkeys(p for p in (shutil.which("python3"), shutil.which("python")) if p))
    tried = []
    for python in candidates:
        if not os.path.isfile(python) or not os.access(python, os.X_OK):
            tried.append(f"{python} (no such program)")
            continue
        try:
            proc = subprocess.run([python, "-c", "import torch, torchvision, dill"], capture_output=True, text=True,
                                  timeout=300, env=driver_environment())
        except (OSError, subprocess.TimeoutExpired) as err:
            tried.append(f"{python} ({err})")
            continue
        if proc.returncode == 0:
            return python
        last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        tried.append(f"{python} ({last})")
    found = "; ".join(tried) if tried else "no python3 on PATH"
    raise ReferenceSetupError(
        f"--compare spade runs NVlabs/SPADE's training step with PyTorch, in another Python (PyTorch is not one "
        f"of this project's requirements), and found none that imports torch, torchvision and dill: {found}. "
        f"Create one with: {TORCH_VENV} (pip takes about 3.5 minutes) and pass --torch_python "
        f"/tmp/torchenv/bin/python.")


def driver_environment(**extra):
    """The reference driver's environment: the user's, without PYTHONPATH (a path to this project there would
    shadow the reference's packages of the same names)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def git_commit(repo):
    import subprocess
    try:
        proc = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


def compare_settings(kind, tmp, d_fake):
    """(shared settings, this project's option values, the reference's command-line options, driver extras);
    ``d_fake``: the image this project's discriminator step judges (--d_fake)."""
    ref = REFERENCES[kind]
    c = COMPARE_COMMON
    w, h = ref["size"]
    settings = dict(c, size=f"{w}x{h}", width=w, height=h, gan_loss="hinge", lambda_feat=10.0, lambda_vgg=10.0,
                    vgg_weights="random", steps="one G step + one D step per iteration",
                    optimiser="Adam, TTUR (G lr 0.0001, D lr 0.0004), betas 0 / 0.9",
                    data="random label maps and photos (two batches in turn)")
    values = dict(input_path=os.path.join(tmp, "unused"), name="bench",
                  checkpoints_dir=os.path.join(tmp, "checkpoints"),
                  vgg_weights=os.path.join(tmp, VGG_FILE), crop_size=w, aspect_ratio=w / h, load_size=w,
                  ngf=c["ngf"], ndf=c["ndf"], num_D=c["num_D"], n_layers_D=c["n_layers_D"], batchSize=c["batch"],
                  label_nc=c["label_nc"], gan_mode="hinge", lambda_feat=10.0, lambda_vgg=10.0, no_vgg_loss=False,
                  no_ganFeat_loss=False, vgg_input="raw", lr=0.0002, beta1=0.0, beta2=0.9, no_TTUR=False, amp="off",
                  inception_loss=False, diff_aug="", use_seg_noise=False, use_vae=False, pg_niter=0, lambda_l1=0.0,
                  lambda_style=0.0, ema_decay=0.0, spade_hidden=128, d_fake=d_fake)
    argv = ["--name", "bench", "--label_nc", str(c["label_nc"]), "--no_instance", "--crop_size", str(w),
            "--load_size", str(w), "--aspect_ratio", repr(w / h), "--ngf", str(c["ngf"]), "--ndf", str(c["ndf"]),
            "--num_D", str(c["num_D"]), "--n_layers_D", str(c["n_layers_D"]), "--batchSize", str(c["batch"]),
            "--gan_mode", "hinge", "--lambda_feat", "10", "--lambda_vgg", "10", "--lr", "0.0002", "--beta1", "0",
            "--beta2", "0.9"]
    extra = {}
    if kind == "spade":
        values.update(netG="spade", num_upsampling_layers="normal", norm_G="spectralspadesyncbatch3x3",
                      netD="multiscale", norm_D="spectralinstance", encode_mask=False)
        argv += ["--dataset_mode", "custom", "--label_dir", "unused", "--image_dir", "unused", "--netG", "spade",
                 "--num_upsampling_layers", "normal", "--norm_G", "spectralspadesyncbatch3x3", "--netD", "multiscale",
                 "--norm_D", "spectralinstance"]
    else:
        values.update(preset="apf_pretrain")
        argv += ["--num_upsampling_layers", "more", "--norm_G", "spectralspadesyncbatch3x3", "--norm_E",
                 "spectralinstance", "--norm_D", "spectralinstance", "--use_vae", "--encode_mask", "--netD",
                 "multiscale", "--pg_strategy", "1", "--pg_niter", str(ref["pg_niter"]), "--niter", "340"]
        extra["epoch"] = ref["epoch"]
    return settings, values, argv, extra


class ReferenceDriver:
    """A reference's training driver (util/metrics/reference_steps/) in a subprocess, spoken to by line."""

    def __init__(self, kind, python, repo, settings, log_path, env):
        import subprocess
        self.title = REFERENCES[kind]["title"]
        self.log_path = log_path
        self.log = open(log_path, "w")
        driver = os.path.join(DRIVERS, REFERENCES[kind]["driver"])
        self.proc = subprocess.Popen([python, "-c", DRIVER_BOOT, driver, json.dumps(settings)], cwd=repo, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     bufsize=1)

    def _expect(self, word):
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self._fail()
            if line.startswith(word + " "):
                return line[len(word) + 1:].strip()

    def _send(self, text):
        try:
            self.proc.stdin.write(text + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._fail()

    def _fail(self):
        try:
            code = self.proc.wait(timeout=30)
        except Exception:  # noqa: BLE001 - still running but not answering: stop it
            self.proc.kill()
            code = self.proc.wait()
        self.log.flush()
        with open(self.log_path, errors="replace") as f:
            tail = "".join(f.readlines()[-25:]).rstrip()
        raise ReferenceRunError(f"{self.title}'s training driver stopped (exit code {code}) before the benchmark "
                                f"ended. Its last output:\n{tail}")

    def ready(self):
        """The driver's report once its warm-up iterations are done (versions, device, parameter counts)."""
        return json.loads(self._expect("ready"))

    def run(self, iters):
        """Seconds of ``iters`` training iterations, as the driver timed them."""
        self._send(f"run {iters}")
        return float(self._expect("seconds"))

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=120)
            except Exception:  # noqa: BLE001 - it is being shut down either way
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def count_parameters(optimizer):
    """Parameters the optimiser updates (Jittor's optimisers skip those marked stop_grad: batch-norm statistics,
    spectral-norm vectors)."""
    return int(sum(int(np.prod(p.shape)) for p in optimizer_params(optimizer) if not p.is_stop_grad()))


def run_compare(args, argv, log):
    kind = args.compare
    ref = REFERENCES[kind]
    repo = check_reference_repo(kind, args.spade_repo if kind == "spade" else args.apf_repo)
    python = find_torch_python(args.torch_python) if kind == "spade" else sys.executable
    use_cuda = device.setup(args.gpu)
    args.iters = args.iters or (20 if use_cuda else 2)
    args.warmup = args.warmup or (3 if use_cuda else 2)

    import jittor as jt
    jt.set_global_seed(0)
    tmp = tempfile.mkdtemp(prefix="bench_compare_")
    driver = None
    try:
        settings, values, ref_argv, extra = compare_settings(kind, tmp, args.d_fake)
        ref_argv += ["--gpu_ids", "0" if use_cuda else "-1"]
        driver_settings = dict(extra, repo=repo, cuda=use_cuda, seed=0, warmup=args.warmup, options=ref_argv,
                               batch=settings["batch"], width=settings["width"], height=settings["height"],
                               label_nc=settings["label_nc"])
        commit = git_commit(repo)
        gpu = gpu_name() if use_cuda else None
        device_text = (f"GPU: {gpu or 'CUDA device 0'}" if use_cuda else
                       f"CPU: {isa.process_description()} ({os.cpu_count()} logical cores)")
        log(f"side-by-side training benchmark: {ref['title']} vs this project, {settings['size']}, batch "
            f"{settings['batch']}, on {device_text}")
        log(f"starting {ref['title']}'s trainer in a subprocess ({python}, in {repo}) ...")
        driver = ReferenceDriver(kind, python, repo, driver_settings, os.path.join(tmp, "reference.log"),
                                 driver_environment())
        log("building this project's trainer and running its warm-up iterations ...")
        opt = parse_phase_options(values, [], "")
        ensure_weights({"compare": opt}, tmp)
        step, finish, trainer, precision = training_step(opt, use_cuda, log)
        for i in range(args.warmup):
            step(i)
        finish()
        project_info = {"framework": f"Jittor {jt.__version__}", "python": sys.version.split()[0],
                        "g_step_parameters": count_parameters(trainer.optimizer_G),
                        "d_step_parameters": count_parameters(trainer.optimizer_D), "precision": precision.describe(),
                        "options": {k: getattr(opt, k) for k in sorted(ARCHITECTURE_SUMMARY) if hasattr(opt, k)}}
        log(f"waiting for {ref['title']}'s warm-up iterations ...")
        ref_info = driver.ready()
        expected = [settings["batch"], 3, settings["height"], settings["width"]]
        if ref_info.get("generated_shape") != expected:
            log(f"  note: {ref['title']} generated images of shape {ref_info.get('generated_shape')}, expected "
                f"{expected}")
        log(f"timing: {args.repeats} alternating passes of {args.iters} iterations each ({ref['title']} first) "
            f"after {args.warmup} warm-up iterations")
        ref_seconds, project_seconds = [], []
        done = args.warmup
        for r in range(args.repeats):
            ref_seconds.append(driver.run(args.iters))
            start = time.perf_counter()
            for _ in range(args.iters):
                step(done)
                done += 1
            finish()
            project_seconds.append(time.perf_counter() - start)
            log(f"  pass {r + 1}: {ref['title']} {args.iters / ref_seconds[-1]:.3f} it/s, this project "
                f"{args.iters / project_seconds[-1]:.3f} it/s")
        driver.close()
        driver = None
    finally:
        if driver is not None:
            driver.close()
        shutil.rmtree(tmp, ignore_errors=True)

    ref_rates = [args.iters / s for s in ref_seconds]
    project_rates = [args.iters / s for s in project_seconds]
    pair_ratios = [p / r for p, r in zip(project_rates, ref_rates)]
    batch = settings["batch"]
    ref_info.update(argv=ref_argv, commit=commit, repo=repo, interpreter=python, runs=ref["runs"],
                    iterations_per_s=statistics.median(ref_rates), all_iterations_per_s=ref_rates,
                    pass_seconds=ref_seconds)
    runs = ("models.trainer.SPADETrainer generator_step + discriminator_step + jt.sync_all() (util/bench.py's "
            "training step): " + ref["project_runs"] + D_FAKE_NOTES[args.d_fake])
    project_info.update(runs=runs,
                        iterations_per_s=statistics.median(project_rates), all_iterations_per_s=project_rates,
                        pass_seconds=project_seconds)
    results = {
        "compare": kind, "command": "python -m util.bench " + " ".join(shlex.quote(a) for a in argv),
        "gpu": use_cuda, "device": device_text, "host": platform.node(), "settings": settings,
        "size_note": ref.get("size_note"), "iters": args.iters, "repeats": args.repeats, "warmup": args.warmup,
        "reference": ref_info, "project": project_info, "ratio": statistics.median(pair_ratios),
        "pair_ratios": pair_ratios, "load_average_at_end": os.getloadavg()[0],
    }
    print_compare(results, ref["title"], batch)
    if args.json:
        from util.core.checkpoint import write_text
        write_text(args.json, json.dumps(results, indent=1))
        print(f"wrote {args.json}")
    sys.stdout.flush()
    return 0


# project options listed with a comparison's results
ARCHITECTURE_SUMMARY = ("crop_size", "aspect_ratio", "ngf", "ndf", "num_D", "n_layers_D", "batchSize", "label_nc",
                        "netG", "num_upsampling_layers", "norm_G", "norm_E", "norm_D", "netD", "spade_hidden",
                        "encode_mask", "use_vae", "use_seg_noise", "gan_mode", "lambda_feat", "lambda_vgg",
                        "vgg_input", "no_vgg_loss", "no_ganFeat_loss", "inception_loss", "diff_aug", "pg_niter",
                        "d_fake", "lr", "beta1", "beta2", "no_TTUR", "amp")


def print_compare(results, title, batch):
    s, ref, project = results["settings"], results["reference"], results["project"]
    commit = f" {ref['commit'][:7]}" if ref.get("commit") else ""
    print(f"\n{results['device']}; {title}{commit} ({ref['framework']}, Python {ref['python']}) vs this project "
          f"({project['framework']}, Python {project['python']})")
    print(f"command: {results['command']}")
    print(f"settings: {s['size']}, ngf {s['ngf']}, ndf {s['ndf']}, num_D {s['num_D']}, n_layers_D "
          f"{s['n_layers_D']}, batch {s['batch']}, {s['label_nc']} labels, hinge GAN loss + feature matching + VGG19 "
          f"perceptual loss (random weights), {s['steps']}, {s['optimiser']}, {s['data']}")
    if results.get("size_note"):
        print(f"size: {results['size_note']}")
    print(f"{title} runs: {ref['runs']}; options: {' '.join(ref['argv'])}")
    print(f"this project runs: {project['runs']}")
    print(f"timing: {results['repeats']} alternating passes of {results['iters']} iterations each ({title} first) "
          f"after {results['warmup']} warm-up iterations; 1-minute load average {results['load_average_at_end']:.2f} "
          f"at the end ({os.cpu_count()} logical cores)")
    rows = []
    for name, side in ((title, ref), ("this project", project)):
        rows.append((name, "iterations/s", f"{side['iterations_per_s']:.3f}",
                     f"{side['iterations_per_s'] * batch:.3f} images/s; passes "
                     + ", ".join(f"{r:.3f}" for r in side["all_iterations_per_s"])))
    ratios = results["pair_ratios"]
    rows.append(("ratio", "this project / " + title.split("/")[-1], f"{results['ratio']:.2f}",
                 f"median of the {len(ratios)} paired passes: " + ", ".join(f"{r:.2f}" for r in ratios)))
    for which in ("g_step", "d_step"):
        unused = ref.get("unused_parameters", {}).get(which, {})
        note = f"this project; {title}: {ref[which + '_parameters']:,}"
        if unused:
            note += (f" = {ref[which + '_parameters'] - sum(unused.values()):,} + {sum(unused.values()):,} its step "
                     f"never uses (" + ", ".join(f"{kind} {n:,}" for kind, n in unused.items()) + ")")
        rows.append(("parameters", f"trained by the {which[0].upper()} step", f"{project[which + '_parameters']:,}",
                     note))
    print_table(rows, ("side", "measure", "value", "notes"))


# ----------------------------------------------------------------------------- main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    check_compare_arguments(parser, args)
    distributed.require_single_process("util/bench.py")
    if args.compare:
        return run_compare(args, argv, lambda text: print(text, flush=True))
    try:
        train_args = shlex.split(args.train_args)
    except ValueError as err:
        raise OptionError(f"--train_args {args.train_args!r}: {err}.") from None
    use_cuda = device.setup(args.gpu)
    preset = args.preset = args.preset or ("apf" if use_cuda else "cpu")
    cfg = PRESETS[preset]
    args.iters = args.iters or (20 if use_cuda else 2)
    args.warmup = args.warmup or (3 if use_cuda else 2)
    args.gen_batch = args.gen_batch or cfg["gen_batch"]
    what = args.what

    import jittor as jt
    jt.set_global_seed(0)

    def log(text):
        print(text, flush=True)

    def release():
        """Free the last part's networks and graphs (a counted graph is dropped unexecuted)."""
        gc.collect()
        jt.gc()

    tmp = tempfile.mkdtemp(prefix="bench_")
    try:
        opts = {phase: parse_phase_options(phase_values(preset, phase, tmp), train_args, args.train_args)
                for phase in PHASES}
        phases = args.phases
        gen_phase = "finetune" if "finetune" in phases else "pretrain"
        needed = set(phases) if {"train", "flops", "profile"} & set(what) else set()
        ensure_weights({p: opts[p] for p in needed}, tmp)
        base = opts[phases[0]]
        settings = settings_of(base)
        gpu = gpu_name() if use_cuda else None
        results = {
            "preset": preset, "command": "python -m util.bench " + " ".join(shlex.quote(a) for a in argv),
            "gpu": use_cuda, "device": f"GPU: {gpu or 'CUDA device 0'}" if use_cuda else
            f"CPU: {isa.process_description()} ({os.cpu_count()} logical cores)",
            "host": platform.node(), "load_average_at_start": os.getloadavg()[0], "parts": what, "phases": phases,
            "iters": args.iters, "repeats": args.repeats, "warmup": args.warmup,
            "settings": {p: settings_of(opts[p]) for p in phases},
            "memory_kind": ("device: Jittor memory profiler (device tensors) and caching-allocator pool; host: peak "
                            "RSS" if use_cuda else "host: peak RSS of the process; Jittor memory profiler (tensors)"),
        }
        log(f"benchmark, preset {preset} ({cfg['about']}: {settings['size']}, ngf {settings['ngf']}, num_D "
            f"{settings['num_D']}, '{settings['num_upsampling_layers']}' upsampling, {settings['label_nc']} labels) "
            f"on {results['device']}")
        log(f"timing: median of {args.repeats} passes of {args.iters} iterations after {args.warmup} warm-up "
            f"iterations")

        if "flops" in what:
            results["flops"] = {}
            for phase in phases:
                log(f"counting FLOPs, {PHASE_TITLES[phase]} (lazy graph, nothing executed) ...")
                results["flops"][phase] = count_flops(opts[phase], use_cuda)
                release()
                log(f"  {human(results['flops'][phase]['per_iteration'])}FLOP/iteration "
                    f"({results['flops'][phase]['seconds_to_count']:.1f} s to count)")
        for part, doing, measure in (("train", "training", measure_training),
                                     ("profile", "profiling the training step (Jittor's operator profiler)",
                                      measure_profile)):
            if part in what:
                results[part] = {}
                for phase in phases:
                    log(f"{doing}, {PHASE_TITLES[phase]} (batch {opts[phase].batchSize}) ...")
                    results[part][phase] = measure(opts[phase], args, use_cuda, log)
                    release()
        if "generate" in what:
            log(f"generation (batch {args.gen_batch}) ...")
            results["generate"] = measure_generation(opts[gen_phase], args, log)
            release()
        if "loader" in what:
            results["loader"] = run_loader(args, opts[phases[0]], tmp, log)
        if "flops" in results and "train" in results:
            for phase in phases:
                f = results["flops"][phase]
                f["achieved_tflops"] = f["per_iteration"] * results["train"][phase]["iterations_per_s"] / 1e12
                if args.peak_tflops:
                    f["utilisation"] = f["achieved_tflops"] / args.peak_tflops
        if args.peak_tflops:
            results["peak_tflops"] = args.peak_tflops
        results["peak_host_rss_bytes"] = peak_rss_bytes()
        results["load_average_at_end"] = os.getloadavg()[0]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n{results['device']}; preset {preset}: " + ", ".join(
        f"{PHASE_TITLES[p]} {s['size']} batch {s['batch']}" for p, s in results["settings"].items()))
    print(f"command: {results['command']}")
    print(f"1-minute load average {results['load_average_at_start']:.2f} at the start, "
          f"{results['load_average_at_end']:.2f} at the end ({os.cpu_count()} logical cores; other busy processes "
          f"lower the timings)")
    print_table(table_rows(results))
    if args.json:
        from util.core.checkpoint import write_text
        write_text(args.json, json.dumps(results, indent=1))
        print(f"wrote {args.json}")
    sys.stdout.flush()
    return 0


def write_loader_dataset(root, total, unique, width, height):
    """A training folder of ``total`` pairs at width x height: ``unique`` procedural demo scenes
    (data.demo), repeated under further names as hard links (copies where links fail), so that long
    epochs cost little to write. Returns the folder (root/train)."""
    from data.demo import write_dataset
    unique = min(unique, total)
    write_dataset(root, unique, width, height, seed=0, num_test=0, progress=False)
    train = os.path.join(root, "train")
    for sub, ext in (("imgs", ".jpg"), ("labels", ".png")):
        folder = os.path.join(train, sub)
        for i in range(unique, total):
            src, dst = (os.path.join(folder, f"demo_{k:05d}{ext}") for k in (i % unique, i))
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
    return train


def run_loader(args, opt, tmp, log):
    from models.layout import image_height
    threads = args.loader_threads or list(dict.fromkeys([0, opt.nThreads]))
    h = image_height(opt)
    if args.data:
        root = args.data
        source = args.data
    else:
        count = max(args.loader_images, args.loader_batch)
        unique = min(args.loader_unique, count)
        log(f"writing a loader dataset of {count} pairs at {opt.crop_size}x{h} ({unique} distinct demo scenes) ...")
        root = write_loader_dataset(os.path.join(tmp, "data"), count, unique, opt.crop_size, h)
        source = f"demo data, {count} pairs ({unique} distinct scenes)"
    out = {"size": f"{opt.crop_size}x{h}", "batch": args.loader_batch, "data": source, "threads": {}}
    for n in threads:
        log(f"data loader, {n} workers ...")
        r = measure_loader(root, opt, n, args.loader_batch, args.repeats)
        out["threads"][str(n)] = r
        log(f"  {r['images_per_s']:.1f} img/s (first batch of an epoch after {r['median_first_batch_seconds']:.2f} s)")
    return out


if __name__ == "__main__":
    run_main(main)
