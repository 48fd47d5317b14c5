"""Generation options. Architecture options come from the experiment's saved opt.json; the
optional pure-colour switch (``--use_pure``, see ``data.pure_colour``) and the style-track
flags (reference photos, see ``data.references``; colour transfer, see
``data.colour_transfer``) are defined and checked here too."""

import os

from data.colour_transfer import METHODS as COLOUR_TRANSFER_METHODS
from data.pure_colour import DEFAULT_THRESHOLD, default_path
from options import base_options as base
from util.core import checkpoint
from util.core.errors import OptionError


def add_generation_options(parser):
    g = parser.add_argument_group("generation")
    g.add_argument("--output_path", required=True, help="folder for the generated images (created if needed)")
    g.add_argument("--image_format", choices=("jpg", "png"), default="jpg", help="file format of generated images")
    g.add_argument("--jpeg_quality", type=base.positive_int, default=95, help="JPEG quality (1-100)")
    g.add_argument("--no_ema", **base.SWITCH,
                   help="generate with the checkpoint's raw generator (G, E, Es) even when it has the exponential "
                        "moving averages of a run trained with --ema_decay ({tag}_net_G_ema.pkl, ...), which are "
                        "used by default")
    p = parser.add_argument_group("pure-colour trick (optional, dataset-specific)")
    p.add_argument("--use_pure", **base.SWITCH,
                   help="off by default. A dataset-specific trick: when one class covers more than "
                        "--pure_threshold (98%%) of a test label map, the pixels of that class are copied from a "
                        "training photo of that class (from the pure-colour dictionary) instead of generated")
    p.add_argument("--pure_dictionary", default=None, metavar="PATH",
                   help="pure-colour dictionary for --use_pure, built by train.py or `python -m util.pure_colour` "
                        "(default: CHECKPOINTS_DIR/NAME/pure_colour.pkl)%(default).0s")  # .0s: no '(default: None)'
    p.add_argument("--pure_threshold", type=float, default=DEFAULT_THRESHOLD, metavar="T",
                   help="fraction of the pixels one class must exceed for --use_pure to apply (0 <= t < 1)")


def add_style_options(parser):
    g = parser.add_argument_group("style track (reference photos)")
    g.add_argument("--ref_json", default=None, metavar="FILE",
                   help="reference mapping {\"label.png\": \"train_photo.jpg\", ...}: each label map takes the style "
                        "of its reference photo (in --img_path). Default: INPUT_PATH/../label_to_img.json when that "
                        "file exists; 'none' = do not use references (random style codes)%(default).0s")
    g.add_argument("--img_path", default=None, metavar="DIR",
                   help="the training photos: where the reference photos are (and, for test.py, the FID "
                        "reference). Default: the imgs/ folder of the --input_path the experiment was trained "
                        "with, read from its opt.json%(default).0s")
    g.add_argument("--allow_missing_ref", **base.SWITCH,
                   help="label maps without a reference (no entry, or the photo file is missing) get a random "
                        "style instead of stopping with an error; entries for label maps that are not in "
                        "--input_path are ignored. The count is reported")
    g.add_argument("--sample_style", **base.SWITCH,
                   help="draw each style code from the encoder's distribution N(mu, sigma) (reproducible per seed "
                        "and file name) instead of using its mean mu (the default, deterministic)")
    g.add_argument("--color_transfer", choices=COLOUR_TRANSFER_METHODS, default="none",
                   help="post-process: reinhard matches the mean and standard deviation of each LAB channel to the "
                        "reference photo, class by class over the classes both label maps show (the whole image "
                        "when the reference has no label map or no class is shared); coesak: the COESAK team's "
                        "test.py transfer (the whole image, OpenCV's 8-bit LAB, truncated to uint8; "
                        "data/colour_transfer.py); needs reference photos")


def build_parser(description=None, *component_groups):
    return base.build_parser(description, add_generation_options, add_style_options, *component_groups)


def parse(argv=None, description=None, parser=None):
    """Parse generation options and take the architecture from the experiment folder.

    ``parser`` (default: ``build_parser(description)``) may carry a script's own groups.
    Returns (opt, parser, notes) where notes lists what was taken from opt.json.
    """
    parser = parser or build_parser(description)
    opt = parser.parse_args(argv)
    return _completed(opt, parser, lambda: base.explicit_flags(parser, argv))


def from_values(description=None, parser=None, **values):
    """Generation options from values, as ``parse`` makes them from the flags that set those values:
    ``from_values(input_path=LABELS, output_path=OUT, name=NAME, seed=3)`` is ``parse(["--input_path", LABELS,
    ...])``. Starts from the parser's defaults, applies ``values`` (``base_options.options_from_values``: unknown
    names and bad values are an OptionError), then checks them and takes the architecture from the experiment's
    opt.json exactly as ``parse`` does (the values count as given flags). Returns (opt, parser, notes).
    """
    parser = parser or build_parser(description)
    opt = base.options_from_values(parser, values)
    return _completed(opt, parser, lambda: set(values))


def _completed(opt, parser, given):
    """``parse``'s checks and the saved architecture, for the parsed ``opt``; ``given()``: the option names
    set explicitly (asked only when the experiment has an opt.json). Returns (opt, parser, notes)."""
    opt.isTrain = False
    if not 1 <= opt.jpeg_quality <= 100:
        raise OptionError(f"--jpeg_quality must be within 1..100, got {opt.jpeg_quality}.")
    if not 0 <= opt.pure_threshold < 1:
        raise OptionError(f"--pure_threshold must be within 0 <= t < 1, got {opt.pure_threshold}.")
    folder = checkpoint.experiment_dir(opt)
    notes = []
    if opt.pure_dictionary is None:
        opt.pure_dictionary = default_path(folder)
    elif not opt.use_pure:
        notes.append("--pure_dictionary is ignored without --use_pure")
    saved = base.load_saved_options(folder)
    if saved is None:
        notes.append(f"no opt.json in {folder}: using the architecture given on the command line")
    else:
        taken = base.apply_saved_architecture(opt, saved, given(), os.path.join(folder, "opt.json"))
        if taken:
            notes.append("architecture from opt.json: " + ", ".join(f"{k}={getattr(opt, k)}" for k in taken))
    base.validate_architecture(opt)
    if opt.sample_style and not opt.use_vae:
        raise OptionError("--sample_style samples the style encoder's codes, but the model was trained without "
                          "--use_vae (it has no style encoder).")
    return opt, parser, notes
