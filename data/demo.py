"""The procedural demo dataset: synthetic landscape photos with exact label maps.

This module owns scene generation (``make_scene``), writing a dataset folder in
the real layout (``write_dataset``: ``train/imgs``, ``train/labels``,
``test/imgs``, ``test/labels``, ``test/label_to_img.json``) and the
``python -m util.demo_data`` command. A scene is built in two steps: a
*material* map is painted back to front (sky, mountains, hills, ground, water,
shore, path, trees, rocks, buildings), each material belonging to one
landscape class; then every material is coloured with its base colour,
texture noise and lighting. Image ``k`` of a split depends only on
``(seed, split, k)`` and the size, never on ``--num``. Pure NumPy/OpenCV (no
Jittor).

Tones: each scene is lit in one of ``TONES``, equally likely and drawn first
from the scene's rng (so ``scene_tone`` names it without rendering): midday
(neutral), golden hour (warm orange light, warm sky near the horizon),
overcast (desaturated, grey sky, flat light) and dusk (cool, darker, violet
horizon). A tone grades every material and the sky alike, so photos of one
tone share their global colour statistics (what a style encoder learns and
what the histogram style metric measures).

Style references: ``test/label_to_img.json`` maps each test label map to the
training photo whose label map has the most similar classes: the highest
intersection-over-union of the sets of classes present, ties broken by the
largest shared area ``sum over classes of min(pixel fractions)``, then by
the lowest index (``pick_reference``). It depends only on (seed, num,
num_test, size), and is written with sorted keys.
"""

import json
import os
import sys
from typing import NamedTuple

import cv2
import numpy as np

from data.image_io import save_image, save_label
from data.labels import CLASS_ID, NUM_CLASSES
from util.core.errors import OptionError
from util.core.files import atomic_write

# Materials: what a pixel is made of. Several materials may share a class
# (a house's roof and walls are both "house"). Columns: class name, base RGB,
# texture amplitude (relative brightness), noise cells across the image width,
# horizontal stretch of the noise (>1 gives streaks, e.g. ripples on water).
_MATERIALS = (
    ("sky",        "sky",      (120, 170, 220), 0.00, 4, 1.0),
    ("mount_far",  "mountain", (118, 122, 150), 0.08, 24, 1.0),
    ("mount_near", "mountain", (92, 94, 122),   0.10, 32, 1.0),
    ("hill",       "hill",     (118, 126, 72),  0.08, 40, 1.0),
    ("grass",      "grass",    (78, 150, 48),   0.10, 90, 1.0),
    ("field",      "field",    (206, 178, 88),  0.08, 70, 2.0),
    ("sea",        "sea",      (26, 68, 132),   0.07, 60, 8.0),
    ("lake",       "lake",     (46, 108, 112),  0.07, 60, 8.0),
    ("river",      "river",    (96, 152, 178),  0.07, 60, 8.0),
    ("water",      "water",    (70, 92, 118),   0.07, 60, 8.0),
    ("sand",       "sand",     (218, 198, 150), 0.06, 90, 1.0),
    ("path",       "path",     (150, 118, 88),  0.10, 90, 1.0),
    ("tree",       "tree",     (36, 78, 36),    0.22, 70, 1.0),
    ("trunk",      "tree",     (78, 58, 40),    0.10, 90, 1.0),
    ("rock",       "rock",     (124, 114, 100), 0.16, 80, 1.0),
    ("building",   "building", (172, 170, 178), 0.05, 60, 1.0),
    ("window",     "building", (58, 62, 74),    0.05, 60, 1.0),
    ("house_wall", "house",    (226, 200, 186), 0.04, 60, 1.0),
    ("roof",       "house",    (150, 52, 40),   0.08, 60, 1.0),
)
MATERIAL_ID = {m[0]: i for i, m in enumerate(_MATERIALS)}
MATERIAL_CLASS = np.array([CLASS_ID[m[1]] for m in _MATERIALS], dtype=np.uint8)
_BASE_RGB = np.array([m[2] for m in _MATERIALS], dtype=np.float32)
WATER_KINDS = ("sea", "lake", "river", "water")

