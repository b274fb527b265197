"""Stage 9: minutiae from the skeleton (crossing number) and their directions.

Directions follow ISO/IEC 19794-2 (see ``matcher.fingerprint.template``): an ending points
into the ridge it ends, a bifurcation towards its two arms. Both are "towards the skeleton
mass" seen from the minutia, so the sign of the orientation-field axis is chosen by the mean
offset of the skeleton pixels within DIR_RADIUS (a fork's two arms outweigh its stem).
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np
import numpy.typing as npt

from matcher.fingerprint.extract import params as P
from matcher.fingerprint.extract.thinning import neighbour_codes
from matcher.fingerprint.template import BIFURCATION, ENDING

F32 = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]


class Minutiae(NamedTuple):
    """Raw minutiae, arrays of shape (n,): x, y (int32 pixels), angle (float32, ISO radians),
    kind (uint8 ISO code)."""

    x: npt.NDArray[np.int32]
    y: npt.NDArray[np.int32]
    angle: F32
    kind: npt.NDArray[np.uint8]

    def take(self, index: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> Minutiae:
        """The subset selected by a boolean mask or index array."""
        return Minutiae(self.x[index], self.y[index], self.angle[index], self.kind[index])


def _crossing_lut() -> npt.NDArray[np.uint8]:
    lut = np.zeros(256, dtype=np.uint8)
    for code in range(256):
        b = [(code >> i) & 1 for i in range(8)]
        lut[code] = sum(abs(b[i] - b[(i + 1) % 8]) for i in range(8)) // 2
    return lut


_CN = _crossing_lut()


def detect(skeleton: Mask, theta: F32) -> Minutiae:
    """Endings (crossing number 1) and bifurcations (3) of a (H, W) skeleton.

    ``theta`` is the (H, W) ridge orientation (image angles mod π) used for the direction axis.
    Touching bifurcation pixels (artefacts of 8-thin skeletons) are merged into one fork.
    """
    cn = np.where(skeleton, _CN[neighbour_codes(skeleton)], 0)
    ey, ex = np.nonzero(cn == 1)
    fy, fx = _merge(cn >= 3)
    y = np.concatenate([ey, fy]).astype(np.int32)
    x = np.concatenate([ex, fx]).astype(np.int32)
    kind = np.concatenate(
        [np.full(len(ey), ENDING, np.uint8), np.full(len(fy), BIFURCATION, np.uint8)]
    )
    angle = _directions(skeleton, theta, x, y)
    return Minutiae(x, y, angle, kind)


def _merge(forks: Mask) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    r = P.MERGE_RADIUS
    grown = cv2.dilate(forks.astype(np.uint8), np.ones((2 * r - 1, 2 * r - 1), np.uint8))
    n, labels = cv2.connectedComponents(grown, connectivity=8)
    ys, xs = np.nonzero(forks)
    lab = labels[ys, xs]
    counts = np.bincount(lab, minlength=n)[1:]
    keep = counts > 0
    cy = np.bincount(lab, weights=ys, minlength=n)[1:][keep] / counts[keep]
    cx = np.bincount(lab, weights=xs, minlength=n)[1:][keep] / counts[keep]
    return np.round(cy).astype(np.int64), np.round(cx).astype(np.int64)


def _offsets() -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    r = P.DIR_RADIUS
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    d2 = dy * dy + dx * dx
    ring = (d2 <= r * r) & (d2 > 2)  # skip the minutia's own 3x3 neighbourhood
    return dy[ring].astype(np.int32), dx[ring].astype(np.int32)


_DY, _DX = _offsets()


def _directions(
    skeleton: Mask, theta: F32, x: npt.NDArray[np.int32], y: npt.NDArray[np.int32]
) -> F32:
    if len(x) == 0:
        return np.zeros(0, dtype=np.float32)
    r = P.DIR_RADIUS
    pad = np.pad(skeleton, r)
    hit = pad[y[:, None] + r + _DY[None, :], x[:, None] + r + _DX[None, :]]  # (n, m)
    my = (hit * _DY).sum(axis=1)
    mx = (hit * _DX).sum(axis=1)
    t = theta[y, x].astype(np.float64)
    along = mx * np.cos(t) + my * np.sin(t)
    img_angle = np.where(along >= 0, t, t + np.pi)
    # Image angle (y down, clockwise-positive on screen) -> ISO (counter-clockwise).
    iso = np.mod(-img_angle, 2 * np.pi).astype(np.float32)
    return np.where(iso >= np.float32(2 * np.pi), np.float32(0), iso)
