"""Score generated demo images and write the demo's comparison page.

    python -m util.demo_report --data DEMO_DIR --generated GEN_DIR --html results/demo/index.html

Fits the demo segmenter on DEMO_DIR/train, segments every generated image of
GEN_DIR, and prints its mask accuracy against the input label maps
(DEMO_DIR/test/labels). For scale it also prints the segmenter's accuracy on
the real held-out photos (the ceiling) and on a constant image of the mean
training colour (the floor). The page shows label | generated | ground truth.
"""

import argparse
import os
import sys

import numpy as np

from util.metrics import segmenter
from data.folders import test_labels
from data.image_io import read_image, read_label, save_image
from data.labels import colorize
from util.core import isa
from util.core.cli import run_main
from models.training_page import comparison_page


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="demo dataset folder (with train/ and test/)")
    p.add_argument("--generated", required=True, help="folder of generated images, named after the test label maps")
    p.add_argument("--html", required=True, help="path of the comparison page to write")
    p.add_argument("--label_nc", type=int, default=29, help="number of classes")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    seg = segmenter.fit_from_folder(os.path.join(args.data, "train", "imgs"),
                                    os.path.join(args.data, "train", "labels"), args.label_nc)
    page_dir = os.path.dirname(os.path.abspath(args.html))
    vis_dir = os.path.join(page_dir, "labels_vis")
    mean_colour = np.mean([read_image(p).reshape(-1, 3).mean(0)
                           for p, _ in segmenter.paired_files(os.path.join(args.data, "train", "imgs"),
                                                              os.path.join(args.data, "train", "labels"))], 0)
    acc_gen, acc_real, acc_flat, rows = [], [], [], []
    for label_path in test_labels(os.path.join(args.data, "test", "labels")):
        stem = os.path.splitext(os.path.basename(label_path))[0]
        gt = read_label(label_path, args.label_nc)
        gen_path = segmenter.find_generated(args.generated, stem)
        acc_gen.append(segmenter.mask_accuracy(seg.predict(read_image(gen_path)), gt))
        real_path = segmenter.find_generated(os.path.join(args.data, "test", "imgs"), stem)
        acc_real.append(segmenter.mask_accuracy(seg.predict(read_image(real_path)), gt))
        flat = np.broadcast_to(np.rint(mean_colour).astype(np.uint8), gt.shape + (3,)).copy()
        acc_flat.append(segmenter.mask_accuracy(seg.predict(flat), gt))
        save_image(os.path.join(vis_dir, stem + ".png"), colorize(gt, args.label_nc))
        rows.append((f"{stem} ({acc_gen[-1]:.2f})", [os.path.relpath(p, page_dir) for p in
                                                      (os.path.join(vis_dir, stem + ".png"), gen_path, real_path)]))
    comparison_page(args.html, "Demo: label map | generated | ground truth (mask accuracy of the generated image)",
                    rows, ["label map", "generated", "ground truth"])
    print(f"{len(rows)} test images; page: {args.html}")
    print(f"segmenter on real test photos (ceiling): {np.mean(acc_real):.3f}")
    print(f"segmenter on a flat mean-colour image (floor): {np.mean(acc_flat):.3f}")
    print(f"mask accuracy: {np.mean(acc_gen):.3f}")
    print(f"on {isa.process_description()}: a trained model's figures differ between CPU kinds (docs/performance.md)")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    run_main(main)
