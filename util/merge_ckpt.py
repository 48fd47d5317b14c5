"""Average the generation networks of several checkpoints of one experiment (weight averaging).

    python util/merge_ckpt.py CKPT_DIR 273 299 [more tags ...] [--out TAG] [--nets G,E,Es] [--force]

CKPT_DIR is the experiment folder (CHECKPOINTS_DIR/NAME, holding {tag}_net_G.pkl).
The result is written as a new tag, avg_<tags joined by _> unless --out is
given (e.g. avg_273_299_net_G.pkl, plus avg_273_299_net_E.pkl and
avg_273_299_net_Es.pkl when the checkpoints have a mask encoder E or a style
encoder Es), and is used like any other checkpoint:

    python test_phase.py --name NAME --which_epoch avg_273_299 --input_path LABELS --output_path OUT

Only the networks used for generation are averaged: G, E and the style
encoder Es (which encodes the reference photos of the style track), and the
EMA networks of a run trained with --ema_decay (G_ema, E_ema, Es_ema: each
averaged on its own, like the others) when every tag has them; generation
then uses the averaged EMA networks as it uses any checkpoint's. The
discriminator D is not needed to generate and is not merged; no training
state is written, so an averaged tag cannot be resumed from.

How each entry of a state dict is merged:
  * floating-point arrays (weights, biases, BatchNorm running mean/var,
    seg-noise convolutions): arithmetic mean over the checkpoints, computed in
    float64 and stored as float32;
  * spectral-norm layers (<prefix>.weight_orig / .weight_u / .weight_v):
    weight_orig is averaged like any weight; u and v are then re-estimated for
    the averaged weight by power iteration in float64 (v = normalize(W^T u),
    u = normalize(W v), eps 1e-12 as in the model), starting from the u of the
    last tag given, for --power_iterations steps, and stored as float32. In eval
    mode the model divides by sigma = u . (W v) with the stored u, v as they
    are, so they must be unit singular vectors of the averaged W: the mean of
    the u (or v) of different checkpoints is neither a unit vector nor an
    estimate for the averaged weight, and would scale the layer wrongly;
  * integer and boolean arrays (counters): a mean of counters means nothing,
    so they are copied from the last tag given; a note names those that differ
    between the checkpoints.

Refused: fewer than two tags, a missing generator file, checkpoints whose
architectures differ (other keys or shapes, E in some only; EMA networks in
some tags only are left out of the default set, with a note), a generator from
the middle of progressive pre-training, an output tag that is one of the
inputs or a training checkpoint, and existing output files without --force.
Pure NumPy: Jittor is not imported.
"""

import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from models.averaging import MERGEABLE_NETS, POWER_ITERATIONS, average_tags  # noqa: E402
from util.core.cli import run_main  # noqa: E402
from util.core.errors import OptionError  # noqa: E402


def parse_nets(text):
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in MERGEABLE_NETS]
    if not names or bad:
        raise OptionError(f"--nets takes a comma-separated subset of {','.join(MERGEABLE_NETS)} (the networks used "
                          f"for generation), got {text!r}.")
    return list(dict.fromkeys(names))


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", metavar="CKPT_DIR", help="experiment folder holding the checkpoints ({tag}_net_G.pkl)")
    p.add_argument("tags", nargs="+", metavar="TAG",
                   help="two or more checkpoint tags (epochs or names) to average; the last one gives the start of "
                        "the power iteration and the integer buffers")
    p.add_argument("--out", default=None, metavar="TAG", help="tag of the result (default: avg_<tags joined by _>)")
    p.add_argument("--nets", type=parse_nets, default=None, metavar="G,E,Es",
                   help="networks to average, a subset of G,E,Es,G_ema,E_ema,Es_ema (default: G, and the mask "
                        "encoder E and the style encoder Es when the checkpoints have them, and the EMA networks "
                        "of these when every tag has them); D is never merged, generation does not use it")
    p.add_argument("--power_iterations", type=int, default=POWER_ITERATIONS, metavar="N",
                   help="power-iteration steps that re-estimate the spectral-norm vectors u, v of each averaged "
                        "weight, in float64 from the last tag's u")
    p.add_argument("--force", action="store_true", help="overwrite the output files when they exist")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    for line in average_tags(args.folder, args.tags, args.out, args.nets, args.power_iterations, args.force):
        print(line)
    return 0


if __name__ == "__main__":
    run_main(main)
