"""Training options: optimisation, losses, logging and checkpointing."""

import argparse
import os
from fractions import Fraction

from models.layout import LAYOUTS, image_height
from options import base_options as base
from options import presets
from util.core import distributed, download
from util.core.errors import CheckpointError

AMP_CHOICES = ("off", "bf16", "fp16")  # models.mixed_precision.MixedPrecision.for_device
D_FAKE_CHOICES = ("reuse", "regenerate")  # models.trainer.SPADETrainer.fake_for_discriminator
PG_STRATEGIES = ("fade", "jump")  # models.progressive.ProgressiveSchedule
PG_ALPHA_STEPS = ("iteration", "epoch")
DEFAULT_INCEPTION_WEIGHTS = os.path.join("pretrained", "pt_inception-2015-12-05-6726825d.pth")


def layer_weights(text):
    """'1/16,1/8,1/4,1' -> (0.0625, 0.125, 0.25, 1.0): four non-negative numbers or fractions."""
    try:
        values = tuple(float(Fraction(part.strip())) for part in text.split(","))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected 4 comma-separated numbers or fractions, got {text!r}") from None
    if len(values) != 4 or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected 4 non-negative weights (pool_1, pool_2, Mixed_6e, pool_3), "
                                         f"got {text!r}")
    return values


