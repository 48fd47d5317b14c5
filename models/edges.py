"""Edge maps of photo batches: the targets of the edge-guided generator (``--netG spade_edge``).

The detector is the Canny variant of ECGAN's edge script, written as
batched Jittor ops so the targets are computed on the fly, on the device,
from the very photos the generator is compared with (after crop, flip and
any resizing): nothing is cached, so nothing can go stale.

Steps, per image:
1. grey level 0.2989 R + 0.5870 G + 0.1140 B on the 0..255 scale (the
   weights of MATLAB's rgb2gray; not rounded to integers);
2. 5x5 Gaussian smoothing with the integer kernel / 159;
3. Sobel gradients gx (rightwards) and gy (downwards); magnitude sqrt(gx^2+gy^2);
4. non-maximum suppression: the gradient direction is quantised to 0, 45,
   90 or 135 degrees and a pixel is kept where its magnitude is >= both
   neighbours along that direction; the 1-pixel image border is dropped;
5. thresholds relative to the image's largest remaining magnitude M:
   above HIGH * M is an edge, and so is a pixel from LOW * M up to HIGH * M
   with an edge pixel (above HIGH * M) among its 8 neighbours (one step of
   hysteresis, as ECGAN's script does). A magnitude below MIN_MAGNITUDE is
   never an edge, so a flat photo has no edges instead of thresholded
   rounding noise (a step of one grey level has a magnitude of about 2.1).

Unlike ECGAN's script the smoothing and the Sobel filters replicate the
border pixels instead of padding with zeros, which would draw a spurious
frame of edges around every photo.
"""

import math

import jittor as jt
from jittor import nn

from models import convolution

GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)
GAUSSIAN_5X5 = ((2, 4, 5, 4, 2),
                (4, 9, 12, 9, 4),
                (5, 12, 15, 12, 5),
                (4, 9, 12, 9, 4),
                (2, 4, 5, 4, 2))
GAUSSIAN_SUM = 159.0
SOBEL_X = ((-1, 0, 1),
           (-2, 0, 2),
           (-1, 0, 1))
LOW, HIGH = 0.075, 0.175
MIN_MAGNITUDE = 0.5

TAN_22_5 = math.tan(math.pi / 8)
TAN_67_5 = math.tan(3 * math.pi / 8)


def grayscale(images):
    """[N, 3, H, W] photos in [-1, 1] -> [N, 1, H, W] grey levels in [0, 255]."""
    return sum(w * (images[:, c:c + 1] + 1.0) * 127.5 for c, w in enumerate(GRAY_WEIGHTS))


def filter_replicate(x, kernel):
    """Correlate single-channel maps [N, 1, H, W] with ``kernel`` (rows of numbers), border pixels replicated."""
    k = jt.array(kernel).float32()
    pad = k.shape[0] // 2
    return convolution.conv2d(nn.pad(x, (pad, pad, pad, pad), mode="replicate"), k.reshape(1, 1, *k.shape))


def sobel(gray):
    """(gx, gy): Sobel derivatives towards the right and downwards."""
    return filter_replicate(gray, SOBEL_X), filter_replicate(gray, tuple(zip(*SOBEL_X)))


def shifted(x, dy, dx):
    """x[i + dy, j + dx] at every pixel (i, j), zero outside the map."""
    h, w = x.shape[2], x.shape[3]
    padded = nn.pad(x, (1, 1, 1, 1))
    return padded[:, :, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]


def thin(magnitude, gx, gy):
    """Non-maximum suppression: the magnitude where it is a local maximum across the edge, else 0."""
    ax, ay = gx.abs(), gy.abs()
    horizontal = (ay < TAN_22_5 * ax).float32()  # gradient within 22.5 degrees of the x axis
    vertical = (ay > TAN_67_5 * ax).float32() * (1 - horizontal)
    diagonal = 1 - horizontal - vertical
    falling = (gx * gy > 0).float32()  # gradient along the main diagonal (down-right / up-left)

    def is_peak(dy, dx):
        return (magnitude >= jt.maximum(shifted(magnitude, dy, dx), shifted(magnitude, -dy, -dx))).float32()

    peak = (horizontal * is_peak(0, 1) + vertical * is_peak(1, 0)
            + diagonal * (falling * is_peak(1, 1) + (1 - falling) * is_peak(1, -1)))
    h, w = magnitude.shape[2], magnitude.shape[3]
    inner = nn.pad(jt.ones((1, 1, h - 2, w - 2)), (1, 1, 1, 1))
    return magnitude * peak * inner


def hysteresis(thinned):
    """1 where the thinned magnitude is above HIGH * max, or above LOW * max next to such a pixel; else 0
    (and 0 wherever it is below MIN_MAGNITUDE)."""
    top = thinned.max(dims=(1, 2, 3), keepdims=True)
    weak = (thinned >= LOW * top).float32() * (thinned >= MIN_MAGNITUDE).float32()
    strong = weak * (thinned > HIGH * top).float32()
    near_strong = nn.max_pool2d(strong, 3, stride=1, padding=1)
    return jt.maximum(strong, weak * near_strong)


def canny_edges(images):
    """[N, 3, H, W] photos in [-1, 1] -> [N, 1, H, W] edge maps, 1 on edges and 0 elsewhere."""
    smooth = filter_replicate(grayscale(images), GAUSSIAN_5X5) / GAUSSIAN_SUM
    gx, gy = sobel(smooth)
    return hysteresis(thin(jt.sqrt(gx * gx + gy * gy), gx, gy))


def edge_target(images):
    """The edge generator's target for ``images``: Canny edges as +1 on a -1 background (its tanh range)."""
    return (canny_edges(images.detach()) * 2 - 1).stop_grad()
