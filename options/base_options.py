"""Options shared by training and generation, grouped by the component that owns them."""

import argparse
import json
import numbers
import os

from models.layout import D_DOWNSAMPLINGS, LAYOUTS, NORM_G_PATTERN, NORM_LAYER_PATTERN, NUM_UPSAMPLINGS, image_height
from util.core.device import CPU_CONV_MODES, DEFAULT_CPU_CONV, GPU_MODES
from util.core.download import KNOWN_FILES, NO_DOWNLOAD_VARIABLE
from util.core.errors import OptionError
from util.core.files import atomic_write

# Options that define the architecture; generation reloads them from the
# experiment folder so they need not be repeated.
ARCHITECTURE_KEYS = (
    "label_nc", "crop_size", "aspect_ratio", "ngf", "ndf", "num_D", "n_layers_D",
    "norm_G", "norm_D", "norm_E", "num_upsampling_layers", "use_vae", "encode_mask",
    "z_dim", "spade_hidden", "use_seg_noise", "netG", "netD", "label_edges", "dontcare_255",
)

# What earlier versions of this framework saved in opt.json (both meant the extra-block layouts).
LEGACY_LAYOUTS = {"more": "apf_more", "most": "two_extra_blocks"}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults and keeps the description's line breaks."""


def positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def layout_name(text):
    """A --num_upsampling_layers value; the names 'more' and 'most' are refused (they meant other networks in
    SPADE than in APF-GAN)."""
    if text in LEGACY_LAYOUTS:
        raise argparse.ArgumentTypeError(
            f"{text!r} names two different networks: SPADE's {text!r} is spade_{text} (the extra upsampling "
            f"between G_middle_0 and G_middle_1) and APF-GAN's is {LEGACY_LAYOUTS[text]} (extra final blocks); "
            f"experiments saved with {text!r} load as {LEGACY_LAYOUTS[text]}")
    return text


