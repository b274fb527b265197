"""Alignment: the 150x150 chip dlib's ResNet expects, from the landmarks (68 points by default).

``dlib.get_face_chip`` rotates, scales and crops so that the landmarks land on dlib's reference
positions (a least-squares similarity fit; with 68 points, to the 51 inner ones), with 0.25
padding (the settings of dlib's face recognition example and of the model's training).
Output: uint8 (150, 150, 3) RGB, C-contiguous. Where the chip reaches past the image (a face
cut by the border), dlib fills it with black; :func:`chip_in_frame` says which chip pixels
sample the image.
"""

from __future__ import annotations

import dlib
import numpy as np
import numpy.typing as npt

from matcher.face.landmarks import Landmarks
from matcher.face.params import CHIP_PADDING, CHIP_SIZE

BoolArray = npt.NDArray[np.bool_]


def face_chip(rgb: npt.NDArray[np.uint8], landmarks: Landmarks) -> npt.NDArray[np.uint8]:
    """Aligned face chip of ``rgb`` (uint8 (H, W, 3)) -> uint8 (CHIP_SIZE, CHIP_SIZE, 3)."""
    chip = dlib.get_face_chip(rgb, landmarks.shape, size=CHIP_SIZE, padding=CHIP_PADDING)
    return np.ascontiguousarray(chip, dtype=np.uint8)


def chip_in_frame(image_shape: tuple[int, ...], landmarks: Landmarks) -> BoolArray:
    """bool (CHIP_SIZE, CHIP_SIZE): True where the chip of :func:`face_chip` samples the image
    of ``image_shape`` (H, W[, C]), False where it lies beyond the border.

    dlib maps chip pixel (u, v) to the image point ``centre + R(angle) @ (du, dv)``, with
    ``du = (u / (n - 1) - 0.5) * (width - 1)`` (likewise ``dv``) for the chip rectangle of
    ``dlib.get_face_chip_details`` (checked against dlib's own chip of a white image in
    the tests). Computed from that map, not by a second chip of a white image the size of
    the input."""
    details = dlib.get_face_chip_details(landmarks.shape, size=CHIP_SIZE, padding=CHIP_PADDING)
    rect = details.rect
    centre_x = (rect.left() + rect.right()) / 2.0
    centre_y = (rect.top() + rect.bottom()) / 2.0
    t = np.arange(CHIP_SIZE, dtype=np.float64) / (CHIP_SIZE - 1) - 0.5
    du = t[None, :] * (rect.width() - 1)
    dv = t[:, None] * (rect.height() - 1)
    cos, sin = np.cos(details.angle), np.sin(details.angle)
    x = centre_x + cos * du - sin * dv
    y = centre_y + sin * du + cos * dv
    height, width = image_shape[:2]
    inside: BoolArray = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    return inside
