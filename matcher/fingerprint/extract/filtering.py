"""Stage 10: remove false minutiae (border cut-offs, spurs, bridges, breaks, clusters, noise)."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from matcher.fingerprint.extract import params as P
from matcher.fingerprint.extract.minutiae import Minutiae
from matcher.fingerprint.template import ENDING

F32 = npt.NDArray[np.float32]


def border_distance(mask: npt.NDArray[np.bool_]) -> F32:
    """Distance (H, W) float32 of each pixel to the nearest background or image-edge pixel."""
    m = np.pad(mask.astype(np.uint8), 1)
    d = cv2.distanceTransform(m, cv2.DIST_L2, 5)
    return np.asarray(d[1:-1, 1:-1], dtype=np.float32)


def keep_mask(m: Minutiae, dist: F32, coherence: F32) -> npt.NDArray[np.bool_]:
    """Boolean (n,) selecting the minutiae that survive every rule.

    * closer than BORDER_MARGIN to the foreground edge, or in incoherent regions: dropped;
    * pairs closer than PAIR_MIN_DISTANCE (spur + fork, bridge, hole, island): both dropped;
    * facing endings closer than BREAK_MAX_DISTANCE (a broken ridge): both dropped;
    * minutiae with more than CLUSTER_MAX_NEIGHBOURS others within CLUSTER_RADIUS: dropped.
    Pair rules use all candidates (before the border rule) so a spur's partner is found even
    when one end lies in the margin.
    """
    n = len(m.x)
    if n == 0:
        return np.zeros(0, dtype=bool)
    keep = (dist[m.y, m.x] >= P.BORDER_MARGIN) & (coherence[m.y, m.x] >= P.MIN_LOCAL_COHERENCE)
    x = m.x.astype(np.float32)
    y = m.y.astype(np.float32)
    dx = x[None, :] - x[:, None]
    dy = y[None, :] - y[:, None]
    d = np.hypot(dx, dy)
    np.fill_diagonal(d, np.inf)
    keep &= ~(d < P.PAIR_MIN_DISTANCE).any(axis=1)
    keep &= ~_broken_ridges(m, d, dx, dy).any(axis=1)
    keep &= (d < P.CLUSTER_RADIUS).sum(axis=1) <= P.CLUSTER_MAX_NEIGHBOURS
    return keep


def _broken_ridges(m: Minutiae, d: F32, dx: F32, dy: F32) -> npt.NDArray[np.bool_]:
    """(n, n) True where endings i and j face each other across a gap."""
    ending = m.kind == ENDING
    both = ending[:, None] & ending[None, :] & (d < P.BREAK_MAX_DISTANCE)
    # ISO angle -> image direction (cos a, -sin a). An ending points into its own ridge, so
    # across a gap the partner lies *behind* it: direction i is opposite to the vector i->j.
    ux = np.cos(m.angle).astype(np.float32)
    uy = -np.sin(m.angle).astype(np.float32)
    tol = np.cos(P.BREAK_ANGLE_TOLERANCE)
    dist = np.maximum(d, 1e-6)
    behind_i = -(ux[:, None] * dx + uy[:, None] * dy) / dist >= tol
    opposite = (ux[:, None] * ux[None, :] + uy[:, None] * uy[None, :]) <= -tol
    return np.asarray(both & behind_i & behind_i.T & opposite)
