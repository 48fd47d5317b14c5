"""Rank checkpoints by FID, and optionally average the best ones.

    python util/fid.py TRAIN_IMGS TEST_LABELS CKPT_DIR 270-310
    python util/fid.py TRAIN_IMGS TEST_LABELS 273,298,299 --name NAME [--checkpoints_dir DIR]
    python util/fid.py TRAIN_IMGS TEST_LABELS CKPT_DIR 270-310 --average_best 2

For every checkpoint tag (a range such as 270-310, a list such as 273,298,299,
tags such as avg_273_299 or latest, or a comma-separated mix), the generator
of CKPT_DIR (an experiment folder, CHECKPOINTS_DIR/NAME) turns every label map
of TEST_LABELS into an image (seed --seed, JPEG as test.py writes them), and
the FID of those images against the photos of TRAIN_IMGS is computed
(pytorch-fid's method and weights, see util/metrics/fid_stats.py). Tags without a
checkpoint are reported and skipped. The table, sorted by FID (lowest first),
is printed and written as fid_ranking.csv and fid_ranking.json in CKPT_DIR.

The statistics of TRAIN_IMGS are cached in CKPT_DIR/fid_stats/ and reused
while the folder's files, --resize_to and the weights are unchanged. The
JSON keeps every FID measured; a checkpoint already scored with the same
labels, reference, seed and weights, whose file has not changed since, is
not generated again (--recompute does), so an interrupted ranking resumes.

With --average_best K, the K best checkpoints are averaged with
util/merge_ckpt.py's rules (tag avg_<tags>) and the average is scored too.
A checkpoint with the EMA networks of a run trained with --ema_decay
({tag}_net_G_ema.pkl ...) is scored with them (--no_ema: with the raw G);
each line of the output and each result of the JSON names the generator used.
TRAIN_IMGS may be the photo folder itself or a training folder holding imgs/.
"""

import argparse
import json
import os
import shutil
import sys

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from options.base_options import HelpFormatter, add_download_option, non_negative_int, positive_int  # noqa: E402
from options.train_options import DEFAULT_INCEPTION_WEIGHTS  # noqa: E402
from util.core import device, distributed  # noqa: E402
from util.core.cli import run_main  # noqa: E402
from util.core.errors import CheckpointError, OptionError  # noqa: E402
from models.training_page import RANKING_NAME, read_ranking, write_experiment_page  # noqa: E402



def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("train_imgs", metavar="TRAIN_IMGS", help="folder of the real photos (the FID reference)")
    p.add_argument("test_labels", metavar="TEST_LABELS", help="folder of the label maps to generate from")
    p.add_argument("where", nargs="+", metavar="[CKPT_DIR] TAGS",
                   help="the experiment folder (omit it with --name) and the checkpoint tags: 270-310, "
                        "273,298,299, avg_273_299, latest, or a comma-separated mix")
    p.add_argument("--name", default=None, help="experiment name: CKPT_DIR is CHECKPOINTS_DIR/NAME%(default).0s")
    p.add_argument("--checkpoints_dir", default="./checkpoints", help="folder of the experiments (with --name)")
    p.add_argument("--inception_weights", default=DEFAULT_INCEPTION_WEIGHTS,
                   help="pytorch-fid's FID Inception weights (pt_inception-2015-12-05-6726825d.pth, downloaded "
                        "when missing) or a Jittor .pkl with the same keys")
    add_download_option(p)
    p.add_argument("--fid_batch_size", type=positive_int, default=50, help="images per Inception batch")
    p.add_argument("--resize_to", default=None, metavar="WxH",
                   help="resize every image (generated and reference, bicubic) to this size before Inception; "
                        "default: none (Inception resizes to 299x299 itself, as pytorch-fid)%(default).0s")
    p.add_argument("--average_best", type=int, default=0, metavar="K",
                   help="after ranking, average the K (>= 2) best checkpoints and score the average")
    p.add_argument("--keep_images", default=None, metavar="DIR",
                   help="keep each checkpoint's generated images in DIR/TAG (default: deleted after scoring)%(default).0s")
    p.add_argument("--recompute", action="store_true", help="score every checkpoint again, ignoring stored FIDs")
    g = p.add_argument_group("generation (as test_phase.py)")
    g.add_argument("--seed", type=int, default=0, help="generation seed, the same for every checkpoint")
    g.add_argument("--batchSize", type=positive_int, default=1, help="label maps per generation batch")
    g.add_argument("--nThreads", type=non_negative_int, default=0, help="label-loading worker processes")
    g.add_argument("--max_dataset_size", type=positive_int, default=None, help="use only the first N label maps%(default).0s")
    g.add_argument("--gpu", choices=device.GPU_MODES, default="auto", help="auto, on or off (CPU)")
    g.add_argument("--no_ema", action="store_true",
                   help="score the raw generator G even where a checkpoint has the EMA generator G_ema "
                        "(--ema_decay), which is scored by default")
    return p


