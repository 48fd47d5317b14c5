"""The CPU's instruction set, and commands run as a CPU with a smaller one would run them.

    python -m util.cpu_isa                          # this machine: CPU, its ISA, what can be emulated
    python -m util.cpu_isa --as avx2 -- CMD ARGS    # run CMD computing as an AVX2-only CPU

Float results differ between CPU kinds (oneDNN's kernels, Jittor's -march=native kernels, OpenBLAS, NumPy and
OpenCV all pick code by instruction set). On a CPU with AVX-512, ``--as avx2`` runs CMD with oneDNN capped at
AVX2, Jittor's kernels compiled for x86-64-v3 in a Jittor cache of their own (the first run compiles Jittor's
core again, about 2 minutes on 2 cores), OpenBLAS's Haswell kernels and NumPy's and OpenCV's AVX-512 code off:
the numbers an AVX2-only machine computes, on this one. ``make test-isa ISA=avx2`` runs the test suite so.
CMD's exit code is returned.
"""

import argparse
import os
import subprocess
import sys

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from options.base_options import HelpFormatter  # noqa: E402
from util.core import isa  # noqa: E402
from util.core.cli import run_main  # noqa: E402
from util.core.errors import OptionError  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--as", dest="target", choices=sorted(isa.EMULATIONS), default=None,
                   help="run the command after -- computing as a CPU with only this instruction set (needs a CPU "
                        "with more); without it, describe this machine")
    p.add_argument("--or_skip", action="store_true",
                   help="with --as: where this CPU cannot compute as that instruction set (it has no more), say so "
                        "and exit 0 without running the command (make test's second pass)")
    p.add_argument("command", nargs=argparse.REMAINDER,
                   help="the command to run, after -- (with --as)")
    return p


def numpy_features():
    from numpy.core._multiarray_umath import __cpu_features__
    return dict(__cpu_features__)


def main(argv=None):
    args = build_parser().parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    cpuinfo = isa.read_cpuinfo()
    flags = isa.cpu_flags(cpuinfo)
    if args.target is None:
        if command:
            raise OptionError("a command was given without --as ISA: nothing to emulate")
        print(isa.describe(cpuinfo, os.environ))
        others = [name for name in isa.EMULATIONS if isa.can_emulate(name, flags)]
        print("can compute as: " + (", ".join(others) if others else "nothing smaller (no AVX-512)"))
        return 0
    if not command:
        raise OptionError("--as needs a command after --, e.g. python -m util.cpu_isa --as avx2 -- "
                          "python -m pytest tests/test_convolution.py")
    if args.or_skip and not isa.can_emulate(args.target, flags):
        print(f"not run as {args.target}: this CPU ({isa.cpu_model(cpuinfo)}) has {isa.native_isa(flags)}, nothing "
              f"more to switch off")
        return 0
    try:
        extra = isa.emulation_env(args.target, flags, numpy_features(), os.environ)
    except isa.IsaError as err:
        raise OptionError(f"{err} (this CPU: {isa.cpu_model(cpuinfo)}).") from None
    print(f"computing as {args.target} on {isa.cpu_model(cpuinfo)} ({isa.native_isa(flags)}): "
          + " ".join(f"{k}={v!r}" if " " in v else f"{k}={v}" for k, v in extra.items()), flush=True)
    try:
        return subprocess.call(command, env={**os.environ, **extra})
    except FileNotFoundError:
        raise OptionError(f"command not found: {command[0]}") from None


if __name__ == "__main__":
    run_main(main)
