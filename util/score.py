"""Score a folder of generated images the way the landscape-synthesis challenge does.

    python util/score.py --gen GEN_DIR --labels LABEL_DIR [--segmenter ...]
                         [--train_imgs TRAIN_PHOTOS] [--ref_json MAP.json --ref_dir PHOTOS
                         [--color_transfer reinhard [--save_transferred DIR]]]
                         [--aesthetic X] [--json OUT.json]

Every label map LABEL_DIR/x.png must have its generated image GEN_DIR/x.jpg or
GEN_DIR/x.png. The terms, each computed only when its inputs are given:

mask accuracy (needs a segmenter)
    For each image, (gt == pred).sum() / (H * W), where gt is the label map and
    pred the segmenter's prediction on the generated image; averaged over the
    images. A generated image of another size than its label map is first
    resized to the label map's size (Pillow bicubic); a prediction of another
    size than the label map is resized to it nearest-neighbour.
    Segmenters:
      --segmenter demo --seg_train DIR      fit the built-in demo segmenter
                                            (util/metrics/segmenter.py) on DIR/imgs +
                                            DIR/labels (optionally --save_segmenter FILE)
      --segmenter demo --segmenter_file F   load a demo segmenter saved before
      --segmenter MODULE:FACTORY [--segmenter_weights PATH]
                                            any other model: MODULE is imported
                                            (e.g. my_models.segformer), and
                                            FACTORY(weights_path, label_nc) must
                                            return an object whose
                                            predict(rgb) takes an HxWx3 uint8 RGB
                                            array and returns an HxW array of
                                            class ids 0..label_nc-1 (weights_path
                                            is None without --segmenter_weights).
                                            Jittor is set up (--gpu) before the
                                            module is imported.
    Without a segmenter, mask accuracy and both formulas are unavailable.

FID (needs --train_imgs and the Inception weights)
    Frechet Inception Distance between the generated images (those paired with
    a label map) and the photos of --train_imgs, with pytorch-fid's FID
    InceptionV3 (util/metrics/fid_stats.py). A missing weights file is downloaded
    from pytorch-fid's releases, SHA-256 checked (--no_download: never). When the
    file at the default --inception_weights cannot be had, FID is reported
    unavailable with where to get it; for a file given explicitly with
    --inception_weights that is an error.

style similarity (needs --ref_json and --ref_dir)
    --ref_json maps each label map's file name to a reference photo in --ref_dir,
    e.g. {"x.png": "train_photo.jpg", ...}; every label map needs an entry.
    Per image: colour histograms of the generated and the reference image, each
    three 256-bin per-channel histograms of the RGB uint8 pixels (R, G, B), each
    normalised to sum 1 and concatenated (768 values); style_corr is their
    Pearson correlation (= OpenCV compareHist HISTCMP_CORREL), in [-1, 1], and
    style_similarity = (style_corr + 1) / 2, in [0, 1]. Means over images.

colour transfer (--color_transfer reinhard; needs --ref_json and --ref_dir)
    Each generated image is also colour-transferred, in memory, toward its
    reference photo (data/colour_transfer.py: Reinhard et al. 2001, each CIE
    LAB channel's mean and standard deviation matched to the reference's).
    When the reference photo has a label map (DIR/imgs/x.jpg ->
    DIR/labels/x.png), the transfer is made per class region: each class that
    the input label map and the reference's label map both show (at least 16
    pixels in each) is matched to the same class of the reference, and the
    pixels of other classes are kept; otherwise, or when no class is shared,
    the whole image is matched to the whole reference. Style similarity and
    mask accuracy are then reported for the images as generated and as
    transferred, side by side, with how many images used each mode. FID and
    the formulas use the images as generated only. --save_transferred DIR
    writes the transferred images as DIR/x.png (lossless: scoring DIR again
    gives the transferred column).

aesthetic (--aesthetic X)
    There is no aesthetic model here: pass a score 0..10 computed elsewhere.

Formulas (util/metrics/scoring.py)
    main track:  mask_acc * (aesthetic/10*0.5 + (100-FID)/100*0.5)
    style track: mask_acc * (aesthetic*0.2 + (style*0.5+0.5)*0.3 + (100-FID)/100*0.5)
    with style the mean raw correlation. The style track's aesthetic*0.2 (not
    /10) is the competition's formula as written. A formula with missing terms
    has no value and names them; its "partial" value counts the missing
    additive terms as 0 (never as FID = 0) and is labelled as such.

Output: a table on stdout saying which terms were available; with --json, a
JSON file with every term, the formulas, the colour transfer's comparison
("color_transfer") and the per-image values.
"""

