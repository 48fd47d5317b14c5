"""The quality benchmark's scores of one set of generated images against the held-out photos: per image
mask accuracy, style similarity and sharpness ratio, and for the set the colour-texture Frechet distance.
Arrays in, numbers out: reading files and training belong to the command around it.

Per held-out label map ``i`` the inputs are its generated image, its label map, its photo (the scene the
label map was drawn from) and its style reference (a training photo). The generated image is resized to the
label map's size (Pillow bicubic, as ``util/score.py``) before segmenting and comparing with the photo.
"""

from typing import NamedTuple

import numpy as np

from data.transforms import resize_image
from util.metrics import scoring
from util.metrics.fid_stats import frechet_distance, statistics_of
from util.metrics.image_statistics import descriptor, sharpness_ratio
from util.metrics.segmenter import mask_accuracy

# name -> whether a higher value is better (sharpness: the generated images are blurrier than the photos)
METRICS = {"mask_accuracy": True, "style_similarity": True, "sharpness_ratio": True,
           "colour_texture_fd": False}
PER_IMAGE = ("mask_accuracy", "style_similarity", "sharpness_ratio")


class HeldOutImage(NamedTuple):
    label: np.ndarray      # HxW class ids
    photo: np.ndarray      # HxWx3 uint8, the scene of the label map
    reference: np.ndarray  # HxWx3 uint8, its style reference


def at_label_size(image, label):
    """The generated image at the label map's size (Pillow bicubic), unchanged when the sizes agree."""
    h, w = label.shape
    return resize_image(image, (w, h))


def score_set(generated, held_out, segmenter):
    """Scores of ``generated`` (HxWx3 uint8 images, one per ``held_out`` entry, same order): a dict with a
    float64 array of per-image values for each of ``PER_IMAGE`` and the set's ``colour_texture_fd``."""
    generated, held_out = list(generated), list(held_out)
    if len(generated) != len(held_out) or not held_out:
        raise ValueError(f"need one generated image per held-out label map ({len(generated)} generated, "
                         f"{len(held_out)} held out)")
    rows = {name: [] for name in PER_IMAGE}
    gen_descriptors, photo_descriptors = [], []
    for image, item in zip(generated, held_out):
        image = at_label_size(np.asarray(image), item.label)
        rows["mask_accuracy"].append(mask_accuracy(segmenter.predict(image), item.label))
        rows["style_similarity"].append(
            scoring.style_similarity(scoring.style_correlation(image, item.reference)))
        rows["sharpness_ratio"].append(sharpness_ratio(image, item.photo))
        gen_descriptors.append(descriptor(image))
        photo_descriptors.append(descriptor(item.photo))
    scores = {name: np.asarray(values, dtype=np.float64) for name, values in rows.items()}
    scores["colour_texture_fd"] = float(frechet_distance(statistics_of(gen_descriptors),
                                                         statistics_of(photo_descriptors)))
    return scores
