"""A plug-in segmenter for tests of ``util/score.py --segmenter MODULE:FACTORY``.

``factory(weights_path, label_nc)`` takes a dataset split folder (with imgs/
and labels/) as its "weights" and returns a segmenter that knows the answer:
for a photo of that folder (matched by its exact pixels) ``predict`` returns
its label map, for any other image all zeros.
"""

import hashlib
import os

import numpy as np

from data.image_io import read_image, read_label
from util.metrics.segmenter import paired_files


def _key(rgb):
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    return hashlib.sha1(rgb.tobytes() + str(rgb.shape).encode()).hexdigest()


class OracleSegmenter:
    def __init__(self, split_dir, label_nc):
        self.answers = {_key(read_image(img)): read_label(label, label_nc)
                        for img, label in paired_files(os.path.join(split_dir, "imgs"),
                                                       os.path.join(split_dir, "labels"))}

    def predict(self, rgb):
        return self.answers.get(_key(rgb), np.zeros(np.asarray(rgb).shape[:2], np.uint8))


def factory(weights_path, label_nc):
    return OracleSegmenter(weights_path, label_nc)
