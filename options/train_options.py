"""Training options: optimisation, losses, logging and checkpointing."""

import os

from options import base_options as base


def add_training_options(parser):
    g = parser.add_argument_group("optimisation")
    g.add_argument("--niter", type=base.non_negative_int, default=50, help="epochs at the initial learning rate")
    g.add_argument("--niter_decay", type=base.non_negative_int, default=0,
                   help="further epochs with the learning rate decaying linearly to zero")
    g.add_argument("--lr", type=base.positive_float, default=0.0002, help="initial Adam learning rate")
    g.add_argument("--beta1", type=float, default=0.0, help="Adam beta1")
    g.add_argument("--beta2", type=float, default=0.9, help="Adam beta2")
    g.add_argument("--no_TTUR", action="store_true",
                   help="same learning rate for G and D (default TTUR: G uses lr/2, D uses lr*2)")
    g.add_argument("--continue_train", action="store_true",
                   help="resume from --which_epoch (default latest): networks, optimisers, epoch, iteration, RNG")
    g.add_argument("--load_size", type=base.positive_int, default=None,
                   help="scale photos to this width before the random crop of --crop_size (default: crop_size, "
                        "i.e. no crop)")
    g.add_argument("--no_flip", action="store_true", help="do not flip training pairs horizontally")

    g = parser.add_argument_group("losses")
    g.add_argument("--gan_mode", choices=("hinge", "ls", "original"), default="hinge", help="adversarial loss")
    g.add_argument("--lambda_feat", type=float, default=10.0, help="weight of the discriminator feature-matching loss")
    g.add_argument("--no_ganFeat_loss", action="store_true", help="disable the feature-matching loss")
    g.add_argument("--lambda_vgg", type=float, default=10.0, help="weight of the VGG19 perceptual loss")
    g.add_argument("--no_vgg_loss", action="store_true", help="disable the VGG19 perceptual loss")
    g.add_argument("--vgg_weights", default=os.path.join("pretrained", "vgg19-dcbb9e9d.pth"),
                   help="VGG19 weights: torchvision's vgg19-dcbb9e9d.pth state dict or a Jittor .pkl of it")
    g.add_argument("--lambda_l1", type=float, default=0.0,
                   help="weight of a pixel L1 loss between generated and real photo (0 = off, as in SPADE); "
                        "useful when no VGG19 weights are available")
    g.add_argument("--lambda_kld", type=float, default=0.05, help="weight of the KL term of the VAE encoder")

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
    opt = parser.parse_args(argv)
    opt.isTrain = True
    if opt.load_size is None:
        opt.load_size = opt.crop_size
    if opt.load_size < opt.crop_size:
        raise base.OptionError(f"--load_size {opt.load_size} is smaller than --crop_size {opt.crop_size}.")
    base.validate_architecture(opt)
    return opt, parser
