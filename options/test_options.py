"""Generation options. Architecture options come from the experiment's saved opt.json."""

import os

from options import base_options as base
from util.errors import OptionError


def add_generation_options(parser):
    g = parser.add_argument_group("generation")
    g.add_argument("--output_path", required=True, help="folder for the generated images (created if needed)")
    g.add_argument("--image_format", choices=("jpg", "png"), default="jpg", help="file format of generated images")
    g.add_argument("--jpeg_quality", type=base.positive_int, default=95, help="JPEG quality (1-100)")


def build_parser(description=None):
    return base.build_parser(description, add_generation_options)


def parse(argv=None, description=None):
    """Parse generation options and take the architecture from the experiment folder.

    Returns (opt, parser, notes) where notes lists what was taken from opt.json.
    """
    parser = build_parser(description)
    opt = parser.parse_args(argv)
    opt.isTrain = False
    if not 1 <= opt.jpeg_quality <= 100:
        raise OptionError(f"--jpeg_quality must be within 1..100, got {opt.jpeg_quality}.")
    folder = base.experiment_dir(opt)
    saved = base.load_saved_options(folder)
    notes = []
    if saved is None:
        notes.append(f"no opt.json in {folder}: using the architecture given on the command line")
    else:
        given = base.explicit_flags(parser, argv)
        taken = base.apply_saved_architecture(opt, saved, given, os.path.join(folder, "opt.json"))
        if taken:
            notes.append("architecture from opt.json: " + ", ".join(f"{k}={getattr(opt, k)}" for k in taken))
    base.validate_architecture(opt)
    return opt, parser, notes
