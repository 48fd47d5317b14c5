"""A small pixel classifier for the demo dataset, and mask accuracy (with ``find_generated``, the
generated image of a label map, as util/score.py and util/demo_report.py pair them).

This module owns ``DemoSegmenter``: it learns, from (photo, label map) pairs,
a Gaussian mixture per landscape class over a few per-pixel features (Lab
colour of a lightly blurred image, the normalised row position and, as
context, the image's mean Lab colour), labels each pixel of a new photo with
the most likely class, then smooths the result with a majority (mode) filter.
The context columns let each Gaussian shift its colour with the photo's global
tone (the demo scenes are lit at midday, golden hour, overcast or dusk), so
one model reads all tones. It needs no external weights; it is meant to
score how well generated images reproduce the classes of their input label
maps on the procedural demo data (``data.demo``). The features are measured
on a blurred image and the fit also sees blurred copies of the photos, so
blurry generated images are still read correctly. Pure NumPy/OpenCV.
"""

import json
import os

import cv2
import numpy as np

from data.folders import match_by_stem
from data.image_io import read_image, read_label
from data.labels import NUM_CLASSES
from util.core.errors import DatasetError, WeightsFileError
from util.core.files import atomic_write

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1 files predate the context columns


def _odd(n):
    n = max(1, int(round(n)))
    return n if n % 2 else n + 1


