"""Facial landmarks inside a face box: five points for the quality checks, and the shape the
chip is aligned on.

Points, float32 (5, 2) as (x, y) input pixels, in dlib's order: 0, 1 the outer and inner
corners of the eye on the image's right (the subject's left eye), 2, 3 the outer and inner
corners of the eye on the image's left, 4 the base of the nose (subnasale).

With ``ALIGN_LANDMARKS = 68`` (see :mod:`matcher.face.params`) dlib's 68-point model is run and
the five points are its points of the same definition (eye corners 45, 42, 36, 39 and nose
base 33 of the iBUG 300-W numbering); ``shape`` then holds all 68 points, and the chip is
fitted to them. With 5, the 5-point model gives both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dlib
import numpy as np
import numpy.typing as npt

from matcher.face import models
from matcher.face.params import ALIGN_LANDMARKS

RIGHT_OF_IMAGE_EYE = (0, 1)
LEFT_OF_IMAGE_EYE = (2, 3)
NOSE = 4
#: Indices of the five points above among the 68 (0-based iBUG 300-W numbering).
FIVE_OF_68 = (45, 42, 36, 39, 33)


@dataclass(frozen=True)
class Landmarks:
    """``points`` float32 (5, 2); ``shape`` is dlib's full_object_detection (5 or 68 parts) the
    chip is aligned on."""

    points: npt.NDArray[np.float32]
    shape: Any

    @property
    def eye_centres(self) -> npt.NDArray[np.float32]:
        """(2, 2): the image-left eye centre, then the image-right one."""
        p = self.points
        return np.stack([p[list(LEFT_OF_IMAGE_EYE)].mean(0), p[list(RIGHT_OF_IMAGE_EYE)].mean(0)])

    @property
    def interocular(self) -> float:
        """Distance between the eye centres in input pixels."""
        left, right = self.eye_centres
        return float(np.hypot(*(right - left)))


def locate(
    rgb: npt.NDArray[np.uint8], box: npt.NDArray[np.int32], model: int = ALIGN_LANDMARKS
) -> Landmarks:
    """Run the ``model``-point predictor (5 or 68) on ``rgb`` (uint8 (H, W, 3), C-contiguous)
    inside ``box``."""
    if model not in (5, 68):
        raise ValueError(f"landmark model must be 5 or 68, got {model!r}")
    left, top, right, bottom = (int(v) for v in box)
    predictor = (
        models.sixty_eight_point_predictor() if model == 68 else models.five_point_predictor()
    )
    shape = predictor(rgb, dlib.rectangle(left, top, right, bottom))
    points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32).reshape(model, 2)
    if model == 68:
        points = points[list(FIVE_OF_68)]
    return Landmarks(points=np.ascontiguousarray(points), shape=shape)