def switch(text):
    """A boolean option value: yes/no, true/false, on/off, 1/0."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes/no (or true/false, on/off, 1/0), got {text!r}")


# On/off options: the bare flag switches on, "--flag no" switches off (e.g. to override a preset).
SWITCH = dict(nargs="?", const=True, default=False, type=switch, metavar="yes|no")


def add_download_option(group):
    """--no_download, for every command that reads pretrained weights (``util.core.download.ensure_weights``)."""
    group.add_argument("--no_download", **SWITCH,
                       help="never download pretrained weights. Without it a missing published weights file "
                            f"({', '.join(KNOWN_FILES)}) is fetched from its official address (torchvision's, "
                            "pytorch-fid's) to the path given, and kept only when its SHA-256 matches; with it, or "
                            f"with {NO_DOWNLOAD_VARIABLE}=1 in the environment, a missing file stops with where to "
                            "get it")


def add_experiment_options(parser):
    g = parser.add_argument_group("experiment")
    g.add_argument("--name", default="landscape",
                   help="experiment name: checkpoints, samples and logs go to CHECKPOINTS_DIR/NAME")
    g.add_argument("--checkpoints_dir", default="./checkpoints", help="folder holding one sub-folder per experiment")
    g.add_argument("--gpu", choices=GPU_MODES, default="auto",
                   help="auto: use a CUDA GPU when one is usable, else the CPU; on: require a GPU; off: CPU only")
    g.add_argument("--cpu_conv", choices=CPU_CONV_MODES, default=DEFAULT_CPU_CONV,
                   help="CPU convolutions: 'winograd' runs oneDNN with channel-blocked layouts and its Winograd "
                        "algorithm for 3x3 convolutions where the CPU has it (AVX-512) and the maps are large "
                        "enough (about 2x faster there; results differ from the direct algorithm by rounding, "
                        "about 1e-6 relative); 'direct': the same without Winograd; 'jittor': Jittor's own "
                        "oneDNN call. No effect on a GPU")
    g.add_argument("--seed", type=int, default=0,
                   help="random seed; a run is reproducible for a given seed, data and machine")
    g.add_argument("--which_epoch", default="latest",
                   help="checkpoint to load: an epoch number, 'latest', or any tag T with files T_net_G.pkl")


def add_data_options(parser):
    g = parser.add_argument_group("data")
    g.add_argument("--input_path", required=True,
                   help="training: folder with imgs/ and labels/ (or lables/); generation: folder of label maps")
    g.add_argument("--label_nc", type=positive_int, default=29, help="number of semantic classes (ids 0..label_nc-1)")
    g.add_argument("--dontcare_255", **SWITCH,
                   help="read the label value 255 (unlabelled) as the last class id, label_nc-1: the dont-care class "
                        "of SPADE's released ADE20K and COCO-Stuff models (set by util/import_ckpt.py)")
    g.add_argument("--crop_size", type=positive_int, default=512, help="width of the network's images in pixels")
    g.add_argument("--aspect_ratio", type=positive_float, default=4 / 3,
                   help="width / height of the network's images; height = round(crop_size / aspect_ratio)")
    g.add_argument("--batchSize", type=positive_int, default=1,
                   help="images per iteration; in training under mpirun the global batch, split evenly over the "
                        "ranks (so --lr means the same for any number of GPUs)")
    g.add_argument("--nThreads", type=non_negative_int, default=2,
                   help="data-loading worker processes (per MPI rank; 0 loads in the main process)")
    g.add_argument("--max_dataset_size", type=positive_int, default=None,
                   help="use at most this many samples (first ones in name order)")


GENERATORS = ("spade", "spade_edge", "ecgan")
DISCRIMINATORS = ("multiscale", "apf_progressive")


def add_generator_options(parser):
    g = parser.add_argument_group("generator")
    g.add_argument("--netG", choices=GENERATORS, default="spade",
                   help="spade: the SPADE generator; spade_edge: this project's edge-guided design (inspired by "
                        "ECGAN): SPADE with an edge branch whose attention gates the image features and a "
                        "semantic-preserving output head (models/edge_generator.py); ecgan: ECGAN's generator as "
                        "COESAK's Jittor code computes it: SPADE's trunk, gated image and 3-channel edge stacks at "
                        "full resolution, its semantic-preserving head (models/ecgan_generator.py)")
    g.add_argument("--ngf", type=positive_int, default=64, help="base channel count of the generator and encoders")
    g.add_argument("--norm_G", default="spectralspadesyncbatch3x3",
                   help="generator normalisation: [spectral]spade{syncbatch,batch,instance}KxK; 'spectral' "
                        "applies spectral norm to the residual-block convolutions, K is the SPADE kernel size")
    g.add_argument("--num_upsampling_layers", type=layout_name, choices=tuple(LAYOUTS), default="apf_more",
                   help="generator layout. normal: 5 upsamplings, blocks up_0..up_3 (SPADE's and APF-GAN's "
                        "'normal'); spade_more: 6, the extra one between G_middle_0 and G_middle_1 (SPADE's "
                        "'more', its Cityscapes models); spade_most: 7, spade_more plus a final block up_4 at half "
                        "the channels (SPADE's 'most'); apf_more: 6, a final block up_4 at half the channels "
                        "(APF-GAN's 'more'); two_extra_blocks: 7, blocks up_0..up_5. Sets the start size "
                        "crop_size / 2**upsamplings")
    g.add_argument("--spade_hidden", type=positive_int, default=128, help="hidden channels of each SPADE layer")
    g.add_argument("--use_vae", **SWITCH,
                   help="start the generator from a style code z (VAE image encoder in training, N(0,1) otherwise)")
    g.add_argument("--encode_mask", **SWITCH,
                   help="start the generator from a convolutional encoding of the label map (mask encoder) "
                        "instead of a 3x3 convolution of the downsampled label map")
    g.add_argument("--use_seg_noise", **SWITCH,
                   help="inject Gaussian noise in every SPADE layer with a learned amplitude per class and channel "
                        "(zero at the start, so it can be switched on for fine-tuning a trained model)")
    g.add_argument("--label_edges", **SWITCH,
                   help="give the networks one more input channel after the one-hot label map: its edge map (1 where "
                        "a pixel's class differs from a 4-neighbour's). The instance-edge channel of the official "
                        "SPADE Cityscapes and COCO-Stuff models, computed from the label map since no instance maps "
                        "are read (set by util/import_ckpt.py)")
    g.add_argument("--z_dim", type=positive_int, default=256, help="size of the style code when --use_vae")
    g.add_argument("--norm_E", default="spectralinstance",
                   help="encoder normalisation: [spectral]{instance,batch,syncbatch,none}")


def add_discriminator_options(parser):
    g = parser.add_argument_group("discriminator")
    g.add_argument("--netD", choices=DISCRIMINATORS, default="multiscale",
                   help="multiscale: SPADE's identical sub-discriminators, scale k seeing the input downsampled k "
                        "times; apf_progressive: APF-GAN's, one per resolution level with its own input "
                        "convolutions and a deeper stack per level, the fade-in blended inside it, sub-discriminator "
                        "0 seeing the full size after pre-training (models/discriminator.py)")
    g.add_argument("--ndf", type=positive_int, default=64, help="base channel count of each discriminator")
    g.add_argument("--num_D", type=positive_int, default=2, help="number of discriminator scales")
    g.add_argument("--n_layers_D", type=positive_int, default=4, help="convolution layers per discriminator")
    g.add_argument("--norm_D", default="spectralinstance",
                   help="discriminator normalisation: [spectral]{instance,batch,syncbatch,none}")
    g.add_argument("--d_downsample", choices=D_DOWNSAMPLINGS, default="exact",
                   help="how the discriminator halves its input between scales (3x3 average, stride 2): exact "
                        "averages the pixels inside the image (SPADE in PyTorch); zero_padded counts the zero "
                        "padding in, darkening the border pixels, as APF-GAN's and COESAK's Jittor code computed "
                        "it (Jittor ignores their count_include_pad=False)")


def build_parser(description, *component_groups):
    """A parser with the shared option groups plus ``component_groups`` (functions adding flags)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)
    for add_options in (add_experiment_options, add_data_options, add_generator_options,
                        add_discriminator_options, *component_groups):
        add_options(parser)
    return parser


