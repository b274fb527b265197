"""Stage 7: ridge/valley binarisation of the enhanced image, with blob and hole cleanup."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from matcher.fingerprint.extract import params as P

Mask = npt.NDArray[np.bool_]


def binarize(enhanced: npt.NDArray[np.float32], mask: Mask) -> Mask:
    """Ridge mask (H, W) bool: enhanced response below zero inside the foreground ``mask``.

    Ridge blobs and valley holes smaller than BIN_MIN_BLOB pixels are removed (dust, pores,
    sweat dots), which would otherwise become short islands and lakes in the skeleton.
    """
    ridges = (enhanced < 0) & mask
    ridges = _drop_small(ridges)
    holes = _drop_small(~ridges & mask)  # the valley components that are large enough
    return mask & ~holes


def _drop_small(m: Mask) -> Mask:
    _, labels, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= P.BIN_MIN_BLOB
    keep[0] = False
    return np.asarray(keep[labels])
