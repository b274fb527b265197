"""Smooth random fields: the building block of every slowly varying synthetic quantity."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], length: float) -> F32:
    """A zero-mean, unit-variance random field with correlation length ``length`` px.

    White noise is drawn on a grid ``length / 2`` px apart and upsampled by bicubic
    interpolation, which costs O(H·W) whatever the length (a Gaussian blur of full-size noise
    would cost O(H·W·length)). Returns float32 of ``shape`` (H, W).
    """
    h, w = shape
    step = max(length / 2.0, 1.0)
    gh, gw = int(np.ceil(h / step)) + 2, int(np.ceil(w / step)) + 2
    coarse = rng.standard_normal((gh, gw)).astype(np.float32)
    fine = cv2.resize(coarse, (int(gw * step), int(gh * step)), interpolation=cv2.INTER_CUBIC)
    field = np.ascontiguousarray(fine[:h, :w])
    std = float(field.std())
    return ((field - field.mean()) / (std if std > 0 else 1.0)).astype(np.float32)