TRAIN_PREFIX, TEST_PREFIX = "demo", "test"
REFERENCE_JSON = "label_to_img.json"


class Tone(NamedTuple):
    """The lighting of a scene: how the neutral rendering is graded, and its sky.

    ``light`` multiplies R, G, B of every pixel (sky included); ``saturation``
    scales the distance of each colour from its grey (luma) value;
    ``brightness`` scales everything; ``shading`` scales the relief of the
    lighting (1 as at midday, < 1 flatter). ``sky_top``, ``sky_horizon`` and
    ``cloud`` are the sky colours before grading; ``cover`` the range of
    cloudiness drawn (0 clear .. 1 overcast).
    """
    name: str
    light: tuple
    saturation: float
    brightness: float
    shading: float
    sky_top: tuple
    sky_horizon: tuple
    cloud: tuple
    cover: tuple


# name, light RGB, saturation, brightness, shading, sky top, sky at the horizon, cloud, cloud cover range
TONES = (
    Tone("midday",   (1.00, 1.00, 1.00), 1.00, 1.00, 1.0, (62, 122, 200), (178, 206, 232), (238, 238, 243), (0.0, 0.6)),
    Tone("golden",   (1.12, 0.93, 0.70), 1.10, 0.98, 1.2, (78, 122, 212), (236, 206, 178), (252, 226, 204), (0.0, 0.5)),
    Tone("overcast", (0.98, 1.00, 1.03), 0.45, 0.86, 0.5, (168, 172, 180), (204, 206, 210), (222, 223, 226), (0.7, 1.0)),
    Tone("dusk",     (0.74, 0.82, 1.06), 0.85, 0.70, 0.8, (46, 60, 124), (196, 160, 190), (150, 140, 170), (0.0, 0.5)),
)
TONE_NAMES = tuple(t.name for t in TONES)
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


