"""Write the procedural demo dataset (see ``data.demo``).

    python -m util.demo_data --out DIR [--num N] [--num_test M] [--width W] [--height H] [--seed S]
"""

import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from data.demo import REFERENCE_JSON, TONE_NAMES, write_dataset  # noqa: E402
from util.core.cli import run_main  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m util.demo_data",
        description="Generate a procedural landscape dataset (photos + class-id label maps) in the "
                    "layout the trainer reads: DIR/train/{imgs,labels} and DIR/test/{imgs,labels}. "
                    "Each scene is lit in one of the tones " + ", ".join(TONE_NAMES) + ". "
                    "DIR/test/label_to_img.json gives each test label map a style reference: the training "
                    "photo whose label map has the highest intersection-over-union of present classes "
                    "(ties: largest shared class area, then lowest index).")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing; files of the same name are overwritten, others are left alone)")
    p.add_argument("--num", type=int, default=200, help="number of training pairs (default: 200)")
    p.add_argument("--width", type=int, default=512, help="image width in pixels (default: 512)")
    p.add_argument("--height", type=int, default=384, help="image height in pixels (default: 384)")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed, 0 or more; the same seed and size give byte-identical files (default: 0)")
    p.add_argument("--num_test", type=int, default=None,
                   help="number of held-out test pairs (default: max(4, num // 5))")
    p.add_argument("--no_progress", action="store_true", help="do not show the progress bar")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    num, num_test = write_dataset(args.out, args.num, args.width, args.height, args.seed, args.num_test,
                                  progress=not args.no_progress)
    print(f"wrote {num} train and {num_test} test pairs of {args.width}x{args.height} (seed {args.seed}) "
          f"to {args.out}; style references: {os.path.join(args.out, 'test', REFERENCE_JSON)}")
    return 0


if __name__ == "__main__":
    run_main(main)