def add_training_options(parser):
    g = parser.add_argument_group("recipe")
    g.add_argument("--preset", default=None, metavar="NAME",
                   help="take option defaults from options/presets/NAME.json (or a .json path); flags given on "
                        f"the command line override them. Shipped presets: {', '.join(presets.available())}")

    g = parser.add_argument_group("optimisation")
    g.add_argument("--niter", type=base.non_negative_int, default=50, help="epochs at the initial learning rate")
    g.add_argument("--niter_decay", type=base.non_negative_int, default=0,
                   help="further epochs with the learning rate decaying linearly to zero")
    g.add_argument("--lr", type=base.positive_float, default=0.0002, help="initial Adam learning rate")
    g.add_argument("--beta1", type=float, default=0.0, help="Adam beta1")
    g.add_argument("--beta2", type=float, default=0.9, help="Adam beta2")
    g.add_argument("--no_TTUR", **base.SWITCH,
                   help="same learning rate for G and D (default TTUR: G uses lr/2, D uses lr*2)")
    g.add_argument("--amp", choices=AMP_CHOICES, default="off",
                   help="mixed precision on the GPU: bf16 or fp16 arithmetic (fp16 with dynamic loss scaling), "
                        "float32 weights and optimiser; on the CPU it falls back to float32 with a note")
    g.add_argument("--ema_decay", type=float, default=0.0, metavar="D",
                   help="keep an exponential moving average of the generator (and of the mask / style encoders), "
                        "updated after every generator step: ema = D*ema + (1-D)*weights, buffers (batch-norm "
                        "statistics, spectral-norm vectors) copied. Saved in every checkpoint as networks of their "
                        "own, {tag}_net_G_ema.pkl (E_ema, Es_ema); generation and FID use them when present "
                        "(test_phase.py --no_ema: the raw G). 0 = off; typical 0.999 ... 0.9999 (OASIS, StyleGAN2)")
    g.add_argument("--d_fake", choices=D_FAKE_CHOICES, default="reuse",
                   help="the image the discriminator step judges: reuse = the generator step's image of the same "
                        "iteration, detached (one generator forward per iteration); regenerate = generated again by "
                        "the just-updated generator, as SPADE and APF-GAN do (a second generator forward, with "
                        "fresh seg-noise and style-code draws, the generator's batch-norm running statistics "
                        "updated twice per iteration; the apf presets). docs/training.md")
    g.add_argument("--continue_train", **base.SWITCH,
                   help="resume from --which_epoch (default latest): networks, optimisers, epoch, iteration, RNG; with "
                        "--which_epoch imported, fine-tune a checkpoint imported by util/import_ckpt.py from epoch 1 "
                        "(fresh discriminator and optimisers)")
    g.add_argument("--load_size", type=base.positive_int, default=None,
                   help="scale photos to this width before the random crop of --crop_size (default: crop_size, "
                        "i.e. no crop)")
    g.add_argument("--no_flip", **base.SWITCH, help="do not flip training pairs horizontally")
    g.add_argument("--exclude_list", default=None, metavar="FILE",
                   help="a text file of image names (one per line, with or without extension) whose pairs are "
                        "left out of training, e.g. the list of 130 hard images APF-GAN trained without "
                        "(remove_130_imgs.txt of its repository)")

    g.add_argument("--init_from", default=None, metavar="TAG",
                   help="start from the networks of checkpoint TAG of this experiment (or EXPERIMENT_DIR/TAG of "
                        "another one) with fresh optimisers, at the epoch after TAG; parameters the options add "
                        "(e.g. --use_seg_noise) are reported and start at their initial values. Used to go from "
                        "pre-training to fine-tuning")
    g.add_argument("--phase_name", default="train",
                   help="name of this training phase, recorded in checkpoints (train.py uses pretrain/finetune)")

    g = parser.add_argument_group("progressive pre-training")
    g.add_argument("--pg_niter", type=base.non_negative_int, default=0,
                   help="epochs of progressive-size pre-training (0 = off): the output grows through --num_D "
                        "resolution levels, from the full size / 2**(num_D-1) to the full size, one "
                        "sub-discriminator per level; the full size alone is trained from epoch pg_niter+1")
    g.add_argument("--pg_strategy", choices=PG_STRATEGIES, default="fade",
                   help="fade: each growth period trains the current level for its first half and fades the "
                        "next level in over the second half; jump: the next level starts at full weight")
    g.add_argument("--pg_alpha", choices=PG_ALPHA_STEPS, default="iteration",
                   help="when the fade weight alpha moves. iteration: at every iteration; epoch: APF-GAN's "
                        "schedule, once per epoch (period P = pg_niter // (num_D - 1) epochs; epoch e trains "
                        "level e // P and fades the next one in at alpha (e mod P) / (P / 2) - 1 while that is "
                        "positive; the full size alone from epoch pg_niter)")
    g.add_argument("--pg_fade_upsample", choices=("nearest", "bilinear"), default="nearest",
                   help="how a fade upsamples the lower level's image (generator output, and the photo with "
                        "--pg_resize box) before blending the new level over it; APF-GAN: bilinear")
    g.add_argument("--pg_resize", choices=("box", "bilinear"), default="box",
                   help="how the photo and the label map reach a pre-training level's size. box: the photo is "
                        "averaged over exact blocks and blended during a fade like the generator's output, the "
                        "labels resized with nearest neighbour; bilinear (APF-GAN): both with bilinear "
                        "interpolation (one-hot labels blend at class boundaries), the photo never blended")

    g = parser.add_argument_group("fine-tuning augmentations")
    g.add_argument("--diff_aug", default="",
                   help="differentiable augmentation of the discriminator's input, comma-separated ops from "
                        "color, crop, translation, cutout (e.g. 'color,crop,translation'); the same random "
                        "parameters for the fake and the real image of a pair, geometric ops also move the label map")
    g.add_argument("--diff_aug_colour", choices=("shared", "independent"), default="shared",
                   help="the color op's brightness, saturation and contrast: shared by the fake and the real "
                        "image of a pair, or drawn independently for each (APF-GAN, as the original DiffAugment)")
    g.add_argument("--inception_loss", **base.SWITCH,
                   help="add a perceptual loss on InceptionV3 features (pool_1, pool_2, Mixed_6e, pool_3); "
                        "needs --inception_weights")
    g.add_argument("--lambda_inception", type=float, default=1.0, help="weight of the Inception perceptual loss")
    g.add_argument("--inception_layer_weights", type=layer_weights, default=(1.0, 1.0, 1.0, 1.0),
                   metavar="W1,W2,W3,W4",
                   help="weights of the Inception loss's four layers pool_1, pool_2, Mixed_6e, pool_3 (numbers "
                        "or fractions; APF-GAN: 1/16,1/8,1/4,1)")
    g.add_argument("--inception_input", choices=("299", "native"), default="299",
                   help="image size the Inception loss sees: resized to 299x299, or native (the training size, "
                        "as APF-GAN)")
    g.add_argument("--inception_norm", choices=("running", "batch"), default="running",
                   help="the Inception network's batch norms: running = its weights' statistics; batch = the "
                        "statistics of each batch (fake and real normalised apart), what APF-GAN's loss computed "
                        "(its Inception was never put in eval mode)")
    g.add_argument("--inception_weights", default=DEFAULT_INCEPTION_WEIGHTS,
                   help="InceptionV3 weights: pytorch-fid's pt_inception-2015-12-05-6726825d.pth (or torchvision's "
                        "inception_v3_google-*.pth) state dict")

    g = parser.add_argument_group("losses")
    g.add_argument("--gan_mode", choices=("hinge", "ls", "original"), default="hinge", help="adversarial loss")
    g.add_argument("--lambda_feat", type=float, default=10.0, help="weight of the discriminator feature-matching loss")
    g.add_argument("--no_ganFeat_loss", **base.SWITCH, help="disable the feature-matching loss")
    g.add_argument("--lambda_vgg", type=float, default=10.0, help="weight of the VGG19 perceptual loss")
    g.add_argument("--no_vgg_loss", **base.SWITCH, help="disable the VGG19 perceptual loss")
    g.add_argument("--vgg_weights", default=os.path.join("pretrained", "vgg19-dcbb9e9d.pth"),
                   help="VGG19 weights: torchvision's vgg19-dcbb9e9d.pth state dict or a Jittor .pkl of it")
    base.add_download_option(g)
    g.add_argument("--vgg_input", choices=("imagenet", "raw"), default="imagenet",
                   help="what the VGG19 loss feeds the network: imagenet = the images mapped to the ImageNet "
                        "normalisation its weights were trained with (about 2.2x the [-1, 1] range); raw = the "
                        "images in [-1, 1] as they are, as SPADE and APF-GAN do")
    g.add_argument("--lambda_l1", type=float, default=0.0,
                   help="weight of a pixel L1 loss between generated and real photo (0 = off, as in SPADE); "
                        "useful when no VGG19 weights are available")
    g.add_argument("--lambda_kld", type=float, default=0.05, help="weight of the KL term of the VAE encoder")
    g.add_argument("--lambda_style", type=float, default=0.0,
                   help="weight of a colour-style loss (0 = off): 1 - correlation of soft 32-bin RGB histograms of "
                        "the generated image and its style source, the paired photo (the style track's measure, "
                        "made differentiable); useful with --use_vae")
    g.add_argument("--lambda_edge", type=float, default=5.0,
                   help="--netG spade_edge: weight of the L1 loss between the generated edge map and the Canny "
                        "edges of the real photo (models/edges.py, computed on the fly); 5 = half of lambda_vgg, as "
                        "ECGAN's code weights its edge output's losses half as much as the final image's")
    g.add_argument("--lambda_branch", type=float, default=0.5,
                   help="--netG spade_edge: weight of the image-branch output's losses (the same terms as the "
                        "final image's, in D too) relative to the final, semantic-preserving output's; ECGAN's "
                        "code: 0.5")

    g = parser.add_argument_group("logging and checkpoints")
    g.add_argument("--print_freq", type=base.positive_int, default=100, help="iterations between loss-log lines")
    g.add_argument("--display_freq", type=base.positive_int, default=500,
                   help="iterations between sample grids (label | generated | real) on the HTML page")
    g.add_argument("--save_latest_freq", type=base.positive_int, default=1000,
                   help="iterations between 'latest' checkpoints")
    g.add_argument("--save_epoch_freq", type=base.positive_int, default=10,
                   help="epochs between numbered checkpoints (the last epoch is always saved)")