import argparse
import importlib
import json
import os
import sys

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from data.folders import find_label_dir, test_labels  # noqa: E402
from data import colour_transfer, references  # noqa: E402
from data.image_io import read_image, read_label, save_image  # noqa: E402
from util.metrics.segmenter import DemoSegmenter, find_generated, fit_from_folder, mask_accuracy  # noqa: E402
from options.base_options import add_download_option, positive_int  # noqa: E402
from options.train_options import DEFAULT_INCEPTION_WEIGHTS  # noqa: E402
from util.core import device  # noqa: E402
from util.metrics import scoring  # noqa: E402
from util.metrics.quality import at_label_size  # noqa: E402
from util.core.cli import run_main  # noqa: E402
from util.core.errors import DatasetError, OptionError, WeightsFileError  # noqa: E402


RESIZE_NOTE = ("generated image resized to the label map's size (Pillow bicubic) when they differ; "
               "prediction resized to it nearest-neighbour when they differ")


def aesthetic_score(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number 0..10, got {text!r}") from None
    if not 0.0 <= value <= 10.0:
        raise argparse.ArgumentTypeError(f"the aesthetic score is on a 0..10 scale, got {value:g}")
    return value


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gen", required=True,
                   help="folder of generated images, named after the label maps (x.jpg or x.png)")
    p.add_argument("--labels", required=True, help="folder of the input label maps (single-channel class-id PNGs)")
    p.add_argument("--label_nc", type=positive_int, default=29, help="number of classes")
    p.add_argument("--json", default=None, metavar="OUT.json",
                   help="write every term, the formulas and the per-image values to this JSON file")
    p.add_argument("--gpu", choices=device.GPU_MODES, default="auto",
                   help="where Jittor runs (FID, plug-in segmenters): auto = the GPU if there is one")

    g = p.add_argument_group("mask accuracy")
    g.add_argument("--segmenter", default=None, metavar="demo|MODULE:FACTORY",
                   help="'demo' for the built-in demo segmenter, or MODULE:FACTORY for any other model, where "
                        "FACTORY(weights_path, label_nc) returns an object with predict(HxWx3 uint8 RGB) -> HxW "
                        "class ids. Default: none, unless --seg_train/--segmenter_file imply demo")
    g.add_argument("--seg_train", default=None, metavar="DIR",
                   help="demo segmenter: fit it on DIR/imgs and DIR/labels (e.g. the training set)")
    g.add_argument("--segmenter_file", default=None, metavar="FILE",
                   help="demo segmenter: load one saved with --save_segmenter instead of fitting it")
    g.add_argument("--save_segmenter", default=None, metavar="FILE",
                   help="demo segmenter: save the segmenter fitted with --seg_train to FILE (.npz) for reuse")
    g.add_argument("--segmenter_weights", default=None, metavar="PATH",
                   help="MODULE:FACTORY segmenter: the weights path passed to FACTORY (None when not given)")

    g = p.add_argument_group("FID")
    g.add_argument("--train_imgs", default=None, metavar="DIR",
                   help="folder of the training photos, the FID's reference set; without it FID is unavailable")
    g.add_argument("--inception_weights", default=None, metavar="PATH",
                   help=f"pytorch-fid's FID Inception weights (default {DEFAULT_INCEPTION_WEIGHTS}), downloaded "
                        f"when missing (--no_download: not); if the default file cannot be had FID is reported "
                        f"unavailable, a path given here must exist or be downloaded")
    add_download_option(g)
    g.add_argument("--stats_cache", default=None, metavar="DIR",
                   help="keep the reference statistics of --train_imgs in DIR and reuse them while the folder, "
                        "weights and resize are unchanged (default: not cached, recomputed every run)")
    g.add_argument("--fid_resize", default=None, metavar="WxH",
                   help="resize every image (generated and reference, bicubic) to WxH before the Inception "
                        "network, which then scales to 299x299 (default: no extra resize)")
    g.add_argument("--fid_batch_size", type=positive_int, default=50, help="images per Inception batch")

    g = p.add_argument_group("style similarity")
    g.add_argument("--ref_json", default=None, metavar="FILE",
                   help='JSON {"label_name.png": "reference_photo.jpg", ...}: a reference photo in --ref_dir for '
                        "every label map; style_corr is the Pearson correlation of the per-channel 256-bin RGB "
                        "histograms (each normalised to sum 1, concatenated: 768 values), as OpenCV's HISTCMP_CORREL")
    g.add_argument("--ref_dir", default=None, metavar="DIR", help="folder of the reference photos named in --ref_json")
    g.add_argument("--color_transfer", choices=colour_transfer.METHODS, default="none",
                   help="reinhard: also score every generated image colour-transferred toward its reference photo "
                        "(per class region when the photo has a label map, else the whole image) and report style "
                        "similarity and mask accuracy side by side; FID stays on the images as generated. "
                        "Needs --ref_json/--ref_dir (default: none)")
    g.add_argument("--save_transferred", default=None, metavar="DIR",
                   help="with --color_transfer reinhard: write the transferred images to DIR/x.png")

    g = p.add_argument_group("aesthetic")
    g.add_argument("--aesthetic", type=aesthetic_score, default=None, metavar="X",
                   help="aesthetic score 0..10 computed elsewhere (there is no aesthetic model here)")
    return p


