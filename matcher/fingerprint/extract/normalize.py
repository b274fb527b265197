"""Stage 2: local contrast normalisation (zero local mean, unit local contrast)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from matcher.fingerprint.extract import params as P

F32 = npt.NDArray[np.float32]


def normalize(image: npt.NDArray[np.uint8]) -> F32:
    """(H, W) uint8 -> (H, W) float32 with about zero mean and unit contrast; ridges negative.

    Subtracts a Gaussian local mean and divides by the local standard deviation (floored by
    :data:`params.NORM_MIN_STD`), so dry/wet and light/dark regions end up comparable.
    """
    img = image.astype(np.float32)
    mean = smooth(img, P.NORM_SIGMA)
    centered = img - mean
    var = smooth(centered * centered, P.NORM_SIGMA)
    std = np.sqrt(np.maximum(var, 0.0, dtype=np.float32))
    return np.asarray(centered / np.maximum(std, P.NORM_MIN_STD), dtype=np.float32)


def smooth(a: F32, sigma: float) -> F32:
    """Approximate Gaussian blur of (H, W) float32 by two box filters of the same variance.

    Box filters cost the same for any width, where a wide Gaussian kernel does not.
    """
    width = max(1, round(math.sqrt(6 * sigma * sigma + 1)))
    width += 1 - width % 2
    once = cv2.blur(a, (width, width), borderType=cv2.BORDER_REFLECT)
    return np.asarray(cv2.blur(once, (width, width), borderType=cv2.BORDER_REFLECT), np.float32)
