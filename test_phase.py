"""Generate one image per label map with a trained generator.

    python test_phase.py --input_path LABEL_DIR --output_path OUT --name NAME [--which_epoch E] [--seed S]

Each label map LABEL_DIR/x.png becomes OUT/x.jpg (or .png with
--image_format png) at the label map's own size. The architecture is read
from CHECKPOINTS_DIR/NAME/opt.json. Output is deterministic for a given seed.

--use_pure (off by default; a dataset-specific trick): when one class covers
more than --pure_threshold (98%) of a label map, the pixels of that class are
copied from a training photo of that class, taken from the pure-colour
dictionary (--pure_dictionary, default CHECKPOINTS_DIR/NAME/pure_colour.pkl).
"""

import sys

from options import test_options
from util import device
from util.cli import run_main


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    opt, _, notes = test_options.parse(argv, description=__doc__)
    return generate(opt, notes)


def generate(opt, notes=()):
    """One seeded generation run with parsed generation options (also test.py's fallback)."""
    use_cuda = device.setup(opt.gpu)

    from tqdm import tqdm

    from data.folders import test_labels
    from data.pure_colour import from_options
    from util.generation import generate_folder, load_generator

    for note in notes:
        print(note)
    total = len(test_labels(opt.input_path, opt.max_dataset_size))
    pure = from_options(opt)  # a missing or bad dictionary stops here, before any generation
    nets = load_generator(opt)
    print(f"generating {total} images with {opt.name} (checkpoint {opt.which_epoch}) on "
          f"{'GPU' if use_cuda else 'CPU'} -> {opt.output_path}")
    with tqdm(total=total, desc="generating", dynamic_ncols=True, file=sys.stderr) as bar:
        written = generate_folder(nets, opt, opt.input_path, opt.output_path, opt.image_format,
                                  opt.jpeg_quality, progress=bar, pure=pure)
    print(f"wrote {len(written)} images to {opt.output_path}")
    if pure is not None:
        print(f"{len(pure.used)} of {len(written)} images used the pure-colour dictionary")
    return 0


if __name__ == "__main__":
    run_main(main)
