"""The kernel's compiled stage (matcher.fingerprint.match.consolidation) against the formulas
written plainly in float64 numpy: pair compatibility ρ and the LSS-R relaxation."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from matcher.fingerprint.match import consolidation as C
from matcher.fingerprint.match import params as P

R = P.N_RELAX


def _z(v: np.ndarray, mu: float, tau: float) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-tau * (v - mu)))


def _chord(cos: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(2.0 - 2.0 * cos, 0.0))


def _reference_rho(pa: np.ndarray, gb: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """ρ[t, k] = Z(d1) Z(d2) Z(d3) as in kernel.py's description, float64, no shortcut."""
    a, b = pa.astype(np.float64), gb.astype(np.float64)
    rc = a[:, 2] * b[:, 2] + a[:, 3] * b[:, 3]  # rotation of each pair, b -> a
    rs = a[:, 3] * b[:, 2] - a[:, 2] * b[:, 3]
    dax = a[None, :, 0] - a[:, None, 0]  # [t, k]: from t to k
    day = a[None, :, 1] - a[:, None, 1]
    dbx = b[None, :, 0] - b[:, None, 0]
    dby = b[None, :, 1] - b[:, None, 1]
    la, lb = np.hypot(dax, day), np.hypot(dbx, dby)
    d1 = np.abs(la - lb)
    d2 = _chord(rc[:, None] * rc[None, :] + rs[:, None] * rs[None, :])
    # Segment t->k of b turned by pair t's rotation, against segment t->k of a.
    turned_x = dbx * rc[:, None] - dby * rs[:, None]
    turned_y = dbx * rs[:, None] + dby * rc[:, None]
    cos3 = (turned_x * dax + turned_y * day) / np.maximum(la * lb, 1e-6)
    d3 = _chord(cos3)
    rho = (
        _z(d1, P.MU_RHO_DIST, P.TAU_RHO_DIST)
        * _z(d2, P.MU_RHO_ROT, P.TAU_RHO_ROT)
        * _z(d3, P.MU_RHO_RADIAL, P.TAU_RHO_RADIAL)
    )
    rho[rho < P.RHO_FLUSH] = 0.0
    rho *= usable[:, None] & usable[None, :]
    np.fill_diagonal(rho, 0.0)
    return rho


def _geometry(xy: np.ndarray, angle: np.ndarray) -> np.ndarray:
    return np.column_stack([xy, np.cos(angle), np.sin(angle)]).astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), turn=st.floats(-1.5, 1.5), noise=st.floats(0.0, 30.0))
def test_compatibility_equals_the_plain_formula(seed: int, turn: float, noise: float) -> None:
    """Pairs from a rotated, shifted, noisy copy (many compatible) or not (few): the compiled ρ,
    with its early stops, equals the plain product of sigmoids."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 300, (R, 2))
    angle = rng.uniform(-np.pi, np.pi, R)
    rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    xy_b = xy @ rot.T + rng.uniform(-50, 50, 2) + rng.normal(0, noise, (R, 2))
    angle_b = angle + turn + rng.normal(0, noise / 100, R)
    pa, gb = _geometry(xy, angle), _geometry(xy_b, angle_b)
    usable = rng.random(R) > 0.15
    rho_t = np.empty((R, R), np.float32)
    C._compatibility(pa, gb, usable, C.FLOAT_CONSTANTS, rho_t)
    expected = _reference_rho(pa, gb, usable)
    np.testing.assert_allclose(rho_t.T, expected, atol=2e-5, rtol=1e-3)
    # Not vacuous: with a small distortion most usable pairs are compatible.
    if noise < 2.0:
        assert (expected > 0.5).sum() >= 0.5 * usable.sum() * (usable.sum() - 1)


def test_relaxation_equals_the_plain_iteration() -> None:
    rng = np.random.default_rng(3)
    local = rng.uniform(0, 1, R).astype(np.float32)
    rho = rng.uniform(0, 1, (R, R)).astype(np.float32)
    np.fill_diagonal(rho, 0.0)
    lam, support = np.empty(R, np.float32), np.empty(R, np.float32)
    C._relax(
        local, np.ascontiguousarray(rho.T), P.RELAX_ITERATIONS, C.FLOAT_CONSTANTS, lam, support
    )
    expected = local.astype(np.float64)
    spread = (1.0 - P.RELAX_WEIGHT) / (R - 1)
    for _ in range(P.RELAX_ITERATIONS):
        expected = P.RELAX_WEIGHT * expected + spread * (rho.astype(np.float64) @ expected)
    np.testing.assert_allclose(lam, expected, rtol=1e-5)
