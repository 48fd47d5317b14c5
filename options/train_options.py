"""Training options: optimisation, losses, logging and checkpointing."""

import os

from models.mixed_precision import AMP_CHOICES
from models.progressive import STRATEGIES
from options import base_options as base
from options import presets

DEFAULT_INCEPTION_WEIGHTS = os.path.join("pretrained", "pt_inception-2015-12-05-6726825d.pth")
FID_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   "pt_inception-2015-12-05-6726825d.pth")


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
    g.add_argument("--continue_train", **base.SWITCH,
                   help="resume from --which_epoch (default latest): networks, optimisers, epoch, iteration, RNG; with "
                        "--which_epoch imported, fine-tune a checkpoint imported by util/import_ckpt.py from epoch 1 "
                        "(fresh discriminator and optimisers)")
    g.add_argument("--load_size", type=base.positive_int, default=None,
                   help="scale photos to this width before the random crop of --crop_size (default: crop_size, "
                        "i.e. no crop)")
    g.add_argument("--no_flip", **base.SWITCH, help="do not flip training pairs horizontally")

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
    g.add_argument("--pg_strategy", choices=STRATEGIES, default="fade",
                   help="fade: each growth period trains the current level for its first half and fades the "
                        "next level in over the second half; jump: the next level starts at full weight")

    g = parser.add_argument_group("fine-tuning augmentations")
    g.add_argument("--diff_aug", default="",
                   help="differentiable augmentation of the discriminator's input, comma-separated ops from "
                        "color, crop, translation, cutout (e.g. 'color,crop,translation'); the same random "
                        "parameters for the fake and the real image of a pair, geometric ops also move the label map")
    g.add_argument("--inception_loss", **base.SWITCH,
                   help="add a perceptual loss on InceptionV3 features (pool_1, pool_2, Mixed_6e, pool_3); "
                        "needs --inception_weights")
    g.add_argument("--lambda_inception", type=float, default=1.0, help="weight of the Inception perceptual loss")
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
                        "edges of the real photo (data/edges.py, computed on the fly); 5 = half of lambda_vgg, as "
                        "ECGAN weighs the edge output half as much as the final image")
    g.add_argument("--lambda_branch", type=float, default=0.5,
                   help="--netG spade_edge: weight of the image-branch output's losses (the same terms as the "
                        "final image's, in D too) relative to the final, semantic-preserving output's; ECGAN: 0.5")

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
    opt = parser.parse_args(argv)
    opt.isTrain = True
    if opt.load_size is None:
        opt.load_size = opt.crop_size
    if opt.load_size < opt.crop_size:
        raise base.OptionError(f"--load_size {opt.load_size} is smaller than --crop_size {opt.crop_size}.")
    base.validate_architecture(opt)
    validate_progressive(opt)
    return opt, parser


def validate_progressive(opt):
    if opt.pg_niter == 0:
        return
    if opt.netG == "spade_edge":
        raise base.OptionError("--netG spade_edge does not support progressive pre-training (--pg_niter > 0): its "
                               "edge branch and semantic-preserving head exist at the full resolution only; use "
                               "--pg_niter 0 (also after a --preset that sets it).")
    blocks = base.LAYOUTS[opt.num_upsampling_layers].up_blocks
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
