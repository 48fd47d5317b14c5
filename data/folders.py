"""Finding and checking dataset folders: which files form the pairs of a
training set, and which label maps form a test set. Pure Python/Pillow; every
problem is a ``DatasetError`` naming the files."""

import os
from typing import NamedTuple

from PIL import Image

from data.image_io import IMAGE_EXTENSIONS, LABEL_EXTENSIONS, list_files
from util.core.errors import DatasetError, few

LABEL_DIR_NAMES = ("labels", "lables")  # the original release spells it "lables"


class StemMatch(NamedTuple):
    """The photos of ``img_dir`` and the label maps of ``label_dir``, each as {file stem: file name}."""

    img_dir: str
    label_dir: str
    images: dict
    labels: dict

    @property
    def only_images(self):
        """Sorted stems of the photos that have no label map."""
        return sorted(set(self.images) - set(self.labels))

    @property
    def only_labels(self):
        """Sorted stems of the label maps that have no photo."""
        return sorted(set(self.labels) - set(self.images))

    def pairs(self, stems):
        """[(image_path, label_path)] of ``stems``, in their order."""
        return [(os.path.join(self.img_dir, self.images[s]), os.path.join(self.label_dir, self.labels[s]))
                for s in stems]


def match_by_stem(img_dir, label_dir):
    """The photos and label maps of two folders matched by file stem (x.jpg pairs with x.png); what to do
    with the unmatched ones is the caller's choice."""
    return StemMatch(img_dir, label_dir,
                     {os.path.splitext(f)[0]: f for f in list_files(img_dir, IMAGE_EXTENSIONS)},
                     {os.path.splitext(f)[0]: f for f in list_files(label_dir, LABEL_EXTENSIONS)})


def find_label_dir(root):
    for name in LABEL_DIR_NAMES:
        path = os.path.join(root, name)
        if os.path.isdir(path):
            return path
    raise DatasetError(f"{root}: no label folder; expected {root}/labels/ (or {root}/lables/) holding the "
                       f"single-channel PNG label maps.")


def read_name_list(path):
    """The file stems listed in text file ``path`` (one name per line, extension optional, blank lines and
    lines starting with # ignored)."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read the list of image names ({err}).") from None
    names = [line.strip() for line in lines]
    return frozenset(os.path.splitext(n)[0] for n in names if n and not n.startswith("#"))


def training_pairs(root, max_size=None, exclude=frozenset()):
    """Return sorted (image_path, label_path) pairs of ``root``/imgs and ``root``/labels, without the pairs
    whose stem is in ``exclude``.

    Pairs are matched by file stem; unmatched files, empty folders and
    photo/label size mismatches are errors.
    """
    if not os.path.isdir(root):
        raise DatasetError(f"{root}: training folder not found (expected a folder with imgs/ and labels/).")
    img_dir = os.path.join(root, "imgs")
    if not os.path.isdir(img_dir):
        raise DatasetError(f"{root}: no imgs/ folder; expected {img_dir} holding the training photos.")
    label_dir = find_label_dir(root)
    match = match_by_stem(img_dir, label_dir)
    images, labels = match.images, match.labels
    if not images:
        raise DatasetError(f"{img_dir}: no photos found (extensions {', '.join(IMAGE_EXTENSIONS)}).")
    if not labels:
        raise DatasetError(f"{label_dir}: no label maps found (extensions {', '.join(LABEL_EXTENSIONS)}).")
    only_images, only_labels = match.only_images, match.only_labels
    if only_images or only_labels:
        parts = []
        if only_images:
            parts.append(f"{len(only_images)} photo(s) in {img_dir} have no label map: "
                         f"{few([images[s] for s in only_images])}")
        if only_labels:
            parts.append(f"{len(only_labels)} label map(s) in {label_dir} have no photo: "
                         f"{few([labels[s] for s in only_labels])}")
        raise DatasetError("photos and label maps do not pair up by file name. " + "; ".join(parts) + ".")
    stems = sorted(s for s in images if s not in exclude)
    if not stems:
        raise DatasetError(f"{img_dir}: every one of its {len(images)} photos is on the exclusion list.")
    if max_size:
        stems = stems[:max_size]
    pairs = match.pairs(stems)
    check_pair_sizes(pairs)
    return pairs


def header_size(path, error_cls=DatasetError):
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.size
    except Exception as err:  # Pillow raises many types for bad files
        raise error_cls(f"{path}: not a readable image ({err.__class__.__name__}: {err}).") from None


def check_pair_sizes(pairs):
    bad = []
    for img_path, label_path in pairs:
        isize, lsize = header_size(img_path), header_size(label_path)
        if isize != lsize:
            bad.append(f"{os.path.basename(img_path)} is {isize[0]}x{isize[1]} but "
                       f"{os.path.basename(label_path)} is {lsize[0]}x{lsize[1]}")
    if bad:
        raise DatasetError(f"{len(bad)} photo/label pair(s) differ in size: {few(bad, 3)}. "
                           f"A label map must have exactly its photo's size.")


def test_labels(folder, max_size=None):
    """Sorted label-map paths of a generation input folder."""
    if not os.path.isdir(folder):
        raise DatasetError(f"{folder}: label folder not found.")
    names = list_files(folder, LABEL_EXTENSIONS)
    if not names:
        raise DatasetError(f"{folder}: no label maps found (extensions {', '.join(LABEL_EXTENSIONS)}).")
    if max_size:
        names = names[:max_size]
    return [os.path.join(folder, n) for n in names]