# ----------------------------------------------------------------------------- noise
def _noise(rng, h, w, cells, stretch=1.0):
    """Smooth value noise in about [-1, 1]: a random grid upsampled bicubically.

    ``cells`` is the number of grid cells across the width; ``stretch`` > 1
    makes features wider than tall.
    """
    cx = max(2, int(round(cells / stretch)))
    cy = max(2, int(round(cells * h / w)))
    grid = rng.uniform(-1.0, 1.0, (cy + 1, cx + 1)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _fractal(rng, h, w, cells, octaves=3, stretch=1.0):
    """Sum of ``octaves`` noise layers, each twice as fine and half as strong."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for i in range(octaves):
        out += amp * _noise(rng, h, w, cells * 2 ** i, stretch)
        total += amp
        amp *= 0.5
    return out / total


def _profile(rng, w, cells, octaves=5, roughness=0.5):
    """A 1-D fractal curve of length ``w`` in about [-1, 1] (ridge lines, shores)."""
    x = np.linspace(0.0, 1.0, w)
    out = np.zeros(w)
    amp, total = 1.0, 0.0
    for i in range(octaves):
        n = cells * 2 ** i + 1
        out += amp * np.interp(x, np.linspace(0.0, 1.0, n), rng.uniform(-1.0, 1.0, n))
        total += amp
        amp *= roughness
    return out / total


# ----------------------------------------------------------------------------- painting
class _Canvas:
    """Material map plus a per-pixel brightness factor, painted back to front."""

    def __init__(self, h, w):
        self.h, self.w = h, w
        self.material = np.zeros((h, w), np.uint8)
        self.shade = np.ones((h, w), np.float32)
        self.yy, self.xx = np.mgrid[0:h, 0:w].astype(np.float32)

    def paint(self, mask, material, shade=1.0):
        self.material[mask] = MATERIAL_ID[material]
        self.shade[mask] = shade if np.isscalar(shade) else shade[mask]

    def polygon(self, points, material, shade=1.0):
        mask = np.zeros((self.h, self.w), np.uint8)
        cv2.fillPoly(mask, [np.round(np.asarray(points)).astype(np.int32)], 1)
        self.paint(mask.astype(bool), material, shade)
        return mask.astype(bool)

    def below(self, curve):
        """Mask of pixels at or below a per-column y coordinate."""
        return self.yy >= curve[None, :]


def _blob(rng, cx, cy, radius, n=14, jag=0.25, squash=1.0):
    """Polygon points of an irregular round blob."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = radius * (1.0 + jag * rng.uniform(-1, 1, n))
    return np.stack([cx + r * np.cos(angles), cy + squash * r * np.sin(angles)], 1)


def _paint_mountains(rng, cv, horizon):
    h, w = cv.h, cv.w
    if rng.random() < 0.12:
        return
    # peaks: a fractal curve folded at zero (sharp crests), scaled to 10..30% of the height
    top = horizon - h * rng.uniform(0.08, 0.2)
    peaks = 1.0 - 2.0 * np.abs(_profile(rng, w, rng.integers(2, 4), roughness=0.5))
    ridge = top - h * rng.uniform(0.08, 0.16) * peaks
    haze = np.clip((cv.yy - ridge.min()) / max(horizon - ridge.min(), 1.0), 0, 1)  # lighter towards the foot
    cv.paint(cv.below(ridge), "mount_far", 0.95 + 0.1 * haze + 0.06 * _fractal(rng, h, w, 12))
    if rng.random() < 0.5:
        top2 = horizon - h * rng.uniform(0.03, 0.08)
        peaks2 = 1.0 - 2.0 * np.abs(_profile(rng, w, rng.integers(3, 5), roughness=0.55))
        ridge2 = top2 - h * rng.uniform(0.04, 0.1) * peaks2
        cv.paint(cv.below(ridge2), "mount_near", 1.0 + 0.08 * _fractal(rng, h, w, 16))


def _paint_ground(rng, cv, horizon):
    """Hills on the horizon, then grass and/or field up to the bottom edge."""
    h, w = cv.h, cv.w
    if rng.random() < 0.7:
        hill = horizon - h * rng.uniform(0.04, 0.1) + h * 0.05 * _profile(rng, w, 2, octaves=3, roughness=0.4)
        # lit from one side: brightness follows the slope of the hill line
        slope = np.gradient(hill)[None, :] * (1.0 if rng.random() < 0.5 else -1.0)
        cv.paint(cv.below(hill), "hill", np.clip(1.0 + 0.6 * slope, 0.85, 1.15) * np.ones((h, 1), np.float32))
    ground = horizon + h * 0.01 * _profile(rng, w, 3, octaves=3)
    mask = cv.below(ground)
    depth = np.clip((cv.yy - horizon) / max(h - horizon, 1.0), 0.0, 1.0)
    cv.paint(mask, "grass", 1.05 - 0.15 * depth)
    if rng.random() < 0.45:
        # a field on one side of a slanted, slightly wobbly line
        x0 = w * rng.uniform(0.2, 0.8)
        tilt = rng.uniform(-1.5, 1.5)
        edge = x0 + tilt * (cv.yy - horizon) + w * 0.02 * _noise(rng, h, w, 4)
        side = cv.xx > edge if rng.random() < 0.5 else cv.xx < edge
        cv.paint(mask & side, "field", 1.0 - 0.08 * depth)
    return ground


def _paint_water(rng, cv, horizon):
    """One water body of a random kind; returns its mask (or None)."""
    h, w = cv.h, cv.w
    if rng.random() < 0.15:
        return None
    kind = WATER_KINDS[rng.integers(len(WATER_KINDS))]
    yy, xx = cv.yy, cv.xx
    if kind == "sea":
        shore = horizon + h * rng.uniform(0.12, 0.3) + h * 0.04 * _profile(rng, w, 3, roughness=0.5)
        mask = (yy >= horizon) & (yy < shore[None, :])
    elif kind == "river":
        # winds from the horizon to the bottom edge, widening with nearness
        t = np.clip((yy - horizon) / max(h - horizon, 1.0), 0.0, 1.0)
        centre_top, centre_bottom = w * rng.uniform(0.3, 0.7), w * rng.uniform(0.2, 0.8)
        wiggle = w * 0.08 * np.sin(t * rng.uniform(4, 8) + rng.uniform(0, 6.3)) * t
        centre = centre_top + (centre_bottom - centre_top) * t + wiggle
        half = w * (0.01 + rng.uniform(0.12, 0.22) * t ** 1.3)
        mask = (yy >= horizon) & (np.abs(xx - centre) < half)
    else:
        # lake or pond: a flattened blob whose far edge sits near the horizon
        cx = w * rng.uniform(0.25, 0.75)
        rx = w * rng.uniform(0.2, 0.45)
        ry = (h - horizon) * rng.uniform(0.2, 0.45)
        cy = horizon + ry * rng.uniform(0.6, 1.1)
        ang = np.arctan2((yy - cy) / ry, (xx - cx) / rx)
        knots = rng.uniform(-1, 1, 16)
        wobble = 1.0 + 0.12 * np.interp(ang, np.linspace(-np.pi, np.pi, 17), np.append(knots, knots[0]))
        mask = (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < wobble ** 2) & (yy >= horizon)
        if kind == "water":
            mask &= yy < cy + ry * rng.uniform(0.3, 0.8)  # a cut-off near shore: a reservoir look
    far = np.clip((yy - horizon) / max(h - horizon, 1.0), 0.0, 1.0)
    cv.paint(mask, kind, 1.12 - 0.2 * far)
    return mask


def _paint_shore(rng, cv, water, horizon):
    if water is None or rng.random() < 0.45:
        return
    h = cv.h
    k = max(3, int(h * rng.uniform(0.02, 0.05))) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, k))
    ring = cv2.dilate(water.astype(np.uint8), kernel).astype(bool) & ~water & (cv.yy > horizon + 1)
    cv.paint(ring, "sand")


