"""Sobel edge maps of photos, as the COESAK team's training computed its edge targets.

COESAK's train.py (``edge_extract``) writes, before training, one edge PNG per training photo: the photo read
by OpenCV (BGR), converted to grey (OpenCV's fixed-point 0.299 R + 0.587 G + 0.114 B), its 3x3 Sobel
derivatives in x and y as 16-bit integers, their weighted sum 0.5 gx + 0.5 gy, and its absolute value
saturated to uint8 (``cv2.convertScaleAbs``). Note that this is |gx + gy| / 2, not a gradient magnitude: an
edge whose x and y derivatives cancel is invisible, and the map is not mirror-symmetric (flipping the photo
flips the sign of gx only). Its data loader then reads the PNG as RGB (three equal channels) and resizes and
flips it with the photo.

``sobel_edge_map`` computes that map, byte for byte, from an HxWx3 uint8 RGB photo. Pure NumPy/OpenCV.
"""

import cv2
import numpy as np


def sobel_edge_map(rgb):
    """HxW uint8 edge map of an HxWx3 uint8 RGB photo: |0.5 Sobel_x + 0.5 Sobel_y| of its grey image,
    saturated (COESAK's ``edge_extract``)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"sobel_edge_map: expected an HxWx3 uint8 RGB photo, got {rgb.dtype} {rgb.shape}")
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    gx = cv2.Sobel(gray, cv2.CV_16S, 1, 0)
    gy = cv2.Sobel(gray, cv2.CV_16S, 0, 1)
    return cv2.convertScaleAbs(cv2.addWeighted(gx, 0.5, gy, 0.5, 0))
