"""Generate one image per label map with a trained generator.

    python test_phase.py --input_path LABEL_DIR --output_path OUT --name NAME [--which_epoch E] [--seed S]

Each label map LABEL_DIR/x.png becomes OUT/x.jpg (or .png with
--image_format png) at the label map's own size. The architecture is read
from CHECKPOINTS_DIR/NAME/opt.json. Output is deterministic for a given seed.

Style track: when a reference mapping is present (--ref_json, default
LABEL_DIR/../label_to_img.json: {"x.png": "train_photo.jpg", ...}), each
image takes the style of its reference photo (in --img_path, default the
training photos named by opt.json): the style encoder's mean code of the photo
for models trained with --use_vae (a sample with --sample_style), and with
--color_transfer reinhard a colour transfer towards it. Label maps without a
reference are an error, or a random style with --allow_missing_ref.

A checkpoint of a run trained with --ema_decay holds the exponential moving
average of its generator ({tag}_net_G_ema.pkl, and E_ema / Es_ema); it is used
when present (the output says which networks were used); --no_ema takes the
raw G instead.

--use_pure (off by default; a dataset-specific trick): when one class covers
more than --pure_threshold (98%) of a label map, the pixels of that class are
copied from a training photo of that class, taken from the pure-colour
dictionary (--pure_dictionary, default CHECKPOINTS_DIR/NAME/pure_colour.pkl).
"""

import os
import sys

from options import test_options
from util import device, distributed
from util.cli import run_main


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    distributed.require_single_process("test_phase.py")
    opt, _, notes = test_options.parse(argv, description=__doc__)
    return generate(opt, notes)


def generate(opt, notes=()):
    """One seeded generation run with parsed generation options (also test.py's fallback)."""
    use_cuda = device.setup(opt.gpu)

    from tqdm import tqdm

    from data import references
    from data.folders import test_labels
    from data.pure_colour import from_options
    from util.generation import generate_folder, load_generator

    labels = test_labels(opt.input_path, opt.max_dataset_size)
    total = len(labels)
    # bad references or a missing or bad dictionary stop here, before any generation
    style, style_notes = references.from_options(opt, [os.path.basename(p) for p in labels])
    for note in [*notes, *style_notes]:
        print(note)
    pure = from_options(opt)
    nets = load_generator(opt, style_encoder=style is not None)
    print(nets.note)
    print(f"generating {total} images with {opt.name} (checkpoint {opt.which_epoch}) on "
          f"{'GPU' if use_cuda else 'CPU'} -> {opt.output_path}")
    with tqdm(total=total, desc="generating", dynamic_ncols=True, file=sys.stderr) as bar:
        written = generate_folder(nets, opt, opt.input_path, opt.output_path, opt.image_format,
                                  opt.jpeg_quality, progress=bar, pure=pure, style=style)
    print(f"wrote {len(written)} images to {opt.output_path}")
    if pure is not None:
        print(f"{len(pure.used)} of {len(written)} images used the pure-colour dictionary")
    return 0


if __name__ == "__main__":
    run_main(main)