# -- segmenters ---------------------------------------------------------------------------------------------------

def check_segmenter_options(args):
    """Return 'demo', 'plugin' or None, refusing flag combinations that make no sense."""
    if args.segmenter is None and (args.seg_train or args.segmenter_file):
        args.segmenter = "demo"
    if args.segmenter is None:
        if args.segmenter_weights or args.save_segmenter:
            raise OptionError("--segmenter_weights/--save_segmenter need --segmenter (MODULE:FACTORY or demo).")
        return None
    if args.segmenter == "demo":
        if bool(args.seg_train) == bool(args.segmenter_file):
            raise OptionError("--segmenter demo needs exactly one of --seg_train DIR (fit it) or "
                              "--segmenter_file FILE (load a saved one).")
        if args.save_segmenter and not args.seg_train:
            raise OptionError("--save_segmenter saves a segmenter fitted with --seg_train; none is fitted here.")
        if args.segmenter_weights:
            raise OptionError("--segmenter_weights is for MODULE:FACTORY segmenters; the demo segmenter uses "
                              "--seg_train or --segmenter_file.")
        return "demo"
    module, sep, factory = args.segmenter.partition(":")
    if not sep or not module or not factory:
        raise OptionError(f"--segmenter must be 'demo' or MODULE:FACTORY (e.g. my_models.segformer:build), "
                          f"got {args.segmenter!r}.")
    if args.seg_train or args.segmenter_file or args.save_segmenter:
        raise OptionError("--seg_train/--segmenter_file/--save_segmenter are for --segmenter demo only.")
    if args.segmenter_weights and not os.path.exists(args.segmenter_weights):
        raise WeightsFileError(f"{args.segmenter_weights}: segmenter weights not found (--segmenter_weights).")
    return "plugin"


def load_plugin(spec, weights_path, label_nc):
    """Import MODULE:FACTORY and build the segmenter; every failure to find it is an ``OptionError``."""
    module_name, _, factory_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        missing = getattr(err, "name", None)
        if isinstance(err, ModuleNotFoundError) and missing and (module_name == missing
                                                                 or module_name.startswith(missing + ".")):
            raise OptionError(f"--segmenter {spec}: no module named {module_name!r} (it must be importable "
                              f"from the repository root or PYTHONPATH).") from None
        raise OptionError(f"--segmenter {spec}: importing {module_name!r} failed: {err}") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise OptionError(f"--segmenter {spec}: module {module_name!r} ({getattr(module, '__file__', '?')}) has no "
                          f"callable {factory_name!r}.")
    seg = factory(weights_path, label_nc)
    if not callable(getattr(seg, "predict", None)):
        raise OptionError(f"--segmenter {spec}: {factory_name}(weights_path, label_nc) returned "
                          f"{type(seg).__name__}, which has no predict(rgb) method.")
    return seg