def validate_architecture(opt):
    """Raise OptionError for inconsistent architecture options; returns opt."""
    m = NORM_G_PATTERN.match(opt.norm_G)
    if not m:
        raise OptionError(f"--norm_G {opt.norm_G!r} is not of the form [spectral]spade{{syncbatch,batch,instance}}3x3.")
    if int(m.group(3)) % 2 == 0:  # SPADE pads by k // 2: only odd kernels keep the feature size
        raise OptionError(f"--norm_G {opt.norm_G!r}: the SPADE kernel size must be odd (e.g. 3x3 or 5x5).")
    for flag in ("norm_D", "norm_E"):
        if not NORM_LAYER_PATTERN.match(getattr(opt, flag)):
            raise OptionError(f"--{flag} {getattr(opt, flag)!r} is not of the form [spectral]{{instance,batch,syncbatch,none}}.")
    if getattr(opt, "netD", "multiscale") == "apf_progressive" and (opt.ndf % 2 ** (opt.num_D - 1) or opt.ndf > 512):
        raise OptionError(f"--netD apf_progressive with --num_D {opt.num_D}: --ndf must be a multiple of "
                          f"{2 ** (opt.num_D - 1)} (sub-discriminator k starts at ndf / 2**k channels) and at most 512; "
                          f"got {opt.ndf}.")
    n_up = NUM_UPSAMPLINGS[opt.num_upsampling_layers]
    if opt.crop_size % (2 ** n_up):
        raise OptionError(f"--crop_size {opt.crop_size} must be a multiple of {2 ** n_up} "
                          f"for --num_upsampling_layers {opt.num_upsampling_layers}.")
    height = image_height(opt)
    if height % (2 ** n_up):
        raise OptionError(f"the image height {height} (crop_size / aspect_ratio) must be a multiple of {2 ** n_up} "
                          f"for --num_upsampling_layers {opt.num_upsampling_layers}; e.g. 512x384 and 256x192 "
                          f"work with 'more', 128x96 with 'normal'.")
    if getattr(opt, "label_edges", False) and getattr(opt, "netG", "spade") == "spade_edge":
        raise OptionError("--label_edges is not supported by --netG spade_edge (its class head expects the one-hot "
                          "label map alone).")
    if LAYOUTS[opt.num_upsampling_layers].up_blocks > 4 and opt.ngf < 4:
        raise OptionError(f"--ngf must be >= 4 with --num_upsampling_layers {opt.num_upsampling_layers} (its blocks "
                          f"after up_3 have ngf / 2 channels and fewer).")
    return opt


def save_options(opt, parser, folder, filename="opt"):
    """Write the resolved options as ``opt.txt`` (readable, marks non-defaults) and ``opt.json``."""
    os.makedirs(folder, exist_ok=True)
    lines = ["----------------- Options ---------------"]
    for key, value in sorted(vars(opt).items()):
        default = parser.get_default(key)
        note = "" if value == default else f"\t[default: {default}]"
        lines.append(f"{key:>25}: {value!s:<30}{note}")
    lines.append("----------------- End -------------------")
    text = "\n".join(lines) + "\n"
    atomic_write(os.path.join(folder, filename + ".txt"), text)
    atomic_write(os.path.join(folder, filename + ".json"), json.dumps(vars(opt), indent=1, sort_keys=True))
    return text


