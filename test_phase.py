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

import sys

from options import test_options
from options.base_options import load_saved_options
from util.core import checkpoint, device, distributed
from util.core.cli import run_main


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    distributed.require_single_process("test_phase.py")
    opt, _, notes = test_options.parse(argv, description=__doc__)
    saved = load_saved_options(checkpoint.experiment_dir(opt))
    use_cuda = device.setup(opt.gpu)

    from models.generation import generate_from_options
    generate_from_options(opt, notes, saved, use_cuda)
    return 0


if __name__ == "__main__":
    run_main(main)
