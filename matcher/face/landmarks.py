"""Five facial landmarks (dlib's 5-point model) inside a face box.

Points, float32 (5, 2) as (x, y) input pixels, in dlib's order: 0, 1 the outer and inner
corners of the eye on the image's right (the subject's left eye), 2, 3 the outer and inner
corners of the eye on the image's left, 4 the base of the nose (subnasale).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dlib
import numpy as np
import numpy.typing as npt

from matcher.face import models

RIGHT_OF_IMAGE_EYE = (0, 1)
LEFT_OF_IMAGE_EYE = (2, 3)
NOSE = 4


@dataclass(frozen=True)
class Landmarks:
    """``points`` float32 (5, 2); ``shape`` is dlib's full_object_detection (for alignment)."""

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


def locate(rgb: npt.NDArray[np.uint8], box: npt.NDArray[np.int32]) -> Landmarks:
    """Run the 5-point predictor on ``rgb`` (uint8 (H, W, 3), C-contiguous) inside ``box``."""
    left, top, right, bottom = (int(v) for v in box)
    shape = models.five_point_predictor()(rgb, dlib.rectangle(left, top, right, bottom))
    points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32).reshape(5, 2)
    return Landmarks(points=points, shape=shape)
