"""Stage 4: foreground (ridge area) mask from ridge-band contrast and orientation coherence."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from matcher.fingerprint.extract import params as P

F32 = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]


def segment(image: npt.NDArray[np.uint8], coherence: F32) -> Mask:
    """Foreground mask (H, W) bool of a raw (H, W) uint8 image and its (H, W) coherence.

    A pixel is foreground when the ridge-band contrast around it (difference-of-Gaussians
    energy in a Gaussian window of SEG_SIGMA; the band-pass ignores the step from finger to
    paper, which would otherwise widen the mask by a window) is high both in absolute terms
    and relative to the image's best areas, and its ridges are locally parallel. The map is
    closed, opened, stripped of small components and hole-filled. Working per pixel (not per
    block) keeps the boundary within a few pixels of the real contact edge, so ridge cut-offs
    there stay inside the border margin.
    """
    img = image.astype(np.float32)
    band = cv2.GaussianBlur(img, (0, 0), P.SEG_BAND_SIGMAS[0]) - cv2.GaussianBlur(
        img, (0, 0), P.SEG_BAND_SIGMAS[1]
    )
    std = np.sqrt(cv2.GaussianBlur(band * band, (0, 0), P.SEG_SIGMA))
    ref = float(np.percentile(std, 90))
    fg = (std > max(P.SEG_MIN_CONTRAST, P.SEG_REL_CONTRAST * ref)) & (
        coherence > P.SEG_MIN_COHERENCE
    )
    m = fg.astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * P.SEG_MORPH_RADIUS + 1,) * 2)
    m = np.asarray(cv2.morphologyEx(m, cv2.MORPH_CLOSE, k), dtype=np.uint8)
    m = np.asarray(cv2.morphologyEx(m, cv2.MORPH_OPEN, k), dtype=np.uint8)
    m = _keep_large_components(m)
    return np.asarray(_fill_holes(m) > 0)


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