def build_parser(description=None):
    return base.build_parser(description, add_training_options)


def parse(argv=None, description=None):
    """Parse and validate training options; returns (opt, parser)."""
    parser = build_parser(description)
    preset = presets.requested(argv)
    if preset is not None:
        parser.set_defaults(**presets.load(preset, parser))
    return _validated(parser.parse_args(argv)), parser


def parse_phase(argv, description=None):
    """Options of one training phase, ready to run (train_phase.py, and each phase of train.py).

    Parses and validates ``argv``; --continue_train and --init_from exclude each other; on --continue_train
    the architecture comes from the experiment's opt.json (explicit flags must agree with it) and is
    validated again. Returns (opt, parser, notes), notes saying what was taken from opt.json."""
    opt, parser = parse(argv, description)
    if opt.continue_train and opt.init_from:
        raise base.OptionError("--continue_train resumes this experiment's own run; --init_from starts a new "
                               "phase from a checkpoint. Give one of them.")
    notes = []
    if opt.continue_train:
        folder = os.path.join(opt.checkpoints_dir, opt.name)
        saved = base.load_saved_options(folder)
        if saved is None:
            raise CheckpointError(f"--continue_train: {folder} holds no opt.json; nothing to resume.")
        taken = base.apply_saved_architecture(opt, saved, base.explicit_flags(parser, argv),
                                              os.path.join(folder, "opt.json"))
        if taken:
            notes.append("resuming with the saved architecture: " +
                         ", ".join(f"{k}={getattr(opt, k)}" for k in taken))
        base.validate_architecture(opt)
        validate_progressive(opt)
    return opt, parser, notes


