"""Alignment: the 150x150 chip dlib's ResNet expects, from the landmarks (68 points by default).

``dlib.get_face_chip`` rotates, scales and crops so that the landmarks land on dlib's reference
positions (a least-squares similarity fit; with 68 points, to the 51 inner ones), with 0.25
padding (the settings of dlib's face recognition example and of the model's training).
Output: uint8 (150, 150, 3) RGB, C-contiguous.
"""

from __future__ import annotations

import dlib
import numpy as np
import numpy.typing as npt

from matcher.face.landmarks import Landmarks
from matcher.face.params import CHIP_PADDING, CHIP_SIZE


def face_chip(rgb: npt.NDArray[np.uint8], landmarks: Landmarks) -> npt.NDArray[np.uint8]:
    """Aligned face chip of ``rgb`` (uint8 (H, W, 3)) -> uint8 (CHIP_SIZE, CHIP_SIZE, 3)."""
    chip = dlib.get_face_chip(rgb, landmarks.shape, size=CHIP_SIZE, padding=CHIP_PADDING)
    return np.ascontiguousarray(chip, dtype=np.uint8)
