"""Stage 1: validate the input array and bring it to the working resolution (500 ppi)."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from matcher.errors import ImageError
from matcher.fingerprint.extract import params as P

U8 = npt.NDArray[np.uint8]


def validate(image: object) -> U8:
    """Check that ``image`` is a (H, W) uint8 array of plausible size; return it contiguous."""
    if not isinstance(image, np.ndarray):
        raise ImageError(
            f"expected a numpy array, got {type(image).__name__}", reason="not_an_image"
        )
    if image.dtype != np.uint8:
        raise ImageError(
            f"expected 8-bit grayscale (uint8), got dtype {image.dtype}", reason="bad_dtype"
        )
    if image.ndim != 2:
        raise ImageError(
            f"expected a 2-d grayscale array (H, W), got shape {image.shape}", reason="bad_shape"
        )
    if image.size == 0:
        raise ImageError(f"image has no pixels (shape {image.shape})", reason="empty_image")
    return np.ascontiguousarray(image)


def to_working_resolution(image: U8, ppi: float) -> U8:
    """Resample (H, W) uint8 from ``ppi`` to :data:`params.TARGET_PPI`; (H', W') uint8."""
    if not np.isfinite(ppi) or not P.MIN_PPI <= ppi <= P.MAX_PPI:
        raise ImageError(
            f"resolution {ppi} ppi is outside {P.MIN_PPI:g}..{P.MAX_PPI:g}", reason="bad_resolution"
        )
    scale = P.TARGET_PPI / ppi
    h, w = image.shape
    nh, nw = round(h * scale), round(w * scale)
    if min(nh, nw) < P.MIN_SIDE:
        raise ImageError(
            f"image is {w}x{h} at {ppi:g} ppi; at least {P.MIN_SIDE} pixels per side at "
            f"{P.TARGET_PPI:g} ppi are needed",
            reason="too_small",
        )
    if max(nh, nw) > P.MAX_SIDE:
        raise ImageError(
            f"image is {w}x{h} at {ppi:g} ppi; a single finger needs at most {P.MAX_SIDE} "
            f"pixels per side at {P.TARGET_PPI:g} ppi",
            reason="too_large",
        )
    if (nh, nw) == (h, w):
        return image
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return np.asarray(cv2.resize(image, (nw, nh), interpolation=interp), dtype=np.uint8)
