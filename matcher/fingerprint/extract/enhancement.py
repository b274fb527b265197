"""Stage 6: contextual Gabor filtering (a bank of OpenCV kernels, picked per pixel)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from matcher.fingerprint.extract import params as P

F32 = npt.NDArray[np.float32]


def gabor_kernel(theta: float, period: float) -> F32:
    """Even-symmetric, zero-DC Gabor kernel (k, k) float32 for ridges of image angle ``theta``.

    OpenCV's ``theta`` is the normal of the stripes, so the ridge angle is turned by π/2.
    """
    sx = P.GABOR_SIGMA_ACROSS * period
    sy = P.GABOR_SIGMA_ALONG * period
    half = math.ceil(3 * max(sx, sy))
    ks = 2 * half + 1
    k = cv2.getGaborKernel((ks, ks), sx, theta + math.pi / 2, period, sx / sy, 0, cv2.CV_32F)
    k = k - k.mean()
    return np.asarray(k / np.abs(k).sum(), dtype=np.float32)


def enhance(
    norm: F32,
    theta: F32,
    period: F32,
    median_period: float,
    where: npt.NDArray[np.bool_] | None = None,
) -> F32:
    """Gabor-enhanced image (H, W) float32; ridges negative, valleys positive.

    Orientation is quantised to GABOR_ORIENTATIONS bins; the period to GABOR_PERIOD_BANDS
    multiples of the image median. Every (orientation, band) kernel filters the whole image with
    ``cv2.filter2D`` and each pixel keeps the response of its own bin. With ``where`` (H, W)
    only those pixels are filtered (the others are 0), e.g. the foreground when nothing else
    will be read.
    """
    n_orient = P.GABOR_ORIENTATIONS
    obin = np.round(theta * (n_orient / math.pi)).astype(np.int32) % n_orient
    bands = np.asarray(P.GABOR_PERIOD_BANDS, dtype=np.float32) * np.float32(median_period)
    if len(bands) > 1:
        edges = np.sqrt(bands[1:] * bands[:-1])
        pbin = np.searchsorted(edges, period).astype(np.int32)
    else:
        pbin = np.zeros(theta.shape, dtype=np.int32)
    out = np.zeros_like(norm)
    for bi, bp in enumerate(bands):
        in_band = pbin == bi
        if where is not None:
            in_band &= where
        if not in_band.any():
            continue
        for oi in range(n_orient):
            sel = in_band & (obin == oi)
            if not sel.any():
                continue
            k = gabor_kernel(oi * math.pi / n_orient, float(bp))
            _filter_roi(norm, k, sel, out)
    return out


def _filter_roi(norm: F32, kernel: F32, sel: npt.NDArray[np.bool_], out: F32) -> None:
    """Filter only the bounding box of ``sel`` (plus the kernel's reach); write ``out[sel]``."""
    rows = np.flatnonzero(sel.any(axis=1))
    cols = np.flatnonzero(sel.any(axis=0))
    r = kernel.shape[0] // 2
    h, w = norm.shape
    y0, y1 = rows[0], rows[-1] + 1
    x0, x1 = cols[0], cols[-1] + 1
    py0, py1 = max(0, y0 - r), min(h, y1 + r)
    px0, px1 = max(0, x0 - r), min(w, x1 + r)
    resp = cv2.filter2D(norm[py0:py1, px0:px1], cv2.CV_32F, kernel, borderType=cv2.BORDER_REFLECT)
    inner = resp[y0 - py0 : y1 - py0, x0 - px0 : x1 - px0]
    box = sel[y0:y1, x0:x1]
    out[y0:y1, x0:x1][box] = inner[box]