def _paint_path(rng, cv, horizon, water):
    if rng.random() > 0.3:
        return
    h, w = cv.h, cv.w
    ys = np.linspace(horizon + (h - horizon) * rng.uniform(0.1, 0.4), h + 2, 24)
    t = (ys - ys[0]) / (ys[-1] - ys[0])
    x_far, x_near = w * rng.uniform(0.3, 0.7), w * rng.uniform(0.2, 0.8)
    centre = x_far + (x_near - x_far) * t ** 1.5 + w * 0.05 * np.sin(t * 5 + rng.uniform(0, 6.3))
    half = w * (0.004 + rng.uniform(0.05, 0.09) * t)
    pts = np.concatenate([np.stack([centre - half, ys], 1), np.stack([centre + half, ys], 1)[::-1]])
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    mask = mask.astype(bool) if water is None else mask.astype(bool) & ~water  # a path stops at the shore
    cv.paint(mask, "path", 1.0 + 0.05 * _noise(rng, h, w, 30))


def _paint_trees(rng, cv, horizon, water):
    h, w = cv.h, cv.w
    n = int(rng.integers(2, 14))
    conifer = rng.random() < 0.4
    for _ in range(n):
        # trees stand on land below the horizon; nearer trees are bigger
        y = horizon + (h - horizon) * rng.uniform(0.0, 1.0) ** 1.6 + 2
        x = w * rng.uniform(0.0, 1.0)
        if water is not None and water[min(int(y), h - 1), min(int(x), w - 1)]:
            continue
        size = h * (0.03 + 0.25 * (y - horizon) / max(h - horizon, 1.0)) * rng.uniform(0.7, 1.3)
        trunk_w, trunk_h = size * 0.12, size * 0.35
        cv.polygon([[x - trunk_w, y], [x + trunk_w, y], [x + trunk_w, y - trunk_h], [x - trunk_w, y - trunk_h]], "trunk")
        crown = (1.05 - 0.25 * np.clip((cv.yy - (y - 2 * size)) / (2 * size), 0, 1)).astype(np.float32)
        if conifer or rng.random() < 0.2:
            half = size * 0.45
            for k in range(3):  # three stacked triangles
                base = y - trunk_h * 0.6 - k * size * 0.45
                cv.polygon([[x - half * (1 - 0.22 * k), base], [x + half * (1 - 0.22 * k), base],
                            [x, base - size * 0.8]], "tree", crown)
        else:
            for _ in range(3):
                cv.polygon(_blob(rng, x + size * rng.uniform(-0.3, 0.3), y - trunk_h - size * rng.uniform(0.2, 0.5),
                                 size * rng.uniform(0.35, 0.5), jag=0.15), "tree", crown)


