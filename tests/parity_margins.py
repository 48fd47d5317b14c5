"""How close the reference-parity tests come to their tolerances, on this CPU and computing as the other kinds.

    .venv/bin/python tests/parity_margins.py [--json OUT.json] [--quick] [--mutations]

Every tolerance of tests/parity_checks.py is a ``Tolerance``: a float that also records the largest value compared
against it (and where). This script runs the parity modules (``PARITY_MODULES``) four times, on this CPU as it is and
computing as an AVX2-only CPU (``python -m util.cpu_isa --as avx2``, where this CPU has AVX-512), each with
Jittor's fused kernels and operator by operator (``lazy_execution=0``), and prints per tolerance its value and
the largest measured in each run: the figures the tolerances are set from (docs/tests.md). ``--quick`` runs the
fused passes only. ``--mutations`` adds fused runs on this CPU of training iterations that differ slightly from
the references' (MUTATIONS: a loss weight 10% off; the discriminator judging the generator's image from before
its step): their figures show what a real difference looks like next to round-off, and their tests must fail.
The script exits 1 if a test fails in a run of the unchanged computation, or none fails in a mutated one.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARGINS_VARIABLE = "PARITY_MARGINS_JSON"
MUTATION_VARIABLE = "PARITY_MUTATION"
MUTATIONS = ("--lambda_feat 9", "--lambda_vgg 9", "--d_fake reuse")
PARITY_MODULES = ("tests/test_reference_parity.py", "tests/test_coesak_parity.py")
RUN_TIMEOUT = 1800  # seconds for one run of the module (a cold Jittor cache included)
_measured = {}


class Tolerance(float):
    """A tolerance with a name; ``check`` records the largest value held to it in this process."""

    def __new__(cls, value, name):
        tol = super().__new__(cls, value)
        tol.name = name
        return tol

    def __reduce__(self):
        return Tolerance, (float(self), self.name)


def measured(tol, value, where):
    """Record ``value`` (compared against ``tol`` by the caller) when ``tol`` is a Tolerance; return value."""
    if isinstance(tol, Tolerance):
        best = _measured.get(tol.name)
        if best is None or value > best["value"]:
            _measured[tol.name] = {"value": float(value), "tolerance": float(tol), "where": where}
    return value


def write_if_asked():
    """Write what was recorded to $PARITY_MARGINS_JSON (pytest's session end calls this)."""
    path = os.environ.get(MARGINS_VARIABLE)
    if path and _measured:
        with open(path, "w") as f:
            json.dump(_measured, f, indent=1, sort_keys=True)


# ----------------------------------------------------------------------------- the runs

def runs(quick, can_emulate, mutations):
    """(title, command prefix, extra environment, whether its tests must pass) of each run."""
    python = sys.executable
    kinds = [("this CPU", [])]
    if can_emulate:
        kinds.append(("as AVX2", [python, "-m", "util.cpu_isa", "--as", "avx2", "--"]))
    fusions = [("fused", {})] if quick else [("fused", {}), ("op by op", {"lazy_execution": "0"})]
    plain = [(f"{kind}, {fusion}", prefix, env, True) for kind, prefix in kinds for fusion, env in fusions]
    return plain + [(f"mutation {m}", [], {MUTATION_VARIABLE: m}, False) for m in mutations]


def table(results):
    """Markdown rows: tolerance, its value, then the largest value and its place per run."""
    names = sorted({name for r in results.values() for name in r})
    head = "| tolerance | value | " + " | ".join(results) + " |"
    lines = [head, "|" + "---|" * (2 + len(results))]
    for name in names:
        tol = next(r[name]["tolerance"] for r in results.values() if name in r)
        cells = [f"{r[name]['value']:.3g} ({r[name]['where']})" if name in r else "-" for r in results.values()]
        lines.append(f"| {name} | {tol:.3g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", help="also write the measured figures here")
    p.add_argument("--quick", action="store_true", help="fused passes only")
    p.add_argument("--mutations", action="store_true",
                   help="also run the training iterations with each of: " + "; ".join(MUTATIONS))
    args = p.parse_args(argv)
    sys.path.insert(0, ROOT)
    from util.core import isa
    cpuinfo = isa.read_cpuinfo()
    print(f"parity margins on {isa.describe(cpuinfo, os.environ)}", flush=True)
    results, failed = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        plan = runs(args.quick, isa.can_emulate("avx2", isa.cpu_flags(cpuinfo)), MUTATIONS if args.mutations else ())
        for i, (title, prefix, env, must_pass) in enumerate(plan):
            out = os.path.join(tmp, f"{i}.json")
            print(f"{title} ...", flush=True)
            tests = [*PARITY_MODULES] + ([] if must_pass else ["-k", "training"])
            try:
                done = subprocess.run([*prefix, sys.executable, "-m", "pytest", "-q", "-rE", "-p",
                                       "no:cacheprovider", *tests], cwd=ROOT,
                                      env={**os.environ, **env, MARGINS_VARIABLE: out}, capture_output=True,
                                      text=True, timeout=RUN_TIMEOUT)
                lines, code = done.stdout.strip().splitlines() or ["(no output)"], done.returncode
                crash = done.stderr.strip().splitlines()[-12:] if code not in (0, 1) else []
            except subprocess.TimeoutExpired:
                lines, code, crash = [f"stopped after {RUN_TIMEOUT} s"], None, []
            errors = [line for line in lines if line.startswith("ERROR ")]
            print("\n".join("  " + line for line in errors[:3] + lines[-1:]), flush=True)
            if crash:  # pytest did not end on its own (exit code {code}): what it printed last
                print(f"  exit code {code}; the end of its error output:\n" + "\n".join("    " + l for l in crash))
            # a mutated run must fail its comparisons, not its set-up
            if code is None or errors or (code != 0) == must_pass:
                failed.append(title)
            if os.path.exists(out):
                with open(out) as f:
                    results[title] = json.load(f)
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if failed:
        print("not as expected (a test failed, or none failed with a mutation): " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