def from_values(argv=(), description=None, **values):
    """Training options from values, as ``parse`` makes them from the flags that set those values followed by
    ``argv``: ``from_values(input_path=DATA, name=NAME, ngf=16)`` is ``parse(["--input_path", DATA, ...])``.
    Starts from the parser's defaults (a preset's, ``preset=NAME`` or --preset in ``argv``), applies ``values``
    (``base_options.options_from_values``: unknown names and bad values are an OptionError), then the flags of
    ``argv`` (they win), and validates as ``parse`` does. Returns (opt, parser)."""
    parser = build_parser(description)
    preset = presets.requested(list(argv)) or values.get("preset")
    if preset is not None:
        parser.set_defaults(**presets.load(preset, parser))
    return _validated(base.options_from_values(parser, values, argv)), parser


def _validated(opt):
    """``opt`` after parse's checks (and the defaults that depend on other options)."""
    opt.isTrain = True
    if opt.load_size is None:
        opt.load_size = opt.crop_size
    if opt.exclude_list and not os.path.isfile(opt.exclude_list):
        raise base.OptionError(f"--exclude_list {opt.exclude_list}: no such file.")
    if opt.load_size < opt.crop_size:
        raise base.OptionError(f"--load_size {opt.load_size} is smaller than --crop_size {opt.crop_size}.")
    base.validate_architecture(opt)
    validate_progressive(opt)
    validate_ema(opt)
    if opt.inception_loss and opt.inception_input == "native" and min(opt.crop_size, image_height(opt)) < 75:
        raise base.OptionError(f"--inception_input native: the {opt.crop_size}x{image_height(opt)} images are "
                               f"smaller than the 75x75 InceptionV3 needs; use --inception_input 299.")
    return opt


def validate_ema(opt):
    if not 0 <= opt.ema_decay < 1:
        raise base.OptionError(f"--ema_decay must be within 0 <= d < 1 (0 = off; typical 0.999 ... 0.9999), got "
                               f"{opt.ema_decay}.")


def validate_progressive(opt):
    if opt.pg_niter == 0:
        return
    if opt.netG in ("spade_edge", "ecgan"):
        raise base.OptionError(f"--netG {opt.netG} does not support progressive pre-training (--pg_niter > 0): its "
                               "edge branch and semantic-preserving head exist at the full resolution only; use "
                               "--pg_niter 0 (also after a --preset that sets it).")
    blocks = LAYOUTS[opt.num_upsampling_layers].up_blocks
    if opt.num_D < 2:
        raise base.OptionError("--pg_niter needs --num_D >= 2: one sub-discriminator per resolution level.")
    if opt.num_D > blocks:
        raise base.OptionError(f"--pg_niter with --num_D {opt.num_D}: the lowest level would need an up block "
                               f"below the {blocks} of --num_upsampling_layers {opt.num_upsampling_layers}; "
                               f"use --num_D <= {blocks}.")


def required_files(opt):
    """Pretrained-weight files the loss options need: [(path, flag that needs it)]."""
    needed = []
    if not opt.no_vgg_loss:
        needed.append((opt.vgg_weights, "the VGG loss (switch off with --no_vgg_loss)"))
    if opt.inception_loss:
        needed.append((opt.inception_weights, "--inception_loss"))
    return needed


def ensure_weight_files(opt, who="this run", note=""):
    """Every weights file the loss options need is there: a missing published one is downloaded (unless
    --no_download), anything else missing is a WeightsFileError saying where to get it."""
    for path, need in required_files(opt):
        download.ensure_weights(
            path, no_download=opt.no_download, progress=distributed.is_main(), say=distributed.say,
            missing=f"{path}: not found; {who} needs it for {need}. Where to get it: docs/training.md, "
                    f"'Perceptual-loss weights'.{note}")
