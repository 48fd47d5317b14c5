"""Is variant B better than variant A, and by how much: train each variant with several seeds on the same
procedural proxy data, generate the held-out label maps in the style of their reference photos, score them,
and report intervals and paired verdicts (util/metrics/comparison.py).

    python -m util.bench_quality [--out DIR] --variant NAME=FLAGS [--variant NAME=FLAGS ...] [--seeds K]

Example: python -m util.bench_quality --variant "regenerate=--d_fake regenerate" --variant "reuse=--d_fake reuse"
"""

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from data.demo import REFERENCE_JSON, write_dataset  # noqa: E402
from data.image_io import list_files, read_image, read_label, save_image  # noqa: E402
from data.labels import NUM_CLASSES  # noqa: E402
from util.core.cli import run_main  # noqa: E402
from util.core.errors import UserError  # noqa: E402
from util.core.files import atomic_write  # noqa: E402
from util.metrics import quality_report as report  # noqa: E402
from util.metrics.quality import PER_IMAGE, HeldOutImage, score_set  # noqa: E402
from util.metrics.segmenter import DemoSegmenter, fit_from_folder  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCORES = "scores.json"


class BenchmarkRunError(UserError):
    """A training or generation run of the benchmark failed."""


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m util.bench_quality",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train each variant with --seeds training seeds on the procedural proxy data (the same "
                    "data for every variant), generate the held-out label maps in the style of their "
                    "reference photos (mean style code, no colour transfer) and report, per variant, the "
                    "mean and 95% interval over seeds of mask accuracy (the demo segmenter fitted on the "
                    "proxy's training photos), style similarity (the challenge's colour-histogram formula "
                    "against the reference photo), sharpness ratio (generated over photo) and the "
                    "colour-texture Frechet distance (not FID), and the paired difference of each variant to "
                    "the first with a verdict. Finished runs are kept under --out: run the same command "
                    "again to resume, or with more variants or seeds to add to it.")
    p.add_argument("--out", default="results/bench_quality", metavar="DIR",
                   help="benchmark folder: data, runs, report.md, report.json, intervals.png, samples.png")
    p.add_argument("--variant", action="append", metavar="NAME=FLAGS",
                   help="a variant: a name and train.py flags, e.g. 'reuse=--d_fake reuse' or "
                        "'improved=--recipe improved ...' (default recipe: demo); repeat for more, the first is "
                        "the baseline (none given: one variant, 'demo=')")
    p.add_argument("--seeds", type=int, default=3, help="training seeds per variant (0 .. K-1)")
    p.add_argument("--num_train", type=int, default=240, help="proxy training pairs")
    p.add_argument("--num_heldout", type=int, default=200, help="held-out label maps with reference photos")
    p.add_argument("--width", type=int, default=128, help="proxy image width")
    p.add_argument("--height", type=int, default=96, help="proxy image height")
    p.add_argument("--data_seed", type=int, default=0, help="seed of the proxy data")
    p.add_argument("--train_flags", default="", metavar="FLAGS",
                   help="train.py flags for every variant, before the variant's own (e.g. a shorter schedule)")
    p.add_argument("--samples", type=int, default=6, help="held-out label maps in samples.png")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def check_args(args):
    if args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {args.seeds}.")
    if args.num_heldout < 3:
        raise UserError(f"--num_heldout must be at least 3, got {args.num_heldout}.")
    variants = [report.parse_variant(text) for text in (args.variant or ["demo="])]
    report.check_variants(variants)
    return variants


def settings_of(args):
    """What decides every run's result besides the variant and the seed."""
    return {"data": [args.num_train, args.num_heldout, args.width, args.height, args.data_seed],
            "train_flags": shlex.split(args.train_flags)}


def prepare_data(out, args, log):
    data_dir = os.path.join(out, "data")
    marker = os.path.join(data_dir, "DATA.json")
    wanted = settings_of(args)["data"]
    if not (os.path.exists(marker) and json.load(open(marker)) == wanted):
        log(f"writing the proxy data ({args.num_train} training pairs, {args.num_heldout} held out, "
            f"{args.width}x{args.height}) to {data_dir}")
        write_dataset(data_dir, args.num_train, args.width, args.height, args.data_seed, args.num_heldout,
                      progress=not args.no_progress)
        atomic_write(marker, json.dumps(wanted) + "\n")
    seg_path = os.path.join(out, "segmenter.npz")
    if os.path.exists(seg_path) and os.path.getmtime(seg_path) >= os.path.getmtime(marker):
        segmenter = DemoSegmenter.load(seg_path)
    else:
        log("fitting the demo segmenter on the proxy's training photos")
        train = os.path.join(data_dir, "train")
        segmenter = fit_from_folder(os.path.join(train, "imgs"), os.path.join(train, "labels"))
        segmenter.save(seg_path)
    return data_dir, segmenter


