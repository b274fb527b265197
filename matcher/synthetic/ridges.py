"""Ridge pattern grown by iterative contextual (Gabor) filtering, as in SFinGe.

Start from sparse random impulses; at every iteration filter the current pattern with a bank of
Gabor filters (``GABOR_ORIENTATIONS`` × ``GABOR_PERIODS`` kernels from
``cv2.getGaborKernel``), keep at each pixel the response of the kernel tuned to its local
orientation and period, normalise and clip to [-1, 1]. Each pass extends the pattern by about a
kernel radius and straightens it along the flow, so after a dozen passes a stable ridge/valley
pattern covers the canvas; minutiae appear where growth fronts from different seeds meet out
of phase. Cost per pass: one ``cv2.filter2D`` per kernel (FFT-based for kernels this size) and
a vectorised per-pixel selection; no Python loop over pixels.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from matcher.synthetic import params as P

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

#: Pixels whose response is below this fraction of the maximum are "not grown yet" and are left
#: out of the normalisation statistics (early passes are mostly empty).
ACTIVE_FRACTION = 1e-3


def gabor_kernel(theta: float, period: float) -> F32:
    """Even Gabor kernel for ridges of orientation ``theta`` (image coords) and ``period`` px.

    ``cv2.getGaborKernel``'s ``theta`` is the direction the cosine varies along, i.e. the ridge
    normal. The DC component is removed (flat regions give no response) and the kernel is
    scaled to unit L1 norm so every bin's response is on the same scale.
    """
    sigma = P.GABOR_SIGMA_ACROSS * period
    gamma = P.GABOR_SIGMA_ACROSS / P.GABOR_SIGMA_ALONG
    half = int(np.ceil(P.GABOR_EXTENT * P.GABOR_SIGMA_ALONG * period))
    raw = cv2.getGaborKernel(
        (2 * half + 1, 2 * half + 1), sigma, theta + np.pi / 2, period, gamma, 0.0, ktype=cv2.CV_32F
    )
    kernel = np.asarray(raw, dtype=np.float64)
    kernel = kernel - kernel.mean()
    return (kernel / np.abs(kernel).sum()).astype(np.float32)


def bin_weights(orientation: F32, period: F32) -> tuple[I64, F32, npt.NDArray[np.float64]]:
    """Bilinear blend of the bank: per pixel the 4 surrounding (orientation, period) kernels.

    Returns ``bins`` (4, H, W) bank indices, ``weights`` (4, H, W) summing to 1 per pixel and
    the bank's periods (GABOR_PERIODS,). Blending, rather than picking the nearest kernel,
    avoids seams along the lines where the nearest kernel changes.
    """
    n_o, n_p = P.GABOR_ORIENTATIONS, P.GABOR_PERIODS
    o = np.mod(orientation, np.pi) / (np.pi / n_o)
    o0 = np.floor(o)
    to = (o - o0).astype(np.float32)
    o0i = o0.astype(np.int64) % n_o
    o1i = (o0i + 1) % n_o
    periods = np.linspace(P.PERIOD_LIMITS[0], P.PERIOD_LIMITS[1], n_p)
    p = np.clip((period - periods[0]) / (periods[1] - periods[0]), 0, n_p - 1 - 1e-6)
    p0 = np.floor(p)
    tp = (p - p0).astype(np.float32)
    p0i = p0.astype(np.int64)
    bins = np.stack(
        [p0i * n_o + o0i, p0i * n_o + o1i, (p0i + 1) * n_o + o0i, (p0i + 1) * n_o + o1i]
    )
    weights = np.stack([(1 - tp) * (1 - to), (1 - tp) * to, tp * (1 - to), tp * to])
    return bins, weights.astype(np.float32), periods


Plan = list[tuple[int, int, int, int, list[tuple[int, I64, F32]]]]


def _tile_plan(bins: I64, weights: F32) -> Plan:
    """Split the canvas into tiles; per tile: (bin, flat pixel indices, weights) triples."""
    _, h, w = bins.shape
    t = P.GROWTH_TILE
    plan: Plan = []
    for y0 in range(0, h, t):
        for x0 in range(0, w, t):
            tb = bins[:, y0 : y0 + t, x0 : x0 + t].reshape(4, -1)
            tw = weights[:, y0 : y0 + t, x0 : x0 + t].reshape(4, -1)
            entries = []
            for k in np.unique(tb[tw > 0]):
                hit = (tb == k) & (tw > 0)
                weight = np.where(hit, tw, 0.0).sum(axis=0)
                pixels = np.flatnonzero(weight > 0)
                entries.append((int(k), pixels, weight[pixels].astype(np.float32)))
            th, tw_ = min(t, h - y0), min(t, w - x0)
            plan.append((y0, x0, th, tw_, entries))
    return plan


def grow_ridges(
    orientation: F32,
    period: F32,
    rng: np.random.Generator,
    iterations: int = P.GROWTH_ITERATIONS,
) -> F32:
    """Grow a ridge pattern following ``orientation`` and ``period`` (both (H, W) float32).

    Returns float32 (H, W) in [-1, 1]; positive values are ridges. The canvas is processed in
    tiles so each tile is filtered only by the few kernels its pixels select (a smooth field
    has 1–4 orientation bins per tile), which is about 6× less work than filtering the whole
    canvas with every kernel; results are identical to whole-canvas filtering because each
    tile is filtered with a margin of the largest kernel radius.
    """
    h, w = orientation.shape
    bins, weights, periods = bin_weights(orientation, period)
    n_o = P.GABOR_ORIENTATIONS
    plan = _tile_plan(bins, weights)
    used = sorted({k for *_, entries in plan for k, _, _ in entries})
    kernels = {k: gabor_kernel((k % n_o) * np.pi / n_o, float(periods[k // n_o])) for k in used}
    margin = max(k.shape[0] for k in kernels.values()) // 2
    n_seeds = max(1, round(h * w * P.SEED_DENSITY))
    flat = np.zeros(h * w, np.float32)
    seeds = rng.choice(h * w, size=n_seeds, replace=False)
    flat[seeds] = rng.choice(np.array([-1.0, 1.0], np.float32), size=n_seeds)
    image = flat.reshape(h, w)
    out = np.empty((h, w), np.float32)
    for _ in range(iterations):
        padded = cv2.copyMakeBorder(image, margin, margin, margin, margin, cv2.BORDER_REFLECT)
        for y0, x0, th, tw, entries in plan:
            roi = padded[y0 : y0 + th + 2 * margin, x0 : x0 + tw + 2 * margin]
            dest = np.zeros(th * tw, np.float32)
            for k, pixels, weight in entries:
                response = cv2.filter2D(roi, cv2.CV_32F, kernels[k])
                inner = response[margin : margin + th, margin : margin + tw].ravel()
                dest[pixels] += weight * inner[pixels]
            out[y0 : y0 + th, x0 : x0 + tw] = dest.reshape(th, tw)
        magnitude = np.abs(out)
        active = magnitude[magnitude > magnitude.max() * ACTIVE_FRACTION]
        scale = float(np.percentile(active, 90)) if active.size else 1.0
        image = np.clip(out * (P.GROWTH_GAIN / scale), -1.0, 1.0)
    return image.astype(np.float32)
