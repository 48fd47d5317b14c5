"""Generation options. Architecture options come from the experiment's saved opt.json; the
optional pure-colour switch (``--use_pure``, see ``data.pure_colour``) is resolved here too."""

import os

from data.pure_colour import DEFAULT_THRESHOLD, default_path
from options import base_options as base
from util.errors import OptionError


def add_generation_options(parser):
    g = parser.add_argument_group("generation")
    g.add_argument("--output_path", required=True, help="folder for the generated images (created if needed)")
    g.add_argument("--image_format", choices=("jpg", "png"), default="jpg", help="file format of generated images")
    g.add_argument("--jpeg_quality", type=base.positive_int, default=95, help="JPEG quality (1-100)")
    p = parser.add_argument_group("pure-colour trick (optional, dataset-specific)")
    p.add_argument("--use_pure", **base.SWITCH,
                   help="off by default. A dataset-specific trick: when one class covers more than "
                        "--pure_threshold (98%%) of a test label map, the pixels of that class are copied from a "
                        "training photo of that class (from the pure-colour dictionary) instead of generated")
    p.add_argument("--pure_dictionary", default=None, metavar="PATH",
                   help="pure-colour dictionary for --use_pure, built by train.py or `python -m data.pure_colour` "
                        "(default: CHECKPOINTS_DIR/NAME/pure_colour.pkl)%(default).0s")  # .0s: no '(default: None)'
    p.add_argument("--pure_threshold", type=float, default=DEFAULT_THRESHOLD, metavar="T",
                   help="fraction of the pixels one class must exceed for --use_pure to apply (0 <= t < 1)")


def build_parser(description=None, *component_groups):
    return base.build_parser(description, add_generation_options, *component_groups)


def parse(argv=None, description=None, parser=None):
    """Parse generation options and take the architecture from the experiment folder.

    ``parser`` (default: ``build_parser(description)``) may carry a script's own groups.
    Returns (opt, parser, notes) where notes lists what was taken from opt.json.
    """
    parser = parser or build_parser(description)
    opt = parser.parse_args(argv)
    opt.isTrain = False
    if not 1 <= opt.jpeg_quality <= 100:
        raise OptionError(f"--jpeg_quality must be within 1..100, got {opt.jpeg_quality}.")
    if not 0 <= opt.pure_threshold < 1:
        raise OptionError(f"--pure_threshold must be within 0 <= t < 1, got {opt.pure_threshold}.")
    folder = base.experiment_dir(opt)
    notes = []
    if opt.pure_dictionary is None:
        opt.pure_dictionary = default_path(folder)
    elif not opt.use_pure:
        notes.append("--pure_dictionary is ignored without --use_pure")
    saved = base.load_saved_options(folder)
    if saved is None:
        notes.append(f"no opt.json in {folder}: using the architecture given on the command line")
    else:
        given = base.explicit_flags(parser, argv)
        taken = base.apply_saved_architecture(opt, saved, given, os.path.join(folder, "opt.json"))
        if taken:
            notes.append("architecture from opt.json: " + ", ".join(f"{k}={getattr(opt, k)}" for k in taken))
    base.validate_architecture(opt)
    return opt, parser, notes
