"""FID of two image folders, as ``python -m pytorch_fid A B`` computes it.

    python util/fid_folders.py A B
    python util/fid_folders.py --save_stats FOLDER OUT.npz

A and B are folders of images (.jpg, .jpeg, .png, .bmp, .webp, any case;
not recursive; pytorch-fid also reads .pgm, .ppm and .tif files, which are
not counted here) or .npz files of statistics in pytorch-fid's format
(``mu``, the mean of the 2048 pool_3 features, and ``sigma``, their
covariance), such as ``python -m pytorch_fid --save-stats`` or --save_stats
here writes them; a .npz is recognised by its name, as in pytorch-fid. The
features are pytorch-fid's (its FID InceptionV3 weights, its image reading,
scaling and resize; util/metrics/fid_stats.py), so the value is the one
pytorch-fid prints for the same files, up to the float32 rounding of the
features (the tests hold it within 0.1 %).

Printed: where each side's statistics come from and of how many images, the
FID, and how its trace term tr(sqrtm(S1 S2)) was computed: "sqrtm" (as
pytorch-fid), "sqrtm+eps" (pytorch-fid's fallback for a singular product,
which adds 1e-6 to the covariances' diagonals) or "eigen" (from symmetric
eigenproblems, where pytorch-fid stops with "Imaginary component"; see
util/metrics/fid_stats.py).

With --save_stats, the statistics of FOLDER are written to OUT.npz (mu and
sigma, as pytorch-fid writes them) and nothing else is computed; an existing
OUT.npz is not overwritten.
"""

import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from options.base_options import HelpFormatter, add_download_option, positive_int  # noqa: E402
from options.train_options import DEFAULT_INCEPTION_WEIGHTS  # noqa: E402
from util.core import device  # noqa: E402
from util.core.cli import run_main  # noqa: E402
from util.core.errors import DatasetError, OptionError  # noqa: E402

STATS_SUFFIX = ".npz"


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("paths", nargs=2, metavar="PATH",
                   help="two image folders or .npz statistics files (mu, sigma) to compare; with --save_stats: "
                        "the image folder and the .npz to write")
    p.add_argument("--save_stats", action="store_true",
                   help="write the statistics of the first PATH (a folder) to the second (a new .npz, in "
                        "pytorch-fid's format) instead of computing an FID")
    p.add_argument("--inception_weights", default=DEFAULT_INCEPTION_WEIGHTS,
                   help="pytorch-fid's FID Inception weights (pt_inception-2015-12-05-6726825d.pth) or a Jittor "
                        ".pkl with the same keys; not read when both PATHs are .npz files")
    p.add_argument("--batch_size", type=positive_int, default=50, help="images per Inception batch")
    p.add_argument("--resize_to", default=None, metavar="WxH",
                   help="resize every image of a folder (bicubic) to this size before Inception; default: none "
                        "(Inception resizes to 299x299 itself, as pytorch-fid). Statistics read from a .npz "
                        "are used as they are%(default).0s")
    p.add_argument("--gpu", choices=device.GPU_MODES, default="auto",
                   help="run Inception on the GPU: auto (when there is one), on or off (CPU)")
    add_download_option(p)
    return p


def is_statistics_file(path):
    """A .npz path (pytorch-fid's rule: by the name's ending)."""
    return path.lower().endswith(STATS_SUFFIX)


def check_source(path, fid_stats):
    """Fail early and clearly on a PATH that is neither a folder of images nor a .npz of statistics.

    Returns the folder's image files, or the Statistics read from the .npz.
    """
    if is_statistics_file(path):
        return fid_stats.read_statistics(path)
    if os.path.isfile(path):
        raise DatasetError(f"{path}: neither a folder of images nor a {STATS_SUFFIX} statistics file.")
    return fid_stats.image_files(path)


def describe(path, stats, from_file):
    if not from_file:
        return f"{stats.count} images in {path}"
    if stats.count is None:
        return f"statistics in {path} (number of images not stored)"
    return f"statistics of {stats.count} images in {path}"


def main(argv=None):
    args = build_parser().parse_args(argv)
    from util.metrics import fid_stats  # Jittor-free until an extractor is loaded

    resize_to = fid_stats.parse_size(args.resize_to)
    if args.save_stats:
        folder, out = args.paths
        if is_statistics_file(folder):
            raise OptionError(f"--save_stats: {folder} is a statistics file; give the image folder first, then "
                              f"the {STATS_SUFFIX} to write.")
        if not is_statistics_file(out):
            raise OptionError(f"--save_stats: the output {out} must end with {STATS_SUFFIX} (statistics files are "
                              f"recognised by that ending).")
        if os.path.exists(out):
            raise OptionError(f"--save_stats: {out} exists; remove it or choose another name.")
    sources = [check_source(path, fid_stats) for path in (args.paths[:1] if args.save_stats else args.paths)]
    if not args.save_stats:  # before any feature is computed: a folder gives pool_3's 2048
        dims = [len(s.mu) if isinstance(s, fid_stats.Statistics) else fid_stats.FEATURE_DIMS for s in sources]
        if dims[0] != dims[1]:
            raise fid_stats.FIDError(f"{args.paths[0]} gives {dims[0]} feature dimensions and {args.paths[1]} "
                                     f"{dims[1]}: statistics of different feature sizes (an image folder gives "
                                     f"Inception's {fid_stats.FEATURE_DIMS} pool_3 features).")

    extractor = None
    stats = []
    for path, source in zip(args.paths, sources):
        if isinstance(source, fid_stats.Statistics):
            stats.append(source)
            continue
        if extractor is None:  # only when a folder needs features
            use_cuda = device.setup(args.gpu)
            extractor = fid_stats.load_extractor(args.inception_weights, args.batch_size, args.no_download)
            print(f"Inception features on {'GPU' if use_cuda else 'CPU'}, weights {args.inception_weights}",
                  flush=True)
        features = fid_stats.folder_features(extractor, source, resize_to, f"features of {path}")
        stats.append(fid_stats.statistics_of(features))

    if args.save_stats:
        written = fid_stats.write_statistics(args.paths[1], stats[0])
        print(f"statistics of {stats[0].count} images in {args.paths[0]} written to {written} (mu, sigma)")
        return 0

    for label, path, source, st in zip("AB", args.paths, sources, stats):
        print(f"{label}: {describe(path, st, isinstance(source, fid_stats.Statistics))}")
        if st.count is not None and st.count <= len(st.mu):
            print(f"   note: {st.count} images for {len(st.mu)} feature dimensions (a singular covariance): "
                  f"compare only with FIDs of as many images")
    fid = fid_stats.frechet_distance(*stats)
    print(f"FID:  {float(fid)}")
    print(f"trace term: {fid.method} ({fid.description})")
    return 0


if __name__ == "__main__":
    run_main(main)
