"""Generate the test set: several seeded runs, keep the one with the best FID.

    python test.py --input_path LABEL_DIR --output_path OUT --name NAME [--which_epoch E] [--n_runs 20]

Runs generation --n_runs times with seeds derived from --seed (the first run
uses --seed itself, so --n_runs 1 gives exactly test_phase.py's images),
measures the FID of each run's images against the training photos
(--img_path, default: the imgs/ folder of the training data the experiment
was trained on, from its opt.json) and keeps the best run's images in
OUT, one per label map, named after it. A JSON report (seed and FID of every
run, the best one) is written to --report (default
CHECKPOINTS_DIR/NAME/test_report_<which_epoch>.json) after every run.

The FID needs pytorch-fid's Inception weights (--inception_weights), which are
downloaded when missing (--no_download: not); without them test.py makes a
single run with --seed and says so. The statistics of
the training photos are cached in CHECKPOINTS_DIR/NAME/fid_stats/.
test_phase.py is the single-run command; every generation flag of it works here,
including the style track's (reference photos from --ref_json, default
LABEL_DIR/../label_to_img.json, found in --img_path; --sample_style,
--allow_missing_ref, --color_transfer): see test_phase.py --help. With mean
style codes and no seg noise all runs give the same images. A checkpoint's
EMA generator ({tag}_net_G_ema.pkl, from --ema_decay) is used when present
(--no_ema: the raw G); the output and the report say which.
"""

import json
import os
import shutil
import sys

from data import references
from options import test_options
from options.base_options import add_download_option, explicit_flags, load_saved_options, positive_int, replaced
from options.train_options import DEFAULT_INCEPTION_WEIGHTS
from util.core import device, distributed
from util.core.cli import run_main
from util.core.errors import WeightsFileError


def add_selection_options(parser):
    g = parser.add_argument_group("seed selection by FID")
    g.add_argument("--n_runs", type=positive_int, default=20,
                   help="generation runs, each with its own seed; the run with the lowest FID is kept")
    g.add_argument("--inception_weights", default=DEFAULT_INCEPTION_WEIGHTS,
                   help="pytorch-fid's FID Inception weights, downloaded when missing (--no_download: not); "
                        "without them a single run is made")
    add_download_option(g)
    g.add_argument("--fid_batch_size", type=positive_int, default=50, help="images per Inception batch")
    g.add_argument("--report", default=None, metavar="FILE",
                   help="JSON report of the runs (default: CHECKPOINTS_DIR/NAME/test_report_<which_epoch>.json)%(default).0s")


def move_images(src, dst):
    """Move the generated images of ``src`` into ``dst`` (same names are replaced); removes ``src``."""
    os.makedirs(dst, exist_ok=True)
    for name in sorted(os.listdir(src)):
        os.replace(os.path.join(src, name), os.path.join(dst, name))
    shutil.rmtree(src, ignore_errors=True)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    distributed.require_single_process("test.py")
    parser = test_options.build_parser(__doc__, add_selection_options)
    opt, _, notes = test_options.parse(argv, parser=parser)
    folder = os.path.join(opt.checkpoints_dir, opt.name)
    report_path = opt.report or os.path.join(folder, f"test_report_{opt.which_epoch}.json")
    saved = load_saved_options(folder)
    from util.metrics.fid_stats import ensure_fid_weights
    try:
        ensure_fid_weights(opt.inception_weights, opt.no_download)
    except WeightsFileError as err:
        if "inception_weights" in explicit_flags(parser, argv):
            raise
        print(f"FID seed selection is off: {err} Making a single run with --seed {opt.seed}.")
        use_cuda = device.setup(opt.gpu)
        from models.generation import generate_from_options
        generate_from_options(opt, notes, saved, use_cuda)
        return 0
    photos = references.training_photos(opt, saved)
    use_cuda = device.setup(opt.gpu)

    from data.folders import test_labels
    from data.pure_colour import from_options
    from util.core import checkpoint
    from util.metrics import fid_stats
    from models import convolution
    from models.generation import load_generator
    from util.metrics.selection import generate_and_score, run_seeds

    labels = test_labels(opt.input_path, opt.max_dataset_size)
    style, style_notes = references.from_options(opt, [os.path.basename(p) for p in labels], saved)
    for note in [*notes, *style_notes]:
        print(note)
    pure = from_options(opt)
    extractor = fid_stats.load_extractor(opt.inception_weights, opt.fid_batch_size, opt.no_download)
    reference, where = fid_stats.reference_statistics(extractor, photos, os.path.join(folder, "fid_stats"))
    print(where)
    nets = load_generator(opt, style_encoder=style is not None)
    print(nets.note)
    seeds = run_seeds(opt.seed, opt.n_runs)
    print(f"{opt.n_runs} runs with {opt.name} (checkpoint {opt.which_epoch}) on {convolution.describe(use_cuda)}, "
          f"seeds {', '.join(map(str, seeds[:4]))}{' ...' if len(seeds) > 4 else ''}; best kept in {opt.output_path}")
    out = os.path.normpath(opt.output_path)
    run_dir, best_dir = out + ".run_tmp", out + ".best_tmp"
    shutil.rmtree(best_dir, ignore_errors=True)
    runs, best = [], None
    for index, seed in enumerate(seeds):
        fid = generate_and_score(nets, replaced(opt, seed=seed), opt.input_path, run_dir, extractor, reference,
                                 pure=pure, desc=f"run {index + 1}/{len(seeds)}", style=style)
        runs.append({"run": index, "seed": seed, "fid": fid})
        if best is None or fid < best["fid"]:
            best = runs[-1]
            shutil.rmtree(best_dir, ignore_errors=True)
            os.replace(run_dir, best_dir)
        print(f"run {index + 1}/{len(seeds)}: seed {seed}  FID {fid:.3f}  (best {best['fid']:.3f}, seed {best['seed']})")
        checkpoint.write_text(report_path, json.dumps(
            {"name": opt.name, "which_epoch": opt.which_epoch, "labels": os.path.abspath(opt.input_path),
             "reference": os.path.abspath(photos), "reference_count": reference.count,
             "output_path": os.path.abspath(opt.output_path), "ema_generator": nets.ema, "networks": nets.note,
             "style_references": style.json_path if style is not None else None,
             "sample_style": opt.sample_style, "color_transfer": opt.color_transfer, "runs": runs, "best": best,
             "finished": index + 1 == len(seeds)}, indent=1))
    shutil.rmtree(run_dir, ignore_errors=True)
    move_images(best_dir, opt.output_path)
    print(f"kept run {best['run'] + 1} (seed {best['seed']}, FID {best['fid']:.3f}) in {opt.output_path}; "
          f"report: {report_path}")
    return 0


if __name__ == "__main__":
    run_main(main)
