"""The optional pure-colour dictionary: a dataset-specific test-time trick (off by default).

Some landscape label maps are (almost) a single class, e.g. all sky or all
sea. For those, a training photo whose label map is that one class
looks better than a generated image. This module owns the whole trick:

- ``find_pure_pairs`` / ``build_dictionary``: at training time, the training
  photos whose label map holds a single class id, at most ``max_per_class``
  per class (first in name order), resized bicubic to the network size;
- ``save_dictionary`` / ``load_dictionary``: the file, written and read
  through ``util.core.checkpoint`` (Jittor's ``.pkl`` encoding, atomic write),
  by default ``CHECKPOINTS_DIR/NAME/pure_colour.pkl`` (``default_path``);
- ``apply_pure``: at generation time, when one class covers more than
  ``threshold`` of a label map and the dictionary holds photos of it, the
  pixels of that class are copied from one of those photos;
  ``pick_index`` chooses the photo from (seed, file name) alone;
- the ``python -m util.pure_colour`` command builds it by hand.

File format: a plain dict ``{"format": "pure_colour_dictionary", "version": 1,
"width": W, "height": H, "label_nc": N, "photos": {class_id: uint8 [K, H, W, 3]},
"sources": {class_id: [photo file names]}}``. Pure NumPy/Pillow (no Jittor).
"""

import os
import zlib

import numpy as np

from data.folders import training_pairs
from data.image_io import read_image, read_label
from data.labels import CLASS_NAMES
from data.transforms import resize_image
from util.core import checkpoint
from util.core.errors import CheckpointError
from util.core.seeding import derive_seed

FORMAT, VERSION = "pure_colour_dictionary", 1
DICTIONARY_FILE = "pure_colour.pkl"
DEFAULT_MAX_PER_CLASS = 8  # bounds the file: 8 photos of 512x384 are 4.7 MB per class
DEFAULT_THRESHOLD = 0.98
PICK_STREAM = 17  # keeps the photo choice independent of the style code drawn from the same (seed, name)


class PureDictionary(dict):
    """{class_id: uint8 array [K, H, W, 3]} plus ``sources`` ({class_id: [file names]}) and
    ``size`` ((width, height) of the stored photos)."""

    def __init__(self, photos=(), sources=None, size=None, label_nc=None):
        super().__init__(photos)
        self.sources = dict(sources or {})
        self.size = size
        self.label_nc = label_nc


def default_path(experiment_folder):
    """Where training writes, and generation looks for, the dictionary of an experiment."""
    return os.path.join(experiment_folder, DICTIONARY_FILE)


def _build_hint(path):
    return (f"it is built by train.py (or `python -m util.pure_colour --input_path DATA/train "
            f"--out {path}`)")


# ----------------------------------------------------------------------------- building
def find_pure_pairs(train_dir, label_nc, max_size=None, progress=None):
    """{class_id: [(image_path, label_path), ...]} of the training pairs whose label map is one class.

    Pairs come from ``data.folders.training_pairs`` (name order, so the result is
    deterministic); classes are sorted. ``progress`` (e.g. a tqdm bar) gets
    ``update(1)`` per label map read, and its ``total`` when that is None.
    """
    pairs = training_pairs(train_dir, max_size)
    if progress is not None and getattr(progress, "total", 0) is None:
        progress.total = len(pairs)
    found = {}
    for image_path, label_path in pairs:
        label = read_label(label_path, label_nc)
        if label.size and label.min() == label.max():
            found.setdefault(int(label.flat[0]), []).append((image_path, label_path))
        if progress is not None:
            progress.update(1)
    return {cid: found[cid] for cid in sorted(found)}


def build_dictionary(train_dir, label_nc, width, height, max_per_class=DEFAULT_MAX_PER_CLASS, progress=None,
                     pure_pairs=None):
    """A ``PureDictionary`` of the single-class training photos resized (bicubic) to ``width`` x ``height``.

    At most ``max_per_class`` photos per class, the first in name order.
    ``pure_pairs`` (the result of ``find_pure_pairs``) avoids reading the labels again.
    """
    if pure_pairs is None:
        pure_pairs = find_pure_pairs(train_dir, label_nc, progress=progress)
    photos, sources = {}, {}
    for cid, pairs in pure_pairs.items():
        chosen = pairs[:max_per_class]
        if not chosen:
            continue
        photos[cid] = np.stack([resize_image(read_image(img), (width, height)) for img, _ in chosen])
        sources[cid] = [os.path.basename(img) for img, _ in chosen]
    return PureDictionary(photos, sources, (width, height), label_nc)


# ----------------------------------------------------------------------------- file
def save_dictionary(path, dictionary):
    """Write ``dictionary`` ({class_id: uint8 [K, H, W, 3]}, e.g. from ``build_dictionary``) atomically."""
    photos = {int(cid): np.ascontiguousarray(arr, dtype=np.uint8) for cid, arr in dictionary.items()}
    for cid, arr in photos.items():
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(f"pure-colour dictionary: class {cid} holds an array of shape {arr.shape}, "
                             f"expected [K, H, W, 3]")
    sources = getattr(dictionary, "sources", {}) or {}
    size = getattr(dictionary, "size", None)
    if size is None and photos:
        first = next(iter(photos.values()))
        size = (first.shape[2], first.shape[1])
    checkpoint.write_file(path, {
        "format": FORMAT, "version": VERSION,
        "width": None if size is None else int(size[0]), "height": None if size is None else int(size[1]),
        "label_nc": getattr(dictionary, "label_nc", None),
        "photos": photos,
        "sources": {int(c): [str(n) for n in names] for c, names in sources.items()},
    })


