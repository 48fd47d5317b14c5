"""Style references of the style track: which training photo each test label map takes its style from.

A reference mapping is a JSON object ``{"test_label.png": "train_photo.jpg", ...}``
(``label_to_img.json``, by default next to the label folder). ``read_mapping``
parses it; ``resolve`` checks it against the label maps and the photo folder
and returns a ``StyleReferences``. Three problems are told apart: entries for
label maps that are not in the folder, label maps without an entry, and
entries whose photo file does not exist. Strictly (the default) each one is a
``DatasetError`` naming the files; with ``allow_missing`` the affected label
maps are listed (they fall back to a random style) and unknown entries are
ignored. ``label_of_photo`` finds the label map of a training photo
(``imgs/x.jpg`` -> ``labels/x.png``), and ``transfer_toward`` uses it to
restrict colour transfer to the classes both images show (generation and the
scorer both call it). ``from_options`` applies the generation flags
(``--ref_json``, ``--img_path``, ``--allow_missing_ref``, ``--color_transfer``)
and says, in notes, what the references will be used for. No
Jittor.
"""

import json
import os
from dataclasses import dataclass, field

from data import colour_transfer
from data.folders import LABEL_DIR_NAMES
from data.image_io import LABEL_EXTENSIONS, read_image, read_label
from util.core.errors import DatasetError, OptionError, few

DEFAULT_JSON_NAME = "label_to_img.json"
NO_REFERENCES = "none"  # --ref_json none: do not use a mapping even if the default file exists
FORMAT_HINT = '{"label_name.png": "reference_photo.jpg", ...}'


def default_json(label_dir):
    """``LABEL_DIR/../label_to_img.json``: where a test split keeps its reference mapping."""
    parent = os.path.dirname(os.path.abspath(os.path.normpath(label_dir)))
    return os.path.join(parent, DEFAULT_JSON_NAME)


def read_mapping(json_path):
    """The {label file name: photo file name} object of a reference JSON file."""
    if not os.path.isfile(json_path):
        raise DatasetError(f"{json_path}: reference JSON not found.")
    try:
        with open(json_path, encoding="utf-8") as f:
            mapping = json.load(f)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{json_path}: not valid JSON ({err}); expected {FORMAT_HINT}.") from None
    except UnicodeDecodeError as err:
        raise DatasetError(f"{json_path}: not a UTF-8 text file ({err}).") from None
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise DatasetError(f"{json_path}: expected a JSON object mapping label file names to reference photo "
                           f"file names, {FORMAT_HINT}.")
    return mapping


@dataclass
class StyleReferences:
    """Reference photo per label map, and the label maps that have none (with ``allow_missing``)."""
    json_path: str
    photos: dict                                        # label file name -> photo path
    without_entry: list = field(default_factory=list)   # label maps the JSON does not mention
    missing_files: list = field(default_factory=list)   # label maps whose photo file does not exist
    unknown_entries: list = field(default_factory=list)  # JSON keys that are not label maps of the folder

    def without_reference(self):
        return sorted(self.without_entry + self.missing_files)

    def summary(self, total):
        """One line: how many label maps have a reference, and what happened to the others."""
        text = f"{len(self.photos)} of {total} label maps have a reference photo ({self.json_path})"
        if self.without_entry:
            text += f"; {len(self.without_entry)} without an entry ({few(self.without_entry, 3)})"
        if self.missing_files:
            text += f"; {len(self.missing_files)} whose photo is missing ({few(self.missing_files, 3)})"
        if self.without_entry or self.missing_files:
            text += ": those use a random style"
        if self.unknown_entries:
            text += f"; {len(self.unknown_entries)} entries for label maps not in the folder ignored"
        return text


def resolve(json_path, ref_dir, label_names, allow_missing=False):
    """Check the mapping of ``json_path`` against ``label_names`` and the photos in ``ref_dir``.

    Returns a ``StyleReferences``; raises ``DatasetError`` for every problem
    unless ``allow_missing``, which keeps the label maps without a usable
    reference out of ``photos`` and lists them instead.
    """
    mapping = read_mapping(json_path)
    if not os.path.isdir(ref_dir):
        raise DatasetError(f"{ref_dir}: reference photo folder not found (the photos {json_path} names).")
    hint = " (--allow_missing_ref generates those with a random style)" if not allow_missing else ""
    unknown = sorted(set(mapping) - set(label_names))
    if unknown and not allow_missing:
        raise DatasetError(f"{json_path}: {len(unknown)} entr{'y' if len(unknown) == 1 else 'ies'} for label maps "
                           f"that are not in the label folder: {few(unknown)}.")
    without = sorted(set(label_names) - set(mapping))
    if without and not allow_missing:
        raise DatasetError(f"{json_path}: {len(without)} label map(s) have no reference photo entry: "
                           f"{few(without)}{hint}.")
    photos = {name: os.path.join(ref_dir, mapping[name]) for name in label_names if name in mapping}
    missing = sorted(name for name, path in photos.items() if not os.path.isfile(path))
    if missing and not allow_missing:
        shown = [f"{photos[name]} (for {name})" for name in missing]
        raise DatasetError(f"{json_path}: {len(missing)} reference photo(s) not found: {few(shown)}{hint}.")
    for name in missing:
        del photos[name]
    return StyleReferences(json_path, photos, without, missing, unknown)