def _paint_rocks(rng, cv, horizon):
    h, w = cv.h, cv.w
    for _ in range(int(rng.integers(0, 5))):
        y = horizon + (h - horizon) * rng.uniform(0.1, 1.0)
        x = w * rng.uniform(0.0, 1.0)
        r = h * (0.01 + 0.08 * (y - horizon) / max(h - horizon, 1.0)) * rng.uniform(0.6, 1.4)
        lit = (1.12 - 0.3 * np.clip((cv.yy - (y - r)) / (1.6 * r), 0, 1)).astype(np.float32)
        cv.polygon(_blob(rng, x, y, r, n=9, jag=0.3, squash=0.7), "rock", lit)


def _paint_building(rng, cv, horizon, water):
    if rng.random() > 0.25:
        return
    h, w = cv.h, cv.w
    y = horizon + (h - horizon) * rng.uniform(0.05, 0.4)
    x = w * rng.uniform(0.1, 0.85)
    if water is not None and water[min(int(y), h - 1), min(int(x), w - 1)]:
        return
    size = h * (0.06 + 0.2 * (y - horizon) / max(h - horizon, 1.0))
    if rng.random() < 0.5:
        bw, bh = size * rng.uniform(1.0, 1.8), size * rng.uniform(1.4, 2.4)
        cv.polygon([[x, y], [x + bw, y], [x + bw, y - bh], [x, y - bh]], "building")
        rows, cols = int(rng.integers(2, 5)), int(rng.integers(2, 4))
        for r in range(rows):
            for c in range(cols):
                x0 = x + bw * (c + 0.3) / cols
                y0 = y - bh + bh * (r + 0.25) / (rows + 0.5)
                cv.polygon([[x0, y0], [x0 + bw * 0.4 / cols, y0], [x0 + bw * 0.4 / cols, y0 + bh * 0.4 / (rows + 0.5)],
                            [x0, y0 + bh * 0.4 / (rows + 0.5)]], "window")
    else:
        bw, bh = size * rng.uniform(1.2, 2.0), size * rng.uniform(0.6, 0.9)
        cv.polygon([[x, y], [x + bw, y], [x + bw, y - bh], [x, y - bh]], "house_wall")
        cv.polygon([[x - bw * 0.1, y - bh], [x + bw * 1.1, y - bh], [x + bw * 0.5, y - bh - size * 0.6]], "roof")


# ----------------------------------------------------------------------------- rendering
def draw_tone(rng):
    """The scene's lighting: one of ``TONES``, equally likely (the first draw of a scene's rng)."""
    return TONES[int(rng.integers(len(TONES)))]


def _grade(rgb, tone):
    """Apply a tone's saturation, light colour and brightness to float RGB pixels (any leading shape)."""
    grey = (rgb @ _LUMA)[..., None]
    return (grey + tone.saturation * (rgb - grey)) * (np.array(tone.light, np.float32) * tone.brightness)


