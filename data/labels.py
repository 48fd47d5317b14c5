"""The landscape label set: class ids, names and the colour palette used to
draw label maps. Pure Python/NumPy (no Jittor)."""

import numpy as np

CLASS_NAMES = (
    "mountain", "sky", "water", "sea", "rock", "tree", "earth", "hill", "river",
    "sand", "land", "building", "grass", "plant", "person", "boat", "waterfall",
    "wall", "pier", "path", "lake", "bridge", "field", "road", "railing", "fence",
    "ship", "house", "other",
)
NUM_CLASSES = len(CLASS_NAMES)  # 29
CLASS_ID = {name: i for i, name in enumerate(CLASS_NAMES)}

# Colours for visualising label maps (not used for training).
PALETTE = np.array([
    [110, 90, 80], [135, 200, 240], [40, 120, 180], [20, 70, 150], [120, 120, 120],
    [30, 110, 40], [140, 100, 60], [120, 150, 70], [60, 150, 200], [230, 210, 150],
    [170, 150, 100], [200, 60, 60], [100, 200, 80], [60, 170, 100], [255, 0, 200],
    [250, 150, 0], [210, 240, 255], [160, 140, 140], [130, 80, 30], [210, 190, 160],
    [80, 160, 210], [190, 120, 50], [200, 210, 90], [80, 80, 90], [170, 170, 40],
    [150, 110, 80], [240, 240, 20], [220, 120, 120], [0, 0, 0],
], dtype=np.uint8)


def colorize(label, label_nc=NUM_CLASSES):
    """Map an HxW integer label map to an HxWx3 uint8 RGB picture."""
    label = np.asarray(label)
    palette = PALETTE
    if label_nc > len(palette):
        extra = np.random.RandomState(0).randint(0, 256, (label_nc - len(palette), 3)).astype(np.uint8)
        palette = np.concatenate([palette, extra])
    return palette[np.clip(label, 0, len(palette) - 1)]