def load_saved_options(folder):
    """Return the dict saved by ``save_options`` in ``folder``, or None when there is none."""
    path = os.path.join(folder, "opt.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return upgrade_saved_options(json.load(f))
    except (OSError, json.JSONDecodeError) as err:
        raise OptionError(f"{path}: cannot read the saved options ({err}).") from None


def upgrade_saved_options(saved):
    """Saved options of earlier versions in today's terms: the layouts 'more'/'most' were the extra-block ones."""
    layout = saved.get("num_upsampling_layers")
    if layout in LEGACY_LAYOUTS:
        saved = dict(saved, num_upsampling_layers=LEGACY_LAYOUTS[layout])
    return saved


def explicit_flags(parser, argv):
    """Names of the options the user gave on the command line (not defaults)."""
    probe = argparse.ArgumentParser(add_help=False)
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            kwargs = {"dest": action.dest, "default": argparse.SUPPRESS}
            if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
                kwargs["action"] = "store_const"
                kwargs["const"] = True
            else:
                kwargs["nargs"] = action.nargs
            probe.add_argument(*action.option_strings, **kwargs)
    known, _ = probe.parse_known_args(argv)
    return set(vars(known))


def apply_saved_architecture(opt, saved, given, source):
    """Take architecture options from a saved experiment; the user's explicit flags must agree.

    Returns the list of keys that were taken from ``saved``.
    """
    taken = []
    for key in ARCHITECTURE_KEYS:
        if key not in saved:
            continue
        if key in given and getattr(opt, key) != saved[key]:
            raise OptionError(f"--{key} {getattr(opt, key)} differs from the value {saved[key]} the model in "
                              f"{source} was trained with; drop the flag to use the saved value.")
        if getattr(opt, key, None) != saved[key]:
            taken.append(key)
        setattr(opt, key, saved[key])
    return taken


def options_from_values(parser, values, argv=()):
    """The namespace ``parser.parse_args`` gives for flags that set ``values`` ({option name: value}), followed
    by the command-line flags ``argv`` (which win): the parser's defaults, then the values, then ``argv``.

    A string, bool or number is read as its text would be on the command line (the option's type and choices:
    e.g. a positive_int option refuses 0, ``True`` switches a yes/no option on); other values (None, tuples) are
    taken as they are. Unknown option names, and options the parser requires that neither the values nor
    ``argv`` give, are an OptionError. Like ``parse_args``, a bad flag in ``argv`` exits with argparse's
    message."""
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}
    unknown = sorted(set(values) - set(actions))
    if unknown:
        raise OptionError(f"unknown option(s) {', '.join(unknown)}; the options are those of --help.")
    checked = {}
    for key, value in values.items():
        action = actions[key]
        try:
            if isinstance(value, (str, bool, numbers.Number)) and action.type is not None:
                value = parser._get_value(action, str(value))
            if value is not None and action.choices is not None:
                parser._check_value(action, value)
        except argparse.ArgumentError as err:
            raise OptionError(f"{err}.") from None
        checked[key] = value
    missing = [a.dest for a in actions.values() if a.required and a.dest not in checked]
    missing = [dest for dest in missing if dest not in explicit_flags(parser, argv)] if missing else []
    if missing:
        raise OptionError(f"no value for the required option(s) {', '.join(missing)}.")
    given = [a for a in actions.values() if a.required and a.dest in checked]
    for action in given:  # set by a value: argparse must not ask for the flag
        action.required = False
    try:
        return parser.parse_args(list(argv), namespace=argparse.Namespace(**checked))
    finally:
        for action in given:
            action.required = True


def replaced(opt, **values):
    """A copy of the options ``opt`` with ``values`` ({option name: value}) in place of its own, e.g. the same
    generation options for another seed; ``opt`` itself is left as it is. Names ``opt`` lacks are an error."""
    unknown = sorted(set(values) - set(vars(opt)))
    if unknown:
        raise OptionError(f"replaced: the options have no {', '.join(unknown)}.")
    return argparse.Namespace(**{**vars(opt), **values})
