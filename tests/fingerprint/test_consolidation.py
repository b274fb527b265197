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


def _reference_alignment(
    probe: np.ndarray, gallery: np.ndarray, pi: int, row: int, origin: np.ndarray, shape: np.ndarray
) -> tuple[int, int]:
    """The alignment check as params.py and consolidation.probe_grid describe it, float64: the
    gallery turned and shifted so that ``row`` lies on probe minutia ``pi``; each gallery minutia
    looks up its grid cell (clamped to the grid); it is in the probe's area when the cell's centre
    lies within ALIGN_OVERLAP of a probe minutia, and it is aligned when the probe minutia nearest
    to that centre (within ALIGN_DISTANCE + half the cell diagonal) lies within ALIGN_DISTANCE of
    it with directions within ALIGN_ANGLE and no earlier gallery minutia took it."""
    p, g = probe.astype(np.float64), gallery.astype(np.float64)
    c = p[pi, 2] * g[row, 2] + p[pi, 3] * g[row, 3]
    s = p[pi, 3] * g[row, 2] - p[pi, 2] * g[row, 3]
    rot = np.array([[c, -s], [s, c]])
    xy = g[:, :2] @ rot.T
    xy += p[pi, :2] - xy[row]
    direction = g[:, 2:] @ rot.T
    cell = P.ALIGN_CELL
    index = np.clip(np.floor((xy - origin) / cell), 0, shape[:2] - 1)
    centres = origin + (index + 0.5) * cell
    to_probe = np.hypot(*(centres[:, None, :] - p[None, :, :2]).transpose(2, 0, 1))
    overlap = int((to_probe <= P.ALIGN_OVERLAP).any(axis=1).sum())
    taken: set[int] = set()
    for i in range(len(g)):
        near = to_probe[i] <= P.ALIGN_DISTANCE + cell * 0.7072
        if not near.any():
            continue
        j = int(np.argmin(np.where(near, to_probe[i], np.inf)))
        close = np.hypot(*(p[j, :2] - xy[i])) <= P.ALIGN_DISTANCE
        turned = p[j, 2:] @ direction[i] >= np.cos(P.ALIGN_ANGLE)
        if close and turned and j not in taken:
            taken.add(j)
    return len(taken), overlap


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), turn=st.floats(-1.5, 1.5), noise=st.floats(0.0, 12.0))
def test_alignment_check_equals_the_plain_definition(seed: int, turn: float, noise: float) -> None:
    """A rotated, shifted, noisy, partly overlapping copy: the compiled grid look-ups count what
    the plain definition counts, and a clean copy aligns completely."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    xy = rng.uniform(0, 300, (n, 2))
    angle = rng.uniform(-np.pi, np.pi, n)
    rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    xy_b = (xy + rng.normal(0, noise, (n, 2))) @ rot.T + rng.uniform(-100, 100, 2)
    angle_b = angle + turn + rng.normal(0, noise / 50, n)
    keep = rng.random(n) > 0.2
    keep[0] = True
    probe, gallery = _geometry(xy[keep], angle[keep]), _geometry(xy_b, angle_b)
    extra = rng.uniform(-200, 500, (10, 2))  # some far outside the probe's area
    gallery = np.vstack([gallery, _geometry(extra, rng.uniform(-np.pi, np.pi, 10))])
    grid = C.probe_grid(probe, len(probe), C.FLOAT_CONSTANTS)
    origin, shape = grid[0][:2].astype(np.float64), grid[1]
    margin = max(P.ALIGN_OVERLAP, P.ALIGN_DISTANCE + P.ALIGN_CELL * 0.7072) + P.ALIGN_CELL
    start = margin + P.ALIGN_CELL / 2
    np.testing.assert_allclose(origin, probe[:, :2].min(axis=0) - start, rtol=1e-6, atol=1e-4)
    far = (origin + shape * P.ALIGN_CELL) - probe[:, :2].max(axis=0)
    assert np.all(far >= margin)
    assert grid[0][2] == P.ALIGN_CELL
    m = len(gallery)
    scratch, cells = np.empty((4, m), np.float32), np.empty(m, np.int64)
    used = np.full(len(probe) + 1, -1, np.int64)
    got = C._align(
        gallery[None],
        0,
        m,
        C._transform(grid[3], gallery[None], 0, 0, 0),
        grid,
        C.FLOAT_CONSTANTS,
        scratch,
        cells,
        used,
    )
    assert got == _reference_alignment(probe, gallery, 0, 0, origin, shape)
    # One-to-one: a second copy of the gallery in the same template takes nothing more.
    twice = np.vstack([gallery, gallery])
    s2, c2 = np.empty((4, 2 * m), np.float32), np.empty(2 * m, np.int64)
    used[:] = -1
    again = C._align(
        twice[None],
        0,
        2 * m,
        C._transform(grid[3], twice[None], 0, 0, 0),
        grid,
        C.FLOAT_CONSTANTS,
        s2,
        c2,
        used,
    )
    assert again == (got[0], 2 * got[1])
    assert got[0] <= got[1]  # an aligned minutia is in the probe's area
    if noise == 0.0:  # the probe's minutia 0 is the gallery's minutia 0: all kept ones align
        # (but for the rare one whose cell centre lies nearer another probe minutia)
        assert got[0] >= 0.9 * keep.sum()


def test_alignment_grid_stays_small_for_absurd_coordinates() -> None:
    """Minutiae spread over an ISO-sized 16,383 px square get wider cells, not a huge grid, and a
    clean copy still aligns."""
    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 16_383, (40, 2))
    angle = rng.uniform(-np.pi, np.pi, 40)
    probe = _geometry(xy, angle)
    origin, shape, codes, _ = C.probe_grid(probe, 40, C.FLOAT_CONSTANTS)
    assert shape.max() <= P.ALIGN_GRID_SIDE + 50 and codes.size == shape.prod()
    assert origin[2] > P.ALIGN_CELL
    scratch, cells = np.empty((4, 40), np.float32), np.empty(40, np.int64)
    grid = (origin, shape, codes, _)
    used = np.full(41, -1, np.int64)
    got = C._align(
        probe[None],
        0,
        40,
        C._transform(grid[3], probe[None], 0, 3, 3),
        grid,
        C.FLOAT_CONSTANTS,
        scratch,
        cells,
        used,
    )
    assert got == (40, 40)
