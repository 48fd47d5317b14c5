"""Train the landscape GAN: the project's main training command.

    python train.py --input_path DATA/train --name NAME [options]

At present this runs a single training phase and takes exactly the options
of train_phase.py (see `python train_phase.py --help`).
"""

import train_phase
from util.cli import run_main

if __name__ == "__main__":
    run_main(train_phase.main)