def load_dictionary(path):
    """Read a dictionary written by ``save_dictionary``; ``CheckpointError`` (naming ``path``) when
    it is missing, truncated, corrupt or something else."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no pure-colour dictionary; {_build_hint(path)}.")
    try:
        data = checkpoint.read_file(path, "pure-colour dictionary")
    except CheckpointError as err:
        raise CheckpointError(f"{err} Rebuild it: {_build_hint(path)}.") from None
    problem = _format_problem(data)
    if problem:
        raise CheckpointError(f"{path}: not a pure-colour dictionary ({problem}); {_build_hint(path)}.")
    size = None if data.get("width") is None else (data["width"], data["height"])
    return PureDictionary(data["photos"], data.get("sources"), size, data.get("label_nc"))


def _format_problem(data):
    """What is wrong with a decoded dictionary file, or None."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return "a different kind of file"
    if data.get("version") != VERSION:
        return f"format version {data.get('version')}, this program reads version {VERSION}"
    photos = data.get("photos")
    if not isinstance(photos, dict):
        return "no photo table"
    for cid, arr in photos.items():
        if not (isinstance(arr, np.ndarray) and arr.dtype == np.uint8 and arr.ndim == 4 and arr.shape[-1] == 3
                and arr.shape[0] > 0):
            return f"class {cid} does not hold uint8 photos [K, H, W, 3]"
    return None


# ----------------------------------------------------------------------------- generation
def pick_index(seed, name):
    """Which dictionary photo (before ``% K``) the label map ``name`` uses; depends on (seed, name) only."""
    return derive_seed(seed, zlib.crc32(name.encode()), PICK_STREAM)


def dominant_class(label_map):
    """(class id, fraction of pixels) of the most frequent class of ``label_map``."""
    counts = np.bincount(np.asarray(label_map).ravel().astype(np.int64))
    cid = int(np.argmax(counts))
    return cid, counts[cid] / max(1, counts.sum())


def apply_pure(generated, label_map, dictionary, threshold=DEFAULT_THRESHOLD, pick=0):
    """Copy a dictionary photo into the dominant class's pixels when it covers more than ``threshold``.

    ``generated``: uint8 [H, W, 3] at the label map's size; ``label_map``: int
    [H, W]. When one class covers more than ``threshold`` of the pixels and
    ``dictionary`` holds photos of it, its pixels are taken from photo
    ``pick % K`` resized (bicubic) to W x H and the rest is kept. Returns
    (image, class id), or (``generated`` itself, None) when nothing changed.
    """
    generated, label_map = np.asarray(generated), np.asarray(label_map)
    if generated.shape[:2] != label_map.shape:
        raise ValueError(f"apply_pure: image {generated.shape} and label map {label_map.shape} differ in size")
    cid, fraction = dominant_class(label_map)
    photos = dictionary.get(cid)
    if fraction <= threshold or photos is None or len(photos) == 0:
        return generated, None
    height, width = label_map.shape
    photo = resize_image(np.ascontiguousarray(photos[int(pick) % len(photos)]), (width, height))
    mask = label_map == cid
    out = generated.copy()
    out[mask] = photo[mask]
    return out, cid


class PureColour:
    """The switch as ``models.generation.generate_folder`` uses it: a loaded dictionary, the
    threshold, and ``used`` ({label file name: class id}) filled with the images it changed."""

    def __init__(self, dictionary, threshold=DEFAULT_THRESHOLD):
        self.dictionary, self.threshold, self.used = dictionary, threshold, {}

    def apply(self, generated, label_map, name, seed):
        image, cid = apply_pure(generated, label_map, self.dictionary, self.threshold, pick_index(seed, name))
        if cid is not None:
            self.used[name] = cid
        return image


def from_options(opt):
    """The ``PureColour`` switch of generation options (``--use_pure``), or None when off.

    A missing or bad dictionary raises here, before anything is generated.
    """
    if not opt.use_pure:
        return None
    pure = PureColour(load_dictionary(opt.pure_dictionary), opt.pure_threshold)
    print(f"pure-colour dictionary {opt.pure_dictionary}: {describe(pure.dictionary)}; used where one "
          f"class covers more than {opt.pure_threshold * 100:g}% of a label map")
    return pure


def describe(dictionary):
    """'N photos of K classes (sky 8, sea 3)' for messages."""
    parts = [f"{class_name(c)} {len(a)}" for c, a in sorted(dictionary.items())]
    total = sum(len(a) for a in dictionary.values())
    return f"{total} photos of {len(dictionary)} classes" + (f" ({', '.join(parts)})" if parts else "")


def class_name(cid):
    return CLASS_NAMES[cid] if 0 <= cid < len(CLASS_NAMES) else f"class {cid}"
