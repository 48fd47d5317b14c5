"""Generate the test set: the project's main generation command.

    python test.py --input_path LABEL_DIR --output_path OUT --name NAME [options]

At present this runs a single seeded generation and takes exactly the options
of test_phase.py (see `python test_phase.py --help`).
"""

import test_phase
from util.cli import run_main

if __name__ == "__main__":
    run_main(test_phase.main)