def build_segmenter(kind, args):
    """(segmenter, description) for the chosen kind; the demo one is fitted or loaded here."""
    if kind == "demo" and args.segmenter_file:
        return DemoSegmenter.load(args.segmenter_file), f"demo segmenter loaded from {args.segmenter_file}"
    if kind == "demo":
        img_dir = os.path.join(args.seg_train, "imgs")
        if not os.path.isdir(img_dir):
            raise DatasetError(f"{args.seg_train}: no imgs/ folder; --seg_train needs DIR/imgs and DIR/labels.")
        print(f"fitting the demo segmenter on {args.seg_train} ...", flush=True)
        seg = fit_from_folder(img_dir, find_label_dir(args.seg_train), args.label_nc)
        text = f"demo segmenter fitted on {args.seg_train}"
        if args.save_segmenter:
            seg.save(args.save_segmenter)
            text += f", saved to {args.save_segmenter}"
        return seg, text
    device.setup(args.gpu)  # the plug-in may import Jittor
    seg = load_plugin(args.segmenter, args.segmenter_weights, args.label_nc)
    return seg, f"{args.segmenter} ({'weights ' + args.segmenter_weights if args.segmenter_weights else 'no weights'})"


def prediction(seg, spec, image, gen_path, label_nc):
    pred = np.asarray(seg.predict(image))
    if pred.ndim != 2:
        raise OptionError(f"--segmenter {spec}: predict() on {gen_path} returned shape {pred.shape}, "
                          f"expected an HxW class-id map.")
    if pred.size and (pred.min() < 0 or pred.max() >= label_nc):
        raise OptionError(f"--segmenter {spec}: predict() on {gen_path} returned class ids outside "
                          f"0..{label_nc - 1} ({pred.min()}..{pred.max()}).")
    return pred


# -- style references and colour transfer -----------------------------------------------------------------------

TRANSFER_MODES = (colour_transfer.REGIONS, colour_transfer.WHOLE_IMAGE)
FID_TRANSFER_NOTE = "FID and the formulas use the images as generated only (no colour transfer)"


def check_transfer_options(args):
    """Refuse --color_transfer/--save_transferred without what they need."""
    if args.color_transfer != "none" and not args.ref_json:
        raise OptionError(f"--color_transfer {args.color_transfer} needs --ref_json and --ref_dir: each generated "
                          f"image is transferred toward its reference photo.")
    if args.save_transferred and args.color_transfer == "none":
        raise OptionError("--save_transferred writes the colour-transferred images; it needs --color_transfer "
                          "reinhard.")


def score_image(args, seg, gen_path, label_path, reference_path):
    """The per-image row: mask accuracy and style correlation of the generated image and, with
    --color_transfer, of its colour-transferred version too (and how it was transferred)."""
    image, row = read_image(gen_path), {"generated": gen_path}
    transferring = args.color_transfer != "none"
    label = read_label(label_path, args.label_nc) if seg is not None or transferring else None
    transferred = None
    if reference_path is not None:
        reference = read_image(reference_path)
        row["reference"] = reference_path
        row["style_corr"] = scoring.style_correlation(image, reference)
        if transferring:
            result, row["reference_label"] = references.transfer_toward(
                args.color_transfer, image, label, reference_path, args.label_nc, reference)
            transferred = result.image
            row["transfer_mode"], row["transfer_classes"] = result.mode, list(result.classes)
            row["style_corr_transferred"] = scoring.style_correlation(transferred, reference)
            if args.save_transferred:
                stem = os.path.splitext(os.path.basename(label_path))[0]
                save_image(os.path.join(args.save_transferred, stem + ".png"), transferred)
    if seg is not None:
        for key, version in (("mask_accuracy", image), ("mask_accuracy_transferred", transferred)):
            if version is not None:
                pred = prediction(seg, args.segmenter, at_label_size(version, label), gen_path, args.label_nc)
                row[key] = mask_accuracy(pred, label)
    return row


