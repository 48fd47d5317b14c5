"""Model selection by FID: which checkpoints to rank, generating and scoring one
checkpoint or one seed, and the ranking table.

Used by ``util/fid.py`` (rank checkpoints, optionally average the best) and
``test.py`` (several seeded runs, keep the best). The pure parts
(``parse_tags``, ``run_seeds``, ``rank``, ``ranking_csv``) hold no state;
``generate_and_score`` is the one place that generates a folder and measures
its FID against reference statistics.
"""

import os
import re
import shutil
import sys

from util.core.errors import OptionError
from util.core.seeding import derive_seed

_RANGE = re.compile(r"^(\d+)-(\d+)$")
_TAG = re.compile(r"^[A-Za-z0-9_.]+$")


def parse_tags(text):
    """Checkpoint tags from '270-310', '273,298,299', 'avg_273_299', 'latest' or a comma-separated mix.

    Ranges are inclusive; order is kept, duplicates dropped.
    """
    tags = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        m = _RANGE.match(part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if lo > hi:
                raise OptionError(f"checkpoint range {part!r}: the first epoch must not exceed the last.")
            tags.extend(str(e) for e in range(lo, hi + 1))
        elif _TAG.match(part):
            tags.append(str(int(part)) if part.isdigit() else part)
        else:
            raise OptionError(f"{part!r} is not a checkpoint tag; expected e.g. 270-310, 273,298,299, avg_273_299 "
                              f"or latest.")
    if not tags:
        raise OptionError(f"no checkpoint tags in {text!r}.")
    return list(dict.fromkeys(tags))


def run_seeds(seed, n_runs):
    """Seeds of ``n_runs`` generation runs: the first is ``seed`` itself (so one run equals
    test_phase.py --seed SEED), the others are derived from (seed, run index)."""
    return [int(seed)] + [derive_seed(seed, run) for run in range(1, n_runs)]


def rank(results):
    """Entries ({'tag', 'fid', ...}) sorted by FID, lowest first; ties keep the numeric tag order."""
    def tag_order(tag):
        return (0, int(tag), "") if str(tag).isdigit() else (1, 0, str(tag))
    return sorted(results, key=lambda r: (r["fid"], tag_order(r["tag"])))


def ranking_table(ranked):
    """Console lines: rank, tag, FID."""
    lines = [f"{'rank':>4}  {'checkpoint':<16} {'FID':>10}"]
    lines += [f"{i:>4}  {r['tag']:<16} {r['fid']:>10.3f}" for i, r in enumerate(ranked, 1)]
    return lines


def ranking_csv(ranked):
    return "rank,checkpoint,fid\n" + "".join(f"{i},{r['tag']},{r['fid']:.6f}\n" for i, r in enumerate(ranked, 1))


def file_signature(path):
    """(size, mtime_ns) of a file: a stored FID is reused only while its checkpoint file is unchanged."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def generate_and_score(nets, opt, labels_dir, out_dir, extractor, reference, resize_to=None, pure=None,
                       desc="generating", style=None):
    """Generate every label map of ``labels_dir`` into ``out_dir`` (with ``opt.seed``) and return the
    FID of the written images against ``reference``; ``out_dir`` is emptied first."""
    from tqdm import tqdm

    from data.folders import test_labels
    from util.metrics import fid_stats
    from models.generation import generate_folder

    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    total = len(test_labels(labels_dir, opt.max_dataset_size))
    with tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True, file=sys.stderr, leave=False) as bar:
        written = generate_folder(nets, opt, labels_dir, out_dir, opt.image_format, opt.jpeg_quality,
                                  progress=bar, pure=pure, style=style)
    features = fid_stats.folder_features(extractor, written, resize_to, desc="Inception features")
    return fid_stats.frechet_distance(fid_stats.statistics_of(features), reference)
