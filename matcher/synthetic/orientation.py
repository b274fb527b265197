"""Orientation field from singular points: Sherlock–Monro zero-pole model, Vizcaya–Gerhardt warp.

Sherlock and Monro (1993) model the ridge orientation at ``z = x + iy`` as

    θ(z) = φ + ½ [ Σ_cores g_c(arg(z − c) − φ) − Σ_deltas g_d(arg(z − d) − φ) ]

where ``φ`` is the finger's tilt. With ``g(α) = α`` this is the original model; Vizcaya and
Gerhardt (1996) replace each ``g`` by a piecewise-linear monotone warp of the argument fitted to
real prints. Here the warp is ``g(α) = α + Σ_k a_k sin(k α + ψ_k)`` with random small ``a_k``
(``Σ k|a_k| < 1`` keeps it monotone, so singular points are neither created nor removed): the
same freedom, drawn at random instead of fitted. Plain arches have no singular points; their
field comes from ridges shaped like ``y = c − h·exp(−u²/2s²)`` (a bump of slope at most
``A``), fading above and below the pad's middle.

Everything is batched: one call evaluates ``B`` fingers at ``(B, ...)`` points, so the template
fast path and the image generator share this code. Angles are in image coordinates (``y`` down)
and returned modulo π in ``[0, π)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

#: Vertical extent (px) over which an arch's bump fades above/below its centre line.
ARCH_FADE = 120.0


@dataclass(frozen=True)
class FlowModel:
    """Parameters of the orientation field of ``B`` fingers (padded to equal counts).

    Shapes: ``points`` (B, S, 2) singular point (x, y); ``sign`` (B, S) +1 delta, -1 core,
    0 padding; ``warp_a``/``warp_phase`` (B, S, K) Vizcaya–Gerhardt warp; ``tilt`` (B,);
    ``arch_slope``, ``arch_width`` (B,) (slope 0 for fingers with singular points);
    ``centre`` (B, 2) pad centre.
    """

    points: F64
    sign: F64
    warp_a: F64
    warp_phase: F64
    tilt: F64
    arch_slope: F64
    arch_width: F64
    centre: F64

    @property
    def batch(self) -> int:
        return int(self.tilt.shape[0])


def orientation(model: FlowModel, x: npt.ArrayLike, y: npt.ArrayLike) -> F64:
    """Ridge orientation in [0, π) at points ``x``, ``y`` of shape (B, ...)."""
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    b = model.batch
    extra = (1,) * (xa.ndim - 1)

    def per_finger(v: F64) -> F64:
        return v.reshape((b, *extra))

    tilt = per_finger(model.tilt)
    theta = np.broadcast_to(tilt, xa.shape).copy()
    for s in range(model.points.shape[1]):  # over singular points (≤ 4), never over pixels
        px = per_finger(model.points[:, s, 0])
        py = per_finger(model.points[:, s, 1])
        alpha = np.arctan2(ya - py, xa - px) - tilt
        for k in range(model.warp_a.shape[2]):
            a = per_finger(model.warp_a[:, s, k])
            ph = per_finger(model.warp_phase[:, s, k])
            alpha = alpha + a * np.sin((k + 1) * alpha + ph)
        theta -= 0.5 * per_finger(model.sign[:, s]) * alpha
    # Plain arches: rotate into the finger frame, add the bump's slope angle.
    cx = per_finger(model.centre[:, 0])
    cy = per_finger(model.centre[:, 1])
    c, s_ = np.cos(tilt), np.sin(tilt)
    u = (xa - cx) * c + (ya - cy) * s_
    v = -(xa - cx) * s_ + (ya - cy) * c
    width = per_finger(model.arch_width)
    slope = per_finger(model.arch_slope)
    r = u / width
    bump = slope * r * np.exp(0.5 - 0.5 * r * r) * np.exp(-((v / ARCH_FADE) ** 2))
    theta += np.arctan(bump)
    return np.mod(theta, np.pi)


def singularity_distance(model: FlowModel, x: npt.ArrayLike, y: npt.ArrayLike) -> F64:
    """Distance (px) from points (B, ...) to the nearest singular point (inf if none)."""
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    extra = (1,) * (xa.ndim - 1)
    best = np.full(xa.shape, np.inf)
    for s in range(model.points.shape[1]):
        px = model.points[:, s, 0].reshape((-1, *extra))
        py = model.points[:, s, 1].reshape((-1, *extra))
        real = (model.sign[:, s] != 0).reshape((-1, *extra))
        d = np.hypot(xa - px, ya - py)
        best = np.where(real, np.minimum(best, d), best)
    return best
