"""Build the pure-colour dictionary of ``test_phase.py --use_pure`` (see ``data.pure_colour``).

    python -m util.pure_colour --input_path DATA/train --out checkpoints/NAME/pure_colour.pkl
"""

import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from data.pure_colour import (DEFAULT_MAX_PER_CLASS, build_dictionary, class_name, describe,  # noqa: E402
                               find_pure_pairs, save_dictionary)
from util.core.cli import run_main  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m util.pure_colour",
        description="Build the pure-colour dictionary used by `test_phase.py --use_pure`: for each class, "
                    "the training photos whose label map is that single class, resized to WIDTH x HEIGHT. "
                    "train.py builds it into CHECKPOINTS_DIR/NAME/pure_colour.pkl; this command (re)builds it.")
    p.add_argument("--input_path", required=True, metavar="DATA/train",
                   help="training folder with imgs/ and labels/ (or lables/)")
    p.add_argument("--out", required=True, metavar="PATH",
                   help="dictionary file to write, e.g. checkpoints/NAME/pure_colour.pkl")
    p.add_argument("--label_nc", type=int, default=29, help="number of semantic classes (ids 0..label_nc-1; default: 29)")
    p.add_argument("--width", type=int, default=512, help="width of the stored photos (default: 512)")
    p.add_argument("--height", type=int, default=384, help="height of the stored photos (default: 384)")
    p.add_argument("--max_per_class", type=int, default=DEFAULT_MAX_PER_CLASS,
                   help=f"keep at most this many photos per class, the first in name order "
                        f"(default: {DEFAULT_MAX_PER_CLASS})")
    p.add_argument("--no_progress", action="store_true", help="do not show the progress bar")
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag in ("label_nc", "width", "height", "max_per_class"):
        if getattr(args, flag) <= 0:
            parser.error(f"--{flag} must be a positive integer, got {getattr(args, flag)}")
    bar = None
    if not args.no_progress:
        from tqdm import tqdm
        bar = tqdm(total=None, desc="reading label maps", unit="map", file=sys.stderr, dynamic_ncols=True,
                   delay=0.5)  # first drawn once find_pure_pairs has set the total
    try:
        pure_pairs = find_pure_pairs(args.input_path, args.label_nc, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    dictionary = build_dictionary(args.input_path, args.label_nc, args.width, args.height, args.max_per_class,
                                  pure_pairs=pure_pairs)
    save_dictionary(args.out, dictionary)
    for cid, pairs in pure_pairs.items():
        print(f"{cid:3d} {class_name(cid):<10} {len(pairs)} single-class photo(s), {len(dictionary[cid])} kept")
    if not pure_pairs:
        print(f"no training label map in {args.input_path} is a single class: the dictionary is empty "
              f"and --use_pure will change nothing")
    print(f"wrote {describe(dictionary)} at {args.width}x{args.height} to {args.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
