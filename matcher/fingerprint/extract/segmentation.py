"""Stage 4: foreground (ridge area) mask from block contrast and orientation coherence."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from matcher.fingerprint.extract import params as P

F32 = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]


def _block_mean(a: F32, block: int) -> F32:
    h, w = a.shape
    bh, bw = max(1, h // block), max(1, w // block)
    return np.asarray(cv2.resize(a, (bw, bh), interpolation=cv2.INTER_AREA), dtype=np.float32)


def segment(image: npt.NDArray[np.uint8], coherence: F32) -> Mask:
    """Foreground mask (H, W) bool of a raw (H, W) uint8 image and its (H, W) coherence.

    A block is foreground when its grey-level contrast is high both in absolute terms and
    relative to the image's best blocks, and its ridges are locally parallel. The block map is
    closed, opened, stripped of small components and hole-filled, then brought back to pixels.
    """
    img = image.astype(np.float32)
    b = P.SEG_BLOCK
    mean = _block_mean(img, b)
    sq = _block_mean(img * img, b)
    std = np.sqrt(np.maximum(sq - mean * mean, 0.0))
    coh = _block_mean(coherence, b)
    ref = float(np.percentile(std, 90))
    fg = (std > max(P.SEG_MIN_CONTRAST, P.SEG_REL_CONTRAST * ref)) & (coh > P.SEG_MIN_COHERENCE)
    m = fg.astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * P.SEG_MORPH_BLOCKS + 1,) * 2)
    m = np.asarray(cv2.morphologyEx(m, cv2.MORPH_CLOSE, k), dtype=np.uint8)
    m = np.asarray(cv2.morphologyEx(m, cv2.MORPH_OPEN, k), dtype=np.uint8)
    m = _keep_large_components(m)
    m = _fill_holes(m)
    h, w = image.shape
    full = cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    full = cv2.GaussianBlur(full, (0, 0), b / 2)
    return np.asarray(full > 0.5)


def _keep_large_components(m: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=4)
    if n <= 1:
        return m
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.zeros(n, dtype=np.uint8)
    keep[1:] = areas >= P.SEG_MIN_COMPONENT_FRACTION * areas.max()
    return keep[labels]


def _fill_holes(m: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Background components not touching the image border become foreground."""
    inv = (1 - m).astype(np.uint8)
    n, labels = cv2.connectedComponents(inv, connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    outside = np.zeros(n, dtype=bool)
    outside[border] = True
    outside[0] = False  # label 0 is the foreground of ``inv`` (the mask itself)
    return np.where(outside[labels], 0, 1).astype(np.uint8)