def _render(rng, cv, horizon, tone):
    """Colour the material map: base colour x texture x shade x sunlight, clouds in the sky, then the tone."""
    h, w = cv.h, cv.w
    rgb = np.zeros((h, w, 3), np.float32)
    jitter = rng.uniform(0.94, 1.06, 3).astype(np.float32)  # white balance of this "camera"
    sun = (1.0 + rng.uniform(-0.06, 0.06) * (cv.xx / w - 0.5) * 2).astype(np.float32)
    relief = 1.0 + tone.shading * (cv.shade * sun - 1.0)
    for mid in np.unique(cv.material):
        name, _cls, base, amp, cells, stretch = _MATERIALS[mid]
        m = cv.material == mid
        if name == "sky":
            colour = _sky(rng, cv, horizon, tone)[m]
        else:
            tex = 1.0 + amp * _fractal(rng, h, w, cells, octaves=3, stretch=stretch)
            colour = (base * rng.uniform(0.96, 1.04, 3))[None, :] * (tex * relief)[m][:, None]
        rgb[m] = colour
    rgb = _grade(rgb, tone) * jitter
    sigma = max(0.4, 0.6 * h / 384)  # a little lens softness on edges
    rgb = cv2.GaussianBlur(rgb, (0, 0), sigma)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def _sky(rng, cv, horizon, tone):
    """Ungraded sky of a tone: a top-to-horizon gradient with clouds, greyer on their undersides low down."""
    h, w = cv.h, cv.w
    top = np.array(tone.sky_top, np.float32) * rng.uniform(0.92, 1.08, 3)
    low = np.array(tone.sky_horizon, np.float32) * rng.uniform(0.96, 1.04, 3)
    t = np.clip(cv.yy / max(horizon, 1.0), 0, 1)[..., None] ** 0.8
    sky = top * (1 - t) + low * t
    cover = rng.uniform(*tone.cover)  # how cloudy
    n = _fractal(rng, h, w, 5, octaves=4, stretch=2.5)
    alpha = np.clip((n - (0.45 - 0.6 * cover)) / 0.35, 0, 1)[..., None] * 0.92
    cloud = (1.0 + 0.06 * _fractal(rng, h, w, 10, octaves=2))[..., None] * np.array(tone.cloud, np.float32)
    cloud *= (1.0 - 0.12 * np.clip(cv.yy / max(horizon, 1.0), 0, 1))[..., None]
    return sky * (1 - alpha) + cloud * alpha


def _rng(rng_or_seed):
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    return np.random.default_rng(rng_or_seed)


def make_scene(rng_or_seed, width, height, return_tone=False):
    """Generate one landscape: ``(rgb HxWx3 uint8, label HxW uint8 class ids)``.

    ``rng_or_seed`` is a ``numpy.random.Generator`` or anything
    ``numpy.random.default_rng`` accepts (an int, a list of ints).
    The same seed and size always give the same arrays. With ``return_tone``
    the result is ``(rgb, label, tone_name)``, the name one of ``TONE_NAMES``.
    """
    rng = _rng(rng_or_seed)
    tone = draw_tone(rng)
    w, h = int(width), int(height)
    cv = _Canvas(h, w)
    horizon = h * rng.uniform(0.38, 0.56)
    cv.paint(np.ones((h, w), bool), "sky")
    _paint_mountains(rng, cv, horizon)
    _paint_ground(rng, cv, horizon)
    water = _paint_water(rng, cv, horizon)
    _paint_shore(rng, cv, water, horizon)
    _paint_path(rng, cv, horizon, water)
    _paint_building(rng, cv, horizon, water)
    _paint_trees(rng, cv, horizon, water)
    _paint_rocks(rng, cv, horizon)
    rgb = _render(rng, cv, horizon, tone)
    label = MATERIAL_CLASS[cv.material]
    return (rgb, label, tone.name) if return_tone else (rgb, label)


# ----------------------------------------------------------------------------- dataset
def scene_seed(seed, split, index):
    """The seed of image ``index`` of ``split`` ("train" or "test"): independent of the split size."""
    return [int(seed), 0 if split == "train" else 1, int(index)]