def experiment_folder(args):
    """(checkpoints_dir, name, tags text) from the positional arguments and --name."""
    if args.name is not None:
        if len(args.where) != 1:
            raise OptionError("with --name give only the tags after TEST_LABELS (no CKPT_DIR).")
        return args.checkpoints_dir, args.name, args.where[0]
    if len(args.where) != 2:
        raise OptionError("give CKPT_DIR and the tags (e.g. checkpoints/NAME 270-310), or the tags and --name NAME.")
    folder = os.path.normpath(args.where[0])
    if not os.path.isdir(folder):
        raise CheckpointError(f"{folder}: experiment folder not found.")
    return os.path.dirname(folder) or ".", os.path.basename(folder), args.where[1]


def photo_folder(path):
    """TRAIN_IMGS itself, or TRAIN_IMGS/imgs when it is a training folder."""
    inner = os.path.join(path, "imgs")
    return inner if os.path.isdir(inner) else path


def write_ranking(folder, record, ranked):
    from util.core.checkpoint import write_text
    from util.metrics.selection import ranking_csv
    record = dict(record, ranking=[r["tag"] for r in ranked])
    write_text(os.path.join(folder, RANKING_NAME + ".json"), json.dumps(record, indent=1))
    write_text(os.path.join(folder, RANKING_NAME + ".csv"), ranking_csv(ranked))