def transfer_summary(args, per_image, mask_acc, style):
    """The result's "color_transfer" part: the terms as generated and as transferred, and the modes used."""
    if args.color_transfer == "none":
        return {"method": "none", "available": False,
                "reason": "not requested (--color_transfer reinhard, with --ref_json and --ref_dir)"}
    rows = list(per_image.values())
    style_t = float(np.mean([r["style_corr_transferred"] for r in rows]))
    mask_t = float(np.mean([r["mask_accuracy_transferred"] for r in rows])) if mask_acc is not None else None
    return {"method": args.color_transfer, "available": True, "reason": None,
            "description": f"Reinhard et al. 2001: CIE LAB per-channel mean and std matched to the reference photo, "
                          f"per class region shown by both the label map and the reference's label map (at least "
                          f"{colour_transfer.DEFAULT_MIN_PIXELS} px each), else the whole image",
            "images_per_mode": {mode: sum(r["transfer_mode"] == mode for r in rows) for mode in TRANSFER_MODES},
            "as_generated": {"mask_accuracy": mask_acc, "style_corr": style,
                             "style_similarity": scoring.style_similarity(style)},
            "transferred": {"mask_accuracy": mask_t, "style_corr": style_t,
                            "style_similarity": scoring.style_similarity(style_t)},
            "fid": FID_TRANSFER_NOTE, "saved_to": args.save_transferred}

# -- FID ------------------------------------------------------------------------------------------------------------

def prepare_fid(args):
    """(weights path, resize, None) when FID can run, or (None, None, reason) when it is unavailable.

    Sets up Jittor (``--gpu``) first: util.metrics.fid_stats is imported only after that.
    """
    if not args.train_imgs:
        return None, None, "not requested (give --train_imgs, the training photos, to compute it)"
    if not os.path.isdir(args.train_imgs):
        raise DatasetError(f"{args.train_imgs}: training photo folder (--train_imgs) not found.")
    device.setup(args.gpu)
    from util.metrics import fid_stats

    resize = fid_stats.parse_size(args.fid_resize)
    path = args.inception_weights or DEFAULT_INCEPTION_WEIGHTS
    try:
        return fid_stats.ensure_fid_weights(path, args.no_download), resize, None
    except WeightsFileError as err:
        if args.inception_weights:
            raise
        return None, None, f"unavailable: {err}"


def compute_fid(args, weights, resize, gen_files):
    """FID of ``gen_files`` against the photos of --train_imgs (a ``fid_stats.FrechetDistance``, which names how
    its trace term was computed), and the number of those photos."""
    from util.metrics import fid_stats

    extractor = fid_stats.load_extractor(weights, args.fid_batch_size)
    reference, where = fid_stats.reference_statistics(extractor, args.train_imgs, args.stats_cache, resize)
    print(where, flush=True)
    generated = fid_stats.statistics_of(fid_stats.folder_features(extractor, gen_files, resize,
                                                                  f"features of {args.gen}"))
    return fid_stats.frechet_distance(generated, reference), reference.count


# -- report ---------------------------------------------------------------------------------------------------------

def _fmt(value, digits=4):
    return "-" if value is None else f"{value:.{digits}f}"


def print_report(result):
    terms, formulas, transfer = result["terms"], result["formulas"], result["color_transfer"]
    after = transfer["transferred"] if transfer["available"] else None

    def second(value):
        """With colour transfer, a second value column: the term on the transferred images."""
        return "" if after is None else f" {value:>12}"

    print(f"\n{result['num_images']} generated images in {result['gen']} (label maps {result['labels']})")
    if after is not None:
        print(f"  {'':<17} {'as generated':>12}{second('transferred')}")
    rows = [("mask accuracy", terms["mask_accuracy"], "value", "mask_accuracy"), ("FID", terms["fid"], "value", None),
            ("style_corr", terms["style"], "style_corr", "style_corr"),
            ("style_similarity", terms["style"], "style_similarity", "style_similarity"),
            ("aesthetic", terms["aesthetic"], "value", None)]
    for name, term, key, after_key in rows:
        note = term.get("source", "") if term["available"] else term["reason"]
        value_after = after.get(after_key) if after is not None and after_key else None
        print(f"  {name:<17} {_fmt(term.get(key)):>12}{second(_fmt(value_after))}  {note}")
    for name, f in formulas.items():
        print(f"  {name:<17} {_fmt(f['value']):>12}{second('')}  = {f['formula']}")
        if f["missing"]:
            partial = ("" if f["partial_value"] is None else
                       f"; PARTIAL value with the missing terms counted as 0: {f['partial_value']:.4f}")
            print(f"  {'':<17} {'':>12}{second('')}  unavailable, missing: {', '.join(f['missing'])}{partial}")
    if after is not None:
        modes = transfer["images_per_mode"]
        print(f"  colour transfer ({transfer['method']}) toward the reference photos: "
              f"{modes[colour_transfer.REGIONS]} image(s) per class region, "
              f"{modes[colour_transfer.WHOLE_IMAGE]} whole image; {transfer['fid']}")
        if transfer["saved_to"]:
            print(f"  transferred images written to {transfer['saved_to']}")


