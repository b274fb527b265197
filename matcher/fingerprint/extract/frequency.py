"""Stage 5: local ridge period from windowed spectra (batched FFT, no per-block loop)."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from matcher.fingerprint.extract import params as P

F32 = npt.NDArray[np.float32]


def _band() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    n = P.FREQ_WINDOW
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.rfftfreq(n)[None, :]
    radius = np.hypot(fy, fx)  # cycles per pixel
    band = (radius >= 1.0 / P.FREQ_MAX_PERIOD) & (radius <= 1.0 / P.FREQ_MIN_PERIOD)
    return radius, band


_RADIUS, _BAND = _band()
_HANN = np.outer(np.hanning(P.FREQ_WINDOW), np.hanning(P.FREQ_WINDOW)).astype(np.float32)


def ridge_period(norm: F32, mask: npt.NDArray[np.bool_]) -> tuple[F32, float]:
    """Ridge period map (H, W) float32 (pixels) and its foreground median.

    Each FREQ_WINDOW window (stride FREQ_STEP) is Hann-weighted and transformed; the period is
    the inverse of the power-weighted mean spatial frequency inside the plausible band.
    Windows outside the foreground take the median, and the window map is smoothed.
    """
    n, step = P.FREQ_WINDOW, P.FREQ_STEP
    h, w = norm.shape
    if h < n or w < n:
        full = np.full((h, w), P.FREQ_DEFAULT_PERIOD, dtype=np.float32)
        return full, P.FREQ_DEFAULT_PERIOD
    win = np.lib.stride_tricks.sliding_window_view(norm, (n, n))[::step, ::step]
    by, bx = win.shape[:2]
    spec = np.abs(np.fft.rfft2(win * _HANN)) ** 2
    power = (spec * _BAND) ** (P.FREQ_POWER_EXPONENT / 2)
    total = power.sum(axis=(2, 3))
    freq = (power * _RADIUS).sum(axis=(2, 3)) / np.maximum(total, 1e-12)
    period = 1.0 / np.maximum(freq, 1e-6)
    cy = np.arange(by) * step + n // 2
    cx = np.arange(bx) * step + n // 2
    inside = mask[np.ix_(cy, cx)] & (total > 0)
    med = float(np.median(period[inside])) if inside.any() else P.FREQ_DEFAULT_PERIOD
    period = np.where(inside, period, med).astype(np.float32)
    period = np.clip(period, P.FREQ_MIN_PERIOD, P.FREQ_MAX_PERIOD)
    period = cv2.GaussianBlur(period, (0, 0), P.FREQ_MAP_SIGMA)
    full = cv2.resize(period, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.asarray(full, dtype=np.float32), med