def held_out_set(data_dir):
    test = os.path.join(data_dir, "test")
    references = json.load(open(os.path.join(test, REFERENCE_JSON)))
    stems, items = [], []
    for name in list_files(os.path.join(test, "labels"), (".png",)):
        stem = os.path.splitext(name)[0]
        items.append(HeldOutImage(read_label(os.path.join(test, "labels", name), NUM_CLASSES),
                                  read_image(os.path.join(test, "imgs", stem + ".jpg")),
                                  read_image(os.path.join(data_dir, "train", "imgs", references[name]))))
        stems.append(stem)
    return stems, items


def run_script(script, argv, log_path):
    """Run a project command in a fresh process, its output to ``log_path``; an error names the log."""
    with open(log_path, "a") as log_file:
        log_file.write(f"\n$ {script} {' '.join(argv)}\n")
        log_file.flush()
        done = subprocess.run([sys.executable, os.path.join(ROOT, script), *argv], cwd=ROOT, stdout=log_file,
                              stderr=subprocess.STDOUT)
    if done.returncode != 0:
        with open(log_path) as f:
            tail = f.read()[-1500:]
        raise BenchmarkRunError(f"{script} failed (exit {done.returncode}); its output is in {log_path}. "
                                f"The end of it:\n{tail}")


def train_and_score(run_dir, variant, seed, settings, data_dir, stems, held_out, segmenter):
    """One run: train (from scratch), generate the held-out set, score it; the scores are written last."""
    ckpt = os.path.join(run_dir, "checkpoints")
    shutil.rmtree(ckpt, ignore_errors=True)  # an interrupted run starts again
    os.makedirs(run_dir, exist_ok=True)
    log_path = os.path.join(run_dir, "log.txt")
    started = time.time()
    run_script("train.py", report.train_argv(variant, seed, os.path.join(data_dir, "train"), ckpt, "run",
                                             settings), log_path)
    trained = time.time()
    generated_dir = os.path.join(run_dir, "generated")
    test = os.path.join(data_dir, "test")
    run_script("test_phase.py", report.generate_argv(ckpt, "run", os.path.join(test, "labels"),
                                                     os.path.join(data_dir, "train", "imgs"),
                                                     os.path.join(test, REFERENCE_JSON), generated_dir), log_path)
    generated = [read_image(os.path.join(generated_dir, stem + ".png")) for stem in stems]
    scores = score_set(generated, held_out, segmenter)
    record = {name: (scores[name].tolist() if name in PER_IMAGE else scores[name]) for name in scores}
    record["train_seconds"] = trained - started
    record["seconds"] = time.time() - started
    atomic_write(os.path.join(run_dir, SCORES), json.dumps(record) + "\n")
    return record


def write_report(out, summary, variants, runs, stems, held_out, samples):
    header = "# Quality benchmark"
    atomic_write(os.path.join(out, "report.json"), json.dumps(summary, indent=1) + "\n")
    atomic_write(os.path.join(out, "report.md"), report.markdown(summary, header))
    save_image(os.path.join(out, "intervals.png"), report.interval_plot(summary))
    picks = list(range(min(samples, len(stems))))
    rows = [("photo", [held_out[i].photo for i in picks])]
    for v in variants:
        generated_dir = os.path.join(runs[(v.name, summary["seeds"][0])], "generated")
        rows.append((v.name, [read_image(os.path.join(generated_dir, stems[i] + ".png")) for i in picks]))
    save_image(os.path.join(out, "samples.png"), report.sample_grid(rows))


def main(argv=None):
    args = build_parser().parse_args(argv)
    variants = check_args(args)
    out = args.out
    os.makedirs(out, exist_ok=True)

    def log(text):
        print(text, file=sys.stderr, flush=True)

    data_dir, segmenter = prepare_data(out, args, log)
    stems, held_out = held_out_set(data_dir)
    settings = settings_of(args)
    seeds = list(range(args.seeds))
    plan = [(v, s) for s in seeds for v in variants]
    runs = {(v.name, s): os.path.join(out, "runs", report.run_id(v, s, settings)) for v, s in plan}
    results = {v.name: {} for v in variants}
    todo = []
    for v, s in plan:
        path = os.path.join(runs[(v.name, s)], SCORES)
        if os.path.exists(path):
            results[v.name][s] = json.load(open(path))
        else:
            todo.append((v, s))
    log(f"{len(plan) - len(todo)} of {len(plan)} runs already done in {out}")
    bar = None
    if todo and not args.no_progress:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), desc="training runs", unit="run", file=sys.stderr)
    for v, s in todo:
        if bar is not None:
            bar.set_postfix_str(f"{v.name} seed {s}")
        results[v.name][s] = train_and_score(runs[(v.name, s)], v, s, settings, data_dir, stems, held_out,
                                             segmenter)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    summary = report.summarise(results, variants, seeds)
    summary["settings"] = settings
    summary["seconds_per_run"] = {v.name: [results[v.name][s]["seconds"] for s in seeds] for v in variants}
    write_report(out, summary, variants, runs, stems, held_out, args.samples)
    print(report.markdown(summary))
    print(f"report: {os.path.join(out, 'report.md')} (also report.json, intervals.png, samples.png)")
    return 0


if __name__ == "__main__":
    run_main(main)