def pixel_features(image, blur=0.006, row_scale=60.0, context=True):
    """Per-pixel features of an HxWx3 uint8 RGB image as an (H*W, 7) float32 array.

    Columns: L, a, b of the image blurred with a Gaussian of ``blur * H``
    pixels, the row position ``y / (H - 1) * row_scale`` and, with
    ``context``, the mean L, a, b of the whole blurred image (the same in
    every row); without it the array is (H*W, 4).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {image.shape}")
    h, w = image.shape[:2]
    rgb = image.astype(np.float32) / 255.0
    sigma = blur * h
    if sigma > 0:
        rgb = cv2.GaussianBlur(rgb, (0, 0), sigma)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab).reshape(-1, 3)
    rows = np.repeat(np.linspace(0.0, row_scale, h, dtype=np.float32), w)
    columns = [lab, rows[:, None]]
    if context:
        columns.append(np.broadcast_to(lab.mean(0), lab.shape))
    return np.concatenate(columns, 1)


def _kmeans(x, k, rng, iters=20):
    """Plain k-means with k-means++ seeding; returns the cluster index of each row."""
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d = np.min(((x[:, None, :] - np.array(centres)[None]) ** 2).sum(-1), 1)
        if d.sum() <= 0:
            break
        centres.append(x[rng.choice(len(x), p=d / d.sum())])
    centres = np.array(centres)
    assign = np.zeros(len(x), np.int64)
    for _ in range(iters):
        assign = ((x[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
        new = np.array([x[assign == j].mean(0) if np.any(assign == j) else centres[j] for j in range(len(centres))])
        if np.allclose(new, centres):
            break
        centres = new
    return assign


def _mode_filter(pred, classes, size):
    """Replace each pixel by the most frequent class in a ``size`` x ``size`` window."""
    if size <= 1 or len(classes) < 2:
        return pred
    votes = np.stack([cv2.blur((pred == c).astype(np.float32), (size, size), borderType=cv2.BORDER_REFLECT)
                      for c in classes])
    return np.asarray(classes, np.uint8)[votes.argmax(0)]


class DemoSegmenter:
    """Gaussian-mixture pixel classifier for demo landscapes.

    Parameters: ``components`` Gaussians per class at most; ``blur`` the feature
    blur as a fraction of the image height; ``augment_blur`` extra blur sigmas
    (fractions of the height) whose blurred copies are added to the fit data;
    ``mode_size`` the majority-filter window as a fraction of the height
    (0 disables it); ``prior_power`` how strongly class frequencies act as priors;
    ``max_samples`` pixels sampled per class for fitting; ``context`` adds
    the image's mean colour to the features (see ``pixel_features``).
    """

    def __init__(self, label_nc=NUM_CLASSES, components=3, blur=0.006, augment_blur=(0.012, 0.02),
                 mode_size=0.02, prior_power=1.0, max_samples=40000, row_scale=60.0, seed=0, context=True):
        self.config = dict(label_nc=int(label_nc), components=int(components), blur=float(blur),
                           augment_blur=[float(b) for b in augment_blur], mode_size=float(mode_size),
                           prior_power=float(prior_power), max_samples=int(max_samples),
                           row_scale=float(row_scale), seed=int(seed), context=bool(context))
        self.means = self.precisions = self.log_norm = self.comp_class = None

    # -- fitting -----------------------------------------------------------------
    def _features(self, image):
        return pixel_features(image, self.config["blur"], self.config["row_scale"], self.config["context"])

    def fit(self, images, labels):
        """Fit from lists of HxWx3 uint8 photos and HxW uint8 label maps; returns self."""
        cfg = self.config
        if len(images) == 0 or len(images) != len(labels):
            raise ValueError(f"fit needs as many images as labels, and at least one (got {len(images)} and {len(labels)})")
        rng = np.random.default_rng(cfg["seed"])
        counts = np.zeros(cfg["label_nc"], np.float64)  # true pixel counts, for the class priors
        per_class = [[] for _ in range(cfg["label_nc"])]
        cap = max(2000, 4 * cfg["max_samples"] // len(images))  # pixels kept per image, version and class
        for image, label in zip(images, labels):
            label = np.asarray(label)
            if label.shape != np.asarray(image).shape[:2]:
                raise ValueError(f"image {np.asarray(image).shape} and label {label.shape} sizes differ")
            flat = label.reshape(-1)
            counts += np.bincount(flat, minlength=cfg["label_nc"])[:cfg["label_nc"]]
            h = label.shape[0]
            versions = [image] + [cv2.GaussianBlur(np.asarray(image), (0, 0), s * h) for s in cfg["augment_blur"]]
            for version in versions:
                feats = self._features(version)
                for c in np.unique(flat):
                    if c < cfg["label_nc"]:
                        rows = np.flatnonzero(flat == c)
                        if len(rows) > cap:  # bounds memory on big sets; the final sample is drawn below
                            rows = rng.choice(rows, cap, replace=False)
                        per_class[c].append(feats[rows])
        means, covs, log_w, comp_class = [], [], [], []
        priors = np.where(counts > 0, counts / max(counts.sum(), 1), 0) ** cfg["prior_power"]
        priors /= priors[counts > 0].sum() if np.any(counts > 0) else 1
        for c, fs in enumerate(per_class):
            if not fs:
                continue  # absent from the fit data: never predicted
            x = np.concatenate(fs).astype(np.float64)
            if len(x) > cfg["max_samples"]:
                x = x[rng.choice(len(x), cfg["max_samples"], replace=False)]
            k = max(1, min(cfg["components"], len(x) // 200))
            assign = _kmeans(x, k, rng) if k > 1 else np.zeros(len(x), np.int64)
            for j in np.unique(assign):
                xj = x[assign == j]
                cov = np.cov(xj.T) if len(xj) > 1 else np.zeros((x.shape[1],) * 2)
                means.append(xj.mean(0))
                covs.append(cov + np.eye(x.shape[1]) * 1.0)  # floor: one unit of Lab / row scale
                log_w.append(np.log(priors[c] * len(xj) / len(x)))
                comp_class.append(c)
        self._set(np.array(means), np.array(covs), np.array(log_w), np.array(comp_class))
        return self

    def _set(self, means, covs, log_w, comp_class):
        self.means = means.astype(np.float64)
        self.covs = covs.astype(np.float64)
        self.log_w = log_w.astype(np.float64)
        self.comp_class = comp_class.astype(np.int64)
        self.precisions = np.linalg.inv(self.covs)
        _sign, logdet = np.linalg.slogdet(self.covs)
        self.log_norm = self.log_w - 0.5 * logdet

    @property
    def classes(self):
        """Sorted class ids this segmenter can predict (those seen in the fit data)."""
        self._check_fitted()
        return np.unique(self.comp_class)

    def _check_fitted(self):
        if self.means is None:
            raise RuntimeError("DemoSegmenter is not fitted: call fit() or load() first")

    # -- prediction --------------------------------------------------------------
    def class_scores(self, image):
        """Per-class log-likelihood scores, shape (n_classes, H, W), classes as in ``self.classes``."""
        self._check_fitted()
        h, w = np.asarray(image).shape[:2]
        x = self._features(image).astype(np.float64)
        # Every component's quadratic form at once: (x-m)'P(x-m) is linear in [x_i x_j, x_i, 1].
        iu = np.triu_indices(x.shape[1])
        quad = np.concatenate([x[:, iu[0]] * x[:, iu[1]], x, np.ones((len(x), 1))], 1)
        coef = []
        for mean, prec in zip(self.means, self.precisions):
            pair = np.where(iu[0] == iu[1], 1.0, 2.0) * prec[iu]
            coef.append(np.concatenate([pair, -2.0 * prec @ mean, [mean @ prec @ mean]]))
        ll = self.log_norm[:, None] - 0.5 * (np.array(coef) @ quad.T)  # (components, pixels)
        classes = self.classes
        scores = np.empty((len(classes), len(x)))
        for i, c in enumerate(classes):
            part = ll[self.comp_class == c]
            top = part.max(0)
            scores[i] = top + np.log(np.exp(part - top).sum(0))
        return scores.reshape(len(classes), h, w)

    def predict(self, image):
        """Label an HxWx3 uint8 photo: returns an HxW uint8 class-id map."""
        scores = self.class_scores(image)
        classes = self.classes
        pred = classes.astype(np.uint8)[scores.argmax(0)]
        size = _odd(self.config["mode_size"] * pred.shape[0]) if self.config["mode_size"] > 0 else 1
        return _mode_filter(pred, classes, size)

    # -- persistence -------------------------------------------------------------
    def save(self, path):
        """Write the fitted model as a .npz of plain arrays (no pickled code)."""
        self._check_fitted()
        atomic_write(path, lambda f: np.savez(
            f, version=np.array(FORMAT_VERSION), config=np.array(json.dumps(self.config)), means=self.means,
            covs=self.covs, log_w=self.log_w, comp_class=self.comp_class))

    @classmethod
    def load(cls, path):
        """Read a model written by ``save``."""
        if not os.path.isfile(path):
            raise WeightsFileError(f"{path}: segmenter file not found.")
        try:
            with np.load(path, allow_pickle=False) as z:
                version = int(z["version"])
                if version not in READABLE_VERSIONS:
                    raise WeightsFileError(f"{path}: segmenter file version {version}, expected one of "
                                           f"{READABLE_VERSIONS}.")
                seg = cls(**{"context": False, **json.loads(str(z["config"]))})
                seg._set(z["means"], z["covs"], z["log_w"], z["comp_class"])
        except (KeyError, ValueError, OSError) as err:
            raise WeightsFileError(f"{path}: not a DemoSegmenter file ({err}).") from None
        return seg


def paired_files(img_dir, label_dir):
    """Return sorted ``(image_path, label_path)`` pairs matched by file stem.

    Raises ``DatasetError`` if a folder is missing, nothing pairs up, or a
    label has no photo (photos without labels are ignored).
    """
    for folder in (img_dir, label_dir):
        if not os.path.isdir(folder):
            raise DatasetError(f"{folder}: folder not found.")
    match = match_by_stem(img_dir, label_dir)
    missing = match.only_labels
    if missing:
        raise DatasetError(f"{label_dir}: {len(missing)} label map(s) without a photo in {img_dir}, "
                           f"e.g. {missing[0]}.")
    if not match.labels:
        raise DatasetError(f"{label_dir}: no label maps found.")
    return match.pairs(sorted(match.labels))


def fit_from_folder(img_dir, label_dir, label_nc=NUM_CLASSES, max_images=None, **kwargs):
    """Fit a ``DemoSegmenter`` on the photo/label pairs of two folders (matched by stem)."""
    pairs = paired_files(img_dir, label_dir)
    if max_images is not None:
        pairs = pairs[:max_images]
    images, labels = [], []
    for img_path, label_path in pairs:
        image, label = read_image(img_path), read_label(label_path, label_nc)
        if image.shape[:2] != label.shape:
            raise DatasetError(f"{img_path} is {image.shape[1]}x{image.shape[0]} but {label_path} is "
                               f"{label.shape[1]}x{label.shape[0]}.")
        images.append(image)
        labels.append(label)
    return DemoSegmenter(label_nc=label_nc, **kwargs).fit(images, labels)


def mask_accuracy(pred, gt):
    """Fraction of pixels where ``pred`` equals ``gt``: ``(pred == gt).sum() / (H * W)``.

    If ``pred`` has another size than ``gt`` it is first resized to ``gt``'s
    size with nearest-neighbour interpolation (no class ids are invented).
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        pred = cv2.resize(pred.astype(np.uint8), (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_NEAREST)
    return float((pred == gt).sum()) / gt.size


def mean_mask_accuracy(preds, gts):
    """Average of ``mask_accuracy`` over pairs of predicted and true label maps."""
    preds, gts = list(preds), list(gts)
    if not preds or len(preds) != len(gts):
        raise ValueError(f"need equally many predictions and ground truths, at least one (got {len(preds)}, {len(gts)})")
    return float(np.mean([mask_accuracy(p, g) for p, g in zip(preds, gts)]))


GENERATED_EXTENSIONS = (".jpg", ".png")


def find_generated(folder, stem):
    """The generated image of label map ``stem`` (x.png -> x): ``folder``/x.jpg, else x.png; DatasetError
    when there is neither."""
    for ext in GENERATED_EXTENSIONS:
        path = os.path.join(folder, stem + ext)
        if os.path.isfile(path):
            return path
    raise DatasetError(f"{folder}: no generated image for {stem} (expected {stem}.jpg or {stem}.png).")