def main(argv=None):
    args = build_parser().parse_args(argv)
    distributed.require_single_process("util/fid.py")
    checkpoints_dir, name, tags_text = experiment_folder(args)
    from util.metrics.selection import parse_tags
    tags = parse_tags(tags_text)
    if args.average_best == 1 or args.average_best < 0:
        raise OptionError("--average_best needs K >= 2 checkpoints (0: no averaging).")
    from util.metrics import fid_stats
    resize_to = fid_stats.parse_size(args.resize_to)
    train_imgs = photo_folder(args.train_imgs)
    fid_stats.image_files(train_imgs)  # a bad reference folder fails before anything runs
    use_cuda = device.setup(args.gpu)

    from options import test_options
    from options.base_options import replaced
    from util.core import checkpoint
    from models import averaging
    from models.networks import network_names
    from models.generation import generator_files, load_generator
    from util.metrics.selection import file_signature, generate_and_score, rank, ranking_table

    folder = os.path.join(checkpoints_dir, name)
    work_dir = os.path.join(folder, "fid_eval")
    opt, _, notes = test_options.from_values(
        input_path=args.test_labels, output_path=work_dir, name=name, checkpoints_dir=checkpoints_dir,
        seed=args.seed, gpu=args.gpu, batchSize=args.batchSize, nThreads=args.nThreads,
        max_dataset_size=args.max_dataset_size, no_ema=args.no_ema)
    available = [t for t in tags if os.path.isfile(checkpoint.net_path(folder, t, "G"))]
    missing = [t for t in tags if t not in available]
    if missing:
        print(f"no checkpoint for {len(missing)} of {len(tags)} tags, skipped: {', '.join(missing)}")
    if not available:
        raise CheckpointError(f"{folder}: none of the tags {tags_text} has a checkpoint "
                              f"({checkpoint.available_hint(folder)}).")

    extractor = fid_stats.load_extractor(args.inception_weights, args.fid_batch_size, args.no_download)
    reference, where = fid_stats.reference_statistics(extractor, train_imgs, os.path.join(folder, "fid_stats"),
                                                      resize_to)
    print(where)
    if reference.count < fid_stats.FEATURE_DIMS:
        print(f"note: {reference.count} reference images for {fid_stats.FEATURE_DIMS} feature dimensions: the "
              f"covariance is singular and FIDs are only comparable with FIDs of the same setting")
    setting = {"labels": os.path.abspath(args.test_labels), "reference": os.path.abspath(train_imgs),
               "reference_count": reference.count, "seed": args.seed, "resize_to": args.resize_to,
               "max_dataset_size": args.max_dataset_size, "inception_sha1": extractor.weights_digest}
    ranking_path = os.path.join(folder, RANKING_NAME + ".json")
    stored = read_ranking(folder)  # {} when absent or unreadable: everything is scored again
    results = {} if args.recompute or stored.get("setting") != setting else \
        {r["tag"]: r for r in stored.get("results", [])}
    for note in notes:
        print(note)
    print(f"scoring {len(available)} checkpoints of {folder} on {'GPU' if use_cuda else 'CPU'}: "
          f"labels {args.test_labels}, reference {train_imgs}")

    def score(tag):
        tag_opt = replaced(opt, which_epoch=tag)  # the shared opt stays as parsed
        files = generator_files(tag_opt, network_names(tag_opt, with_discriminator=False))
        generator = files[0]["G"]  # G_ema or G
        used = f"{'EMA generator' if generator != 'G' else 'generator'} {generator}"
        signature = file_signature(checkpoint.net_path(folder, tag, generator))
        old = results.get(tag)
        if old is not None and old.get("signature") == signature and old.get("generator", "G") == generator:
            print(f"  {tag:<16} FID {old['fid']:10.3f}  (stored in {ranking_path}), {used}")
            return
        nets = load_generator(tag_opt, files=files)
        out_dir = os.path.join(args.keep_images, tag) if args.keep_images else os.path.join(work_dir, tag)
        fid = generate_and_score(nets, tag_opt, args.test_labels, out_dir, extractor, reference, resize_to,
                                 desc=f"generating {tag}")
        if not args.keep_images:
            shutil.rmtree(out_dir, ignore_errors=True)
        results[tag] = {"tag": tag, "fid": fid, "signature": signature, "generator": generator}
        print(f"  {tag:<16} FID {fid:10.3f}  ({used}, trace term {fid.method})")
        write_ranking(folder, {"setting": setting, "results": list(results.values())},
                      rank([results[t] for t in results]))

    for tag in available:
        score(tag)
    ranked = rank([results[t] for t in available])
    if args.average_best:
        best = sorted((r["tag"] for r in ranked[:args.average_best]), key=lambda t: (not t.isdigit(), t.zfill(12)))
        if len(best) < 2:
            raise CheckpointError(f"--average_best {args.average_best}: only {len(best)} checkpoint was scored.")
        out_tag = averaging.default_out_tag(best)
        # a stored average of the same, unchanged checkpoints is kept (rewriting it would change its
        # file signature and score it again on every resumed ranking)
        sources = {t: file_signature(checkpoint.net_path(folder, t, "G")) for t in best}
        old = results.get(out_tag)
        out_path = checkpoint.net_path(folder, out_tag, old.get("generator", "G") if old else "G")  # scored file
        if not (old and old.get("sources") == sources and os.path.isfile(out_path)
                and old.get("signature") == file_signature(out_path)):
            for line in averaging.average_tags(folder, best, force=True):
                print(line)
        score(out_tag)
        results[out_tag]["sources"] = sources
        ranked = rank(ranked + [results[out_tag]])
    write_ranking(folder, {"setting": setting, "results": list(results.values())}, ranked)
    shutil.rmtree(work_dir, ignore_errors=True)
    page = write_experiment_page(folder)
    print("\n".join(ranking_table(ranked)))
    print(f"best: {ranked[0]['tag']} (FID {ranked[0]['fid']:.3f}); table: "
          f"{os.path.join(folder, RANKING_NAME + '.csv')} and .json; FID chart: {page}")
    return 0


if __name__ == "__main__":
    run_main(main)