def label_of_photo(photo_path):
    """The label map of a training photo DIR/imgs/x.jpg (DIR/labels/x.png or DIR/lables/x.png), or None."""
    folder = os.path.dirname(os.path.abspath(photo_path))
    stem = os.path.splitext(os.path.basename(photo_path))[0]
    root = os.path.dirname(folder)
    for name in LABEL_DIR_NAMES:
        for ext in LABEL_EXTENSIONS:
            path = os.path.join(root, name, stem + ext)
            if os.path.isfile(path):
                return path
    return None


def training_photos(opt, saved=None):
    """--img_path, or the imgs/ folder of the training data recorded in the experiment's opt.json (``saved``:
    those saved options, as read by the option layer)."""
    if opt.img_path:
        if not os.path.isdir(opt.img_path):
            raise DatasetError(f"{opt.img_path}: training photo folder (--img_path) not found.")
        return opt.img_path
    folder = os.path.join(opt.checkpoints_dir, opt.name)
    train_root = (saved or {}).get("input_path")
    if not train_root:
        raise DatasetError(f"{folder}/opt.json does not name the training data; pass --img_path DIR (the "
                           f"training photos).")
    photos = os.path.join(train_root, "imgs")
    if not os.path.isdir(photos):
        raise DatasetError(f"{photos}: the training photos of this experiment (from {folder}/opt.json) are not "
                           f"there; pass --img_path DIR.")
    return photos


def from_options(opt, label_names, saved=None):
    """(StyleReferences or None, notes) for parsed generation options and the label maps to generate.

    The mapping is ``--ref_json``, else ``INPUT_PATH/../label_to_img.json`` when
    it exists; it is used when the model has a style encoder (``use_vae``) or
    ``--color_transfer`` is on. An explicit mapping that nothing can use is an
    error; a default one is then skipped with a note.
    """
    transfer = opt.color_transfer != "none"
    if opt.ref_json == NO_REFERENCES:
        if transfer:
            raise OptionError(f"--color_transfer {opt.color_transfer} needs reference photos, but --ref_json none "
                              f"switches them off.")
        return None, ["--ref_json none: no reference photos, random style codes"] if opt.use_vae else []
    explicit = opt.ref_json is not None
    path = opt.ref_json if explicit else default_json(opt.input_path)
    if not explicit and not os.path.isfile(path):
        if transfer:
            raise OptionError(f"--color_transfer {opt.color_transfer} needs reference photos: there is no {path}; "
                              f"give the mapping with --ref_json FILE.")
        return None, []
    if not opt.use_vae and not transfer:
        if explicit:
            raise OptionError(f"--ref_json {path}: the model {opt.name} was trained without --use_vae, so it has no "
                              f"style encoder to take a style from reference photos; add --color_transfer reinhard "
                              f"to match their colours after generation instead.")
        return None, [f"{path} is not used: the model has no style encoder (trained without --use_vae); "
                      f"--color_transfer reinhard would match the reference colours after generation"]
    refs = resolve(path, training_photos(opt, saved), label_names, opt.allow_missing_ref)
    uses = []
    if opt.use_vae:
        uses.append("style codes from the style encoder (" + ("sampled" if opt.sample_style else "mean code") + ")")
    if transfer:
        uses.append(f"{opt.color_transfer} colour transfer")
    return refs, [refs.summary(len(label_names)), "reference photos give: " + " and ".join(uses)]


def transfer_toward(method, image, label, reference_path, label_nc, reference=None):
    """(TransferResult, reference label path or None): ``image`` (with its label map) colour-transferred
    toward the photo at ``reference_path`` (``reference``: its pixels when already read), per class region
    when the photo has a label map (``label_of_photo``), else the whole image."""
    ref_label_path = label_of_photo(reference_path)
    ref_label = read_label(ref_label_path, label_nc) if ref_label_path else None
    if reference is None:
        reference = read_image(reference_path)
    return colour_transfer.transfer(method, image, reference, label, ref_label), ref_label_path
