"""Train one phase of the landscape GAN on a paired dataset.

    python train_phase.py --input_path DATA/train --name NAME [options]

Reads DATA/train/imgs/*.jpg and DATA/train/labels/*.png (or lables/), trains
the SPADE generator against the multiscale discriminator, and writes
checkpoints, a loss log, sample grids and an HTML page to
CHECKPOINTS_DIR/NAME. Ctrl-C stops after the current iteration and saves a
resumable 'latest' checkpoint; --continue_train resumes it exactly.

A phase of the two-phase recipe is one run of this script: --pg_niter turns
on progressive-size pre-training, --init_from starts fine-tuning from the
last pre-training checkpoint, and --preset NAME loads a recipe's options
(train.py runs both phases).
"""

import sys

from options import base_options, train_options
from util.core import checkpoint, device, distributed
from util.core.cli import run_main


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    opt, parser, notes = train_options.parse_phase(argv, description=__doc__)
    folder = checkpoint.experiment_dir(opt)
    for note in notes:
        distributed.say(note)
    distributed.check_launch()
    distributed.check_batch_size(opt.batchSize, distributed.world_size())
    train_options.ensure_weight_files(opt)
    use_cuda = device.setup(opt.gpu)

    from models.training import run_training
    return run_training(opt, use_cuda, on_start=lambda: base_options.save_options(opt, parser, folder))


if __name__ == "__main__":
    run_main(main)