def main(argv=None):
    args = build_parser().parse_args(argv)
    kind = check_segmenter_options(args)
    if bool(args.ref_json) != bool(args.ref_dir):
        raise OptionError("--ref_json and --ref_dir go together (the mapping and the folder of reference photos).")
    check_transfer_options(args)
    if not os.path.isdir(args.gen):
        raise DatasetError(f"{args.gen}: generated image folder (--gen) not found.")

    # Everything cheap is checked before anything slow starts.
    label_paths = test_labels(args.labels)
    names = [os.path.basename(p) for p in label_paths]
    gen_paths = [find_generated(args.gen, os.path.splitext(n)[0]) for n in names]
    refs = references.resolve(args.ref_json, args.ref_dir, names).photos if args.ref_json else None
    weights, fid_resize, fid_reason = prepare_fid(args)

    seg, seg_text = build_segmenter(kind, args) if kind else (None, None)
    per_image = {}
    if seg is not None or refs is not None:
        from tqdm import tqdm
        for name, label_path, gen_path in tqdm(list(zip(names, label_paths, gen_paths)), desc="scoring images",
                                               unit="img", file=sys.stderr, dynamic_ncols=True, leave=False):
            per_image[name] = score_image(args, seg, gen_path, label_path, refs[name] if refs is not None else None)

    def mean_of(key):
        return float(np.mean([row[key] for row in per_image.values()]))

    mask_acc = mean_of("mask_accuracy") if seg is not None else None
    style = mean_of("style_corr") if refs is not None else None
    fid = fid_count = None
    if weights:
        fid, fid_count = compute_fid(args, weights, fid_resize, gen_paths)

    terms = {
        "mask_accuracy": {"available": mask_acc is not None, "value": mask_acc, "source": seg_text,
                          "resize": RESIZE_NOTE if seg is not None else None,
                          "reason": None if seg is not None else "unavailable: no segmenter (give --segmenter)"},
        "fid": {"available": fid is not None, "value": fid, "reason": fid_reason,
                "source": f"{len(gen_paths)} generated vs {fid_count} photos in {args.train_imgs}, weights {weights}, "
                          f"trace term {fid.method}" if fid is not None else None,
                "trace_term": fid.method if fid is not None else None},
        "style": {"available": style is not None, "style_corr": style,
                  "style_similarity": None if style is None else scoring.style_similarity(style),
                  "source": f"reference photos of {args.ref_json}" if refs else None,
                  "histogram": scoring.HISTOGRAM_NOTE,
                  "reason": None if refs else "unavailable: give --ref_json and --ref_dir"},
        "aesthetic": {"available": args.aesthetic is not None, "value": args.aesthetic,
                      "source": "given with --aesthetic" if args.aesthetic is not None else None,
                      "reason": None if args.aesthetic is not None else "unavailable: give --aesthetic X (0..10)"},
    }
    result = {"gen": args.gen, "labels": args.labels, "num_images": len(names),
              "available_terms": [k for k, t in terms.items() if t["available"]],
              "terms": terms,
              "formulas": scoring.evaluate_formulas(mask_acc, args.aesthetic, fid, style),
              "color_transfer": transfer_summary(args, per_image, mask_acc, style),
              "per_image": per_image}
    print_report(result)
    if args.json:
        from util.core.checkpoint import write_text
        write_text(args.json, json.dumps(result, indent=2))
        print(f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    run_main(main)