def scene_tone(seed, split, index):
    """The tone name of image ``index`` of ``split``, without rendering it (its rng's first draw)."""
    return draw_tone(np.random.default_rng(scene_seed(seed, split, index))).name


def class_fractions(label, label_nc=NUM_CLASSES):
    """Fraction of the pixels of a label map in each class: (label_nc,) float64 summing to 1."""
    label = np.asarray(label)
    return np.bincount(label.ravel(), minlength=label_nc)[:label_nc] / label.size


def pick_reference(fractions, candidates):
    """Index of the candidate row (class fractions) that best matches ``fractions`` as a style reference.

    Highest intersection-over-union of the sets of classes present first,
    then the largest shared area ``sum(min(fractions, candidate))``, then
    the lowest index.
    """
    present, cand_present = fractions > 0, candidates > 0
    iou = (cand_present & present).sum(1) / (cand_present | present).sum(1)
    shared = np.minimum(candidates, fractions).sum(1)
    return int(np.lexsort((np.arange(len(candidates)), -shared, -iou))[0])


def reference_mapping(test_fractions, train_fractions):
    """``{test label file: training photo file}`` by ``pick_reference``, for class fractions in index order."""
    train_fractions = np.asarray(train_fractions)
    return {_file_name(TEST_PREFIX, i, ".png"): _file_name(TRAIN_PREFIX, pick_reference(f, train_fractions), ".jpg")
            for i, f in enumerate(test_fractions)}


def _file_name(prefix, index, ext):
    return f"{prefix}_{index:05d}{ext}"


def check_args(num, width, height, num_test, seed=0):
    """Raise ``OptionError`` for sizes or seeds that cannot make a dataset."""
    if seed < 0:
        raise OptionError(f"--seed must be 0 or more (got {seed}).")
    if num < 1:
        raise OptionError(f"--num must be at least 1 (got {num}).")
    if num_test is not None and num_test < 0:
        raise OptionError(f"--num_test must be 0 or more (got {num_test}).")
    if width < 32 or height < 32:
        raise OptionError(f"--width and --height must be at least 32 pixels (got {width}x{height}).")
    if width > 8192 or height > 8192:
        raise OptionError(f"--width and --height must be at most 8192 pixels (got {width}x{height}).")


def default_num_test(num):
    return max(4, num // 5)


def write_dataset(out, num, width, height, seed=0, num_test=None, progress=True):
    """Write ``num`` training pairs and ``num_test`` test pairs under ``out``.

    Layout: ``out/train/imgs/demo_00000.jpg`` + ``out/train/labels/demo_00000.png``
    and ``out/test/imgs/test_00000.jpg`` + ``out/test/labels/test_00000.png``,
    plus the style references ``out/test/label_to_img.json`` (see
    ``reference_mapping``). Returns ``(num, num_test)``.
    """
    check_args(num, width, height, num_test, seed)
    if num_test is None:
        num_test = default_num_test(num)
    jobs = [("train", TRAIN_PREFIX, i) for i in range(num)] + [("test", TEST_PREFIX, i) for i in range(num_test)]
    for split in ("train", "test"):
        for sub in ("imgs", "labels"):
            os.makedirs(os.path.join(out, split, sub), exist_ok=True)
    if progress:
        from tqdm import tqdm
        jobs = tqdm(jobs, desc="demo scenes", unit="img", file=sys.stderr)
    fractions = {"train": [], "test": []}
    for split, prefix, i in jobs:
        rgb, label = make_scene(scene_seed(seed, split, i), width, height)
        save_image(os.path.join(out, split, "imgs", _file_name(prefix, i, ".jpg")), rgb)
        save_label(os.path.join(out, split, "labels", _file_name(prefix, i, ".png")), label)
        fractions[split].append(class_fractions(label))
    mapping = reference_mapping(fractions["test"], fractions["train"])
    atomic_write(os.path.join(out, "test", REFERENCE_JSON), json.dumps(mapping, sort_keys=True, indent=1) + "\n")
    return num, num_test
