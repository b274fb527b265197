"""Stage 3: ridge orientation field and its coherence (gradient structure tensor).

Angles here are *image* angles: radians from +x towards +y (y down), ridge orientation modulo
π. The conversion to the ISO convention (counter-clockwise, y up) happens in ``minutiae``.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np
import numpy.typing as npt

from matcher.fingerprint.extract import params as P
from matcher.fingerprint.extract.normalize import smooth

F32 = npt.NDArray[np.float32]


class OrientationField(NamedTuple):
    """theta: (H, W) float32 ridge orientation in [0, π); coherence: (H, W) float32 in [0, 1]."""

    theta: F32
    coherence: F32


def orientation_field(norm: F32) -> OrientationField:
    """Ridge orientation of a normalised (H, W) float32 image.

    The doubled-angle gradient tensor (Gxx - Gyy, 2 Gxy) is smoothed at ridge scale, turned
    into unit vectors weighted by their coherence and smoothed again at field scale, which keeps
    strong, consistent areas in charge and lets noisy patches inherit from their surroundings.
    """
    img = cv2.GaussianBlur(norm, (0, 0), P.ORIENT_GRAD_SIGMA)
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
    s = P.ORIENT_TENSOR_SIGMA
    gxx = cv2.GaussianBlur(gx * gx, (0, 0), s)
    gyy = cv2.GaussianBlur(gy * gy, (0, 0), s)
    gxy = cv2.GaussianBlur(gx * gy, (0, 0), s)
    vx = gxx - gyy
    vy = 2.0 * gxy
    energy = gxx + gyy + np.float32(1e-6)
    # Coherence-weighted unit vectors: |v| / energy is the local coherence.
    vx /= energy
    vy /= energy
    sf = P.ORIENT_FIELD_SIGMA
    svx = smooth(vx, sf)
    svy = smooth(vy, sf)
    coherence = np.clip(np.sqrt(svx * svx + svy * svy), 0.0, 1.0).astype(np.float32)
    # Gradient direction is 0.5 * atan2(vy, vx); ridges run perpendicular to it.
    theta = (0.5 * np.arctan2(svy, svx) + np.pi / 2) % np.pi
    return OrientationField(theta.astype(np.float32), coherence)


def refine_orientation(field: OrientationField, enhanced: F32) -> OrientationField:
    """Orientation re-estimated on the Gabor-enhanced (H, W) image and blended with ``field``.

    The enhanced image has clean, continuous ridges where the raw one had pores, dots and
    blotches, so its gradients give a steadier orientation there; where enhancement only
    imposed the first field on noise, the second estimate repeats the first and changes
    nothing. The two estimates are summed as coherence-weighted doubled-angle vectors (the
    second weighted by ORIENT_REFINE_WEIGHT). The coherence stays the raw image's: it measures
    how clear the *input* is, which the enhanced image no longer shows.
    """
    second = orientation_field(enhanced)
    w = np.float32(P.ORIENT_REFINE_WEIGHT)
    c1, c2 = field.coherence, second.coherence * w
    vx = c1 * np.cos(2.0 * field.theta) + c2 * np.cos(2.0 * second.theta)
    vy = c1 * np.sin(2.0 * field.theta) + c2 * np.sin(2.0 * second.theta)
    theta = (0.5 * np.arctan2(vy, vx)) % np.pi
    return OrientationField(theta.astype(np.float32), field.coherence)
