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
    """bool (CHIP_SIZE, CHIP_SIZE): True where the chip of :func:`face_chip` is made of the
    image of ``image_shape`` (H, W[, C]) alone, False where dlib's black fill beyond the
    border reaches it.

    dlib's own chip of a white (H, W) uint8 image, True where it stays exactly white: the same
    sampling as the face's chip, including the smaller copy of the image dlib cuts large
    chips from (whose fill reaches a pixel or two further in than the chip rectangle says).
    Costs H * W bytes for a moment and well under a millisecond."""
    white = np.full(image_shape[:2], 255, dtype=np.uint8)
    chip = dlib.get_face_chip(white, landmarks.shape, size=CHIP_SIZE, padding=CHIP_PADDING)
    inside: BoolArray = np.asarray(chip) == 255
    return inside
