"""Steps 2–6 of the kernel (after the GEMM), compiled: best partners, LSS-R, alignment check,
orientation-field agreement, score.

The GEMM leaves a (nb*M, mp) matrix of integer dot products. Everything after it is small,
per-template work (M rows, R = N_RELAX candidate pairs, R x R compatibilities) that numpy can
only do as ~60 whole-array passes over (nb, M, mp) and (nb, R, R) temporaries; those passes
cost more than the GEMM itself. Here one compiled loop per template does the same arithmetic
in registers and cache (numba; ``nogil`` so that search shards run it on both cores).

Every step works on one template's rows only, with index-ordered tie-breaking, so a template's
score does not depend on the other templates of the block, on the block size or on the
padding M. Arithmetic is float32 as in the array form of the algorithm (``kernel.py`` gives
the steps), so the constants are passed in as float32 arrays, never as Python floats (which
would promote to float64), and never read from module globals (numba freezes globals at
compile time and its on-disk cache would keep stale tunables).

Array arguments (shapes as in ``kernel.py``): ``prod`` (nb*M, mp) float32 GEMM output;
``p_inv`` (mp,), ``p_geo`` (mp, 4) probe; ``g_inv`` (nb, M), ``g_geo`` (nb, M, 4),
``counts`` (nb,) gallery; ``n_pairs_table`` (MAX_MINUTIAE + 1,) int64; ``fields``: the
probe's orientation field (rows, cols) uint8 and the gallery's (nb, rows, cols) uint8 (255 =
background; an all-background (1, 1) field stands for none); outputs (nb, R) or (nb,).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

from matcher.fingerprint.match import params

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
Bool = npt.NDArray[np.bool_]
#: A probe as the compiled code takes it: inv_norm (mp,), geometry (mp, 4), minutia count.
Probe = tuple[F32, F32, int]
#: The probe's minutiae in a grid (see :func:`probe_grid`): origin x, y and cell side (float32
#: (3,)); columns, rows (int64 (2,)); one code per cell (int32 (rows * columns,)); the probe's
#: geometry with a far-away dummy row appended (float32 (mp + 1, 4)).
Grid = tuple[F32, I64, I32, F32]
#: See :func:`empty_outputs`.
Outputs = tuple[I64, I64, Bool, F32, F32, F32, Bool, I64, F32, I64, I64, F32, F32, I64]
#: Orientation fields as the compiled code takes them: probe (rows, cols), gallery (nb, rows,
#: cols), uint8 codes.
Fields = tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]


def _beyond(mu: float, tau: float) -> float:
    """The v above which Z(v, μ, τ) < RHO_FLUSH (τ < 0): ρ is then flushed whatever the other
    factors (each at most 1), so a pair can stop there."""
    return mu + math.log(1.0 / params.RHO_FLUSH - 1.0) / -tau


def _cos_beyond(mu: float, tau: float) -> float:
    """The same for a chord 2 sin(θ/2), as a bound on cos θ (chord > c <=> cos θ < 1 - c²/2)."""
    return 1.0 - _beyond(mu, tau) ** 2 / 2.0


#: Float constants, in the order :func:`post_gemm` reads them.
FLOAT_CONSTANTS = np.array(
    [
        math.cos(params.MAX_DIRECTION_DIFF),
        params.MU_RHO_DIST,
        params.TAU_RHO_DIST,
        params.MU_RHO_ROT,
        params.TAU_RHO_ROT,
        params.MU_RHO_RADIAL,
        params.TAU_RHO_RADIAL,
        params.RHO_FLUSH,
        params.RELAX_WEIGHT,
        (1.0 - params.RELAX_WEIGHT) / (params.N_RELAX - 1),
        _cos_beyond(params.MU_RHO_ROT, params.TAU_RHO_ROT),
        _beyond(params.MU_RHO_DIST, params.TAU_RHO_DIST),
        params.ALIGN_DISTANCE**2,
        math.cos(params.ALIGN_ANGLE),
        params.ALIGN_WEIGHT,
        float(params.ALIGN_MIN_OVERLAP),
        params.ALIGN_OVERLAP,
        params.ALIGN_CELL,
        params.ALIGN_DISTANCE,
        1.0 / (1.0 + params.ALIGN_WEIGHT + params.FIELD_WEIGHT),
        float(params.ALIGN_GRID_SIDE),
        params.FIELD_WEIGHT,
        params.FIELD_FLOOR,
        float(params.FIELD_FULL_BLOCKS),
        float(params.FIELD_BLOCK),
    ],
    np.float32,
)
#: cos and sin of the doubled orientation 2a of each field code a (degrees 0..179); 0 for the
#: codes that are not angles (the background code is skipped before it is read).
_CODES = np.arange(256)
FIELD_COS = np.where(_CODES < 180, np.cos(np.radians(2.0 * _CODES)), 0.0).astype(np.float32)
FIELD_SIN = np.where(_CODES < 180, np.sin(np.radians(2.0 * _CODES)), 0.0).astype(np.float32)
#: The field of a template without one: a single background block.
NO_FIELD = np.full((1, 1), 255, np.uint8)
#: Integer constants: R, relaxation iterations, MAX_MINUTIAE.
INT_CONSTANTS = np.array([params.N_RELAX, params.RELAX_ITERATIONS, params.MAX_MINUTIAE], np.int64)


@numba.njit(cache=True, nogil=True)
def _chord(cos: np.float32) -> np.float32:
    """Angle given by its cosine -> chord 2 sin(θ/2) = sqrt(2 - 2 cos θ) (see kernel.py)."""
    v = cos * np.float32(-2.0) + np.float32(2.0)
    if v < np.float32(0.0):
        v = np.float32(0.0)
    return np.float32(np.sqrt(v))


@numba.njit(cache=True, nogil=True)
def _one_plus_exp(v: np.float32, mu: np.float32, tau: np.float32) -> np.float32:
    """1 + exp(-τ (v - μ)): the reciprocal of MCC's sigmoid Z(v, μ, τ); inf means Z = 0."""
    return np.float32(np.float32(1.0) + np.exp((v - mu) * -tau))


@numba.njit(cache=True, nogil=True, fastmath={"nnan"})
def _row_max(row: F32, p_inv: F32) -> np.float32:
    """max_j row[j] * p_inv[j]. NaN cannot occur, and saying so lets the loop use SIMD lanes
    (a maximum does not round, so the order of comparisons cannot change the result)."""
    bv = row[0] * p_inv[0]
    for j in range(1, p_inv.shape[0]):
        bv = max(bv, row[j] * p_inv[j])
    return bv


@numba.njit(cache=True, nogil=True)
def _best_partners(
    prod: F32, b: int, m: int, probe: Probe, g_inv: F32, g_geo: F32, count: int,
    cos_max: np.float32, sim: F32, best: I64,
) -> None:  # fmt: skip
    """Rows of template b: best probe partner (first of equal maxima) and its similarity, 0 when
    the directions differ by more than MAX_DIRECTION_DIFF, -1 on padding."""
    p_inv, p_geo, probe_count = probe
    for i in range(m):
        best[i] = 0
        if i >= count or probe_count == 0:
            sim[i] = np.float32(-1.0)
            continue
        row = prod[b * m + i]
        bv = _row_max(row, p_inv)
        bj = 0
        while row[bj] * p_inv[bj] != bv:
            bj += 1
        s = bv * g_inv[b, i]
        turn = p_geo[bj, 2] * g_geo[b, i, 2] + p_geo[bj, 3] * g_geo[b, i, 3]
        if turn < cos_max:
            s = np.float32(0.0)
        sim[i] = s
        best[i] = bj


@numba.njit(cache=True, nogil=True)
def top_rows(values: F32, r: int, out: I64, vals: F32) -> None:
    """``out[:r]``: indices of the r largest of ``values`` (1-D, at least r long), ties to the
    lowest index, ascending; ``vals`` (r,) is scratch. One pass keeps the best r in a small
    buffer sorted by value; a value enters only when strictly greater than the buffer's last,
    so an earlier index wins a tie. Then the r indices are put in ascending order."""
    n = 0
    for i in range(values.shape[0]):
        v = values[i]
        if n == r and not v > vals[r - 1]:
            continue
        j = n if n < r else r - 1
        while j > 0 and v > vals[j - 1]:
            if j < r:
                vals[j] = vals[j - 1]
                out[j] = out[j - 1]
            j -= 1
        vals[j] = v
        out[j] = i
        n = min(n + 1, r)
    for i in range(1, r):  # insertion sort of the indices
        x = out[i]
        j = i
        while j > 0 and out[j - 1] > x:
            out[j] = out[j - 1]
            j -= 1
        out[j] = x


@numba.njit(cache=True, nogil=True)
def _compatibility(pa: F32, gb: F32, usable: Bool, fc: F32, rho_t: F32) -> None:
    """ρ between candidate pairs, written transposed: ``rho_t[k, t]`` = ρ(t, k) (R, R);
    pa, gb (R, 4) probe/gallery geometry.

    d1 = difference of the distances a_t-a_k and b_t-b_k; d2 = difference of the two pairs'
    rotations; d3 = angle between segment a_t->a_k and segment b_t->b_k turned by pair t's
    rotation; d2, d3 as chords. ρ = 1 / ((1 + e1)(1 + e2)(1 + e3)) = Z(d1) Z(d2) Z(d3), zero
    for unusable pairs, on the diagonal and below RHO_FLUSH. The symmetric factors (d1, d2)
    are computed once per pair, and a pair stops as soon as d2 or d1 alone is beyond the value
    where its factor is below RHO_FLUSH (``_beyond``: every factor is at most 1, so ρ would be
    flushed anyway). Among the candidates of an impostor, half stop at d2 (before any square
    root or exp) and three quarters of the rest at d1.
    """
    r = pa.shape[0]
    flush = fc[7]
    rc = np.empty(r, np.float32)
    rs = np.empty(r, np.float32)
    for t in range(r):
        rc[t] = pa[t, 2] * gb[t, 2] + pa[t, 3] * gb[t, 3]
        rs[t] = pa[t, 3] * gb[t, 2] - pa[t, 2] * gb[t, 3]
    rho_t[:, :] = np.float32(0.0)
    for t in range(r):
        if not usable[t]:
            continue
        for k in range(t + 1, r):
            turn = rc[t] * rc[k] + rs[t] * rs[k]
            if not usable[k] or turn < fc[10]:  # Z(d2) alone below the flush
                continue
            dax = pa[k, 0] - pa[t, 0]
            day = pa[k, 1] - pa[t, 1]
            dbx = gb[k, 0] - gb[t, 0]
            dby = gb[k, 1] - gb[t, 1]
            la = np.float32(np.sqrt(dax * dax + day * day))
            lb = np.float32(np.sqrt(dbx * dbx + dby * dby))
            d1 = abs(la - lb)
            if d1 > fc[11]:  # Z(d1) alone below the flush
                continue
            f12 = _one_plus_exp(d1, fc[1], fc[2]) * _one_plus_exp(_chord(turn), fc[3], fc[4])
            lengths = la * lb
            if lengths < np.float32(1e-6):
                lengths = np.float32(1e-6)
            # d3 seen from t (segment t->k, t's rotation) and from k (segment k->t, k's).
            dot = dbx * dax + dby * day
            cross = dbx * day - dby * dax
            d3_t = _chord((dot * rc[t] + cross * rs[t]) / lengths)
            d3_k = _chord((dot * rc[k] + cross * rs[k]) / lengths)
            v_t = np.float32(1.0) / (f12 * _one_plus_exp(d3_t, fc[5], fc[6]))
            v_k = np.float32(1.0) / (f12 * _one_plus_exp(d3_k, fc[5], fc[6]))
            if v_t >= flush:
                rho_t[k, t] = v_t
            if v_k >= flush:
                rho_t[t, k] = v_k


@numba.njit(cache=True, nogil=True)
def _relax(local: F32, rho_t: F32, iterations: int, fc: F32, lam: F32, support: F32) -> None:
    """LSS-R relaxation into ``lam``: λ <- wR λ + spread Σk ρ[t, k] λk, from λ = local. The sum
    runs over k in order for every t at once (rows of ρ transposed: SIMD lanes across t)."""
    r = local.shape[0]
    weight, spread = fc[8], fc[9]
    lam[:] = local
    for _ in range(iterations):
        support[:] = np.float32(0.0)
        for k in range(r):
            lk = lam[k]
            for t in range(r):
                support[t] += rho_t[k, t] * lk
        for t in range(r):
            lam[t] = lam[t] * weight + support[t] * spread


@numba.njit(cache=True, nogil=True)
def probe_grid(p_geo: F32, count: int, fc: F32) -> Grid:
    """The probe's minutiae in a grid of square cells covering them with a margin wider than
    ALIGN_OVERLAP.

    Each cell holds one code: 2 * j + flag, where j is the probe minutia nearest to the
    cell's centre among those within ALIGN_DISTANCE + half the cell diagonal of it (the lowest
    index of equally near ones; ``count``, a far-away dummy, when there is none), and flag is
    1 when the centre lies within ALIGN_OVERLAP of some probe minutia. Built once per probe, so
    that aligning a gallery template costs one transform and one look-up per gallery minutia.
    Cells are ALIGN_CELL wide, or wider where the minutiae spread over more than
    ALIGN_GRID_SIDE cells (coordinates far beyond a plain impression's), so that the grid's
    size stays bounded whatever the template says.
    """
    reach = fc[16]
    x0, y0, x1, y1 = np.float32(0.0), np.float32(0.0), np.float32(0.0), np.float32(0.0)
    if count > 0:
        x0, y0 = p_geo[0, 0], p_geo[0, 1]
        x1, y1 = x0, y0
        for j in range(1, count):
            x0, x1 = min(x0, p_geo[j, 0]), max(x1, p_geo[j, 0])
            y0, y1 = min(y0, p_geo[j, 1]), max(y1, p_geo[j, 1])
    cell = max(fc[17], max(x1 - x0, y1 - y0) / fc[20])
    near = fc[18] + cell * np.float32(0.7072)  # > half the diagonal, sqrt(2) / 2
    margin = max(reach, near) + cell
    # Half a cell more, so that the extreme minutiae sit at cell centres rather than on the
    # cell boundaries (where rounding would decide the cell of a minutia aligned onto them).
    start = margin + np.float32(0.5) * cell
    origin = np.array([x0 - start, y0 - start, cell], np.float32)
    shape = np.array(
        [
            int((x1 - x0 + np.float32(2.0) * margin) / cell) + 2,
            int((y1 - y0 + np.float32(2.0) * margin) / cell) + 2,
        ],
        np.int64,
    )
    nx, ny = shape[0], shape[1]
    flags = np.zeros(nx * ny, np.int32)
    nearest = np.full(nx * ny, count, np.int32)
    nearest_d2 = np.full(nx * ny, np.float32(np.inf), np.float32)
    for j in range(count):
        fx = (p_geo[j, 0] - origin[0]) / cell
        fy = (p_geo[j, 1] - origin[1]) / cell
        span = margin / cell
        for iy in range(max(int(fy - span) - 1, 0), min(int(fy + span) + 1, ny - 1) + 1):
            dy = origin[1] + (np.float32(iy) + np.float32(0.5)) * cell - p_geo[j, 1]
            for ix in range(max(int(fx - span) - 1, 0), min(int(fx + span) + 1, nx - 1) + 1):
                dx = origin[0] + (np.float32(ix) + np.float32(0.5)) * cell - p_geo[j, 0]
                d2 = dx * dx + dy * dy
                c = iy * nx + ix
                if d2 <= reach * reach:
                    flags[c] = 1
                if d2 <= near * near and d2 < nearest_d2[c]:
                    nearest_d2[c] = d2
                    nearest[c] = j
    codes = nearest * 2 + flags
    points = np.empty((count + 1, 4), np.float32)
    points[:count] = p_geo[:count]
    points[count, 0] = points[count, 1] = np.float32(1e9)  # the dummy: matches nothing
    points[count, 2] = points[count, 3] = np.float32(0.0)
    return origin, shape, codes, points


@numba.njit(cache=True, nogil=True, inline="always")
def _transform(
    pts: F32, g_geo: F32, b: int, pi: int, row: int
) -> tuple[np.float32, np.float32, np.float32, np.float32]:
    """cos, sin, tx, ty turning and shifting gallery template b so that its minutia ``row``
    lies on probe minutia ``pi``."""
    c = pts[pi, 2] * g_geo[b, row, 2] + pts[pi, 3] * g_geo[b, row, 3]
    s = pts[pi, 3] * g_geo[b, row, 2] - pts[pi, 2] * g_geo[b, row, 3]
    tx = pts[pi, 0] - (c * g_geo[b, row, 0] - s * g_geo[b, row, 1])
    ty = pts[pi, 1] - (s * g_geo[b, row, 0] + c * g_geo[b, row, 1])
    return c, s, tx, ty


@numba.njit(cache=True, nogil=True, inline="always")
def _align(
    g_geo: F32, b: int, count: int, transform: tuple[np.float32, np.float32, np.float32,
    np.float32], grid: Grid, fc: F32, scratch: F32, cells: I64, used: I64,
) -> tuple[int, int]:  # fmt: skip
    """Gallery template b turned and shifted by ``transform`` (:func:`_transform`): (gallery
    minutiae whose grid cell's probe minutia lies within ALIGN_DISTANCE and
    ALIGN_ANGLE of them and was not taken by an earlier row: one-to-one; gallery minutiae in a
    cell flagged as the probe's area). ``scratch`` (4, M) and ``cells`` (M,) are work space;
    ``used`` (mp + 1,) holds the last template index that took each probe minutia. A first,
    branch-free loop transforms every minutia (SIMD lanes); the second makes one look-up each,
    with conditional moves rather than branches (which a CPU cannot predict here)."""
    origin, shape, codes, pts = grid
    dummy = pts.shape[0] - 1
    nx, ny = shape[0], shape[1]
    top_x, top_y = np.float32(nx - 1), np.float32(ny - 1)
    per_cell = np.float32(1.0) / origin[2]
    c, s, tx, ty = transform
    for i in range(count):
        x = c * g_geo[b, i, 0] - s * g_geo[b, i, 1] + tx
        y = s * g_geo[b, i, 0] + c * g_geo[b, i, 1] + ty
        scratch[0, i] = x
        scratch[1, i] = y
        scratch[2, i] = c * g_geo[b, i, 2] - s * g_geo[b, i, 3]
        scratch[3, i] = s * g_geo[b, i, 2] + c * g_geo[b, i, 3]
        # Off the grid means far from every probe minutia: clamp onto the (empty) border cells.
        fx = min(max((x - origin[0]) * per_cell, np.float32(0.0)), top_x)
        fy = min(max((y - origin[1]) * per_cell, np.float32(0.0)), top_y)
        cells[i] = np.int64(fy) * nx + np.int64(fx)
    aligned = 0
    overlap = 0
    for i in range(count):
        code = codes[cells[i]]
        overlap += code & 1
        j = code >> 1
        dx = pts[j, 0] - scratch[0, i]
        dy = pts[j, 1] - scratch[1, i]
        close = dx * dx + dy * dy <= fc[12]
        turned = pts[j, 2] * scratch[2, i] + pts[j, 3] * scratch[3, i] >= fc[13]
        hit = close & turned & (used[j] != b)
        used[j if hit else dummy] = b  # the dummy's entry is never read as a match
        aligned += hit
    return aligned, overlap


@numba.njit(cache=True, nogil=True)
def _field_agreement(
    p_field: npt.NDArray[np.uint8], g_field: npt.NDArray[np.uint8], b: int,
    transform: tuple[np.float32, np.float32, np.float32, np.float32], fc: F32,
    f_cos: F32, f_sin: F32,
) -> tuple[np.float32, int]:  # fmt: skip
    """(mean cos 2Δθ, blocks) over the foreground blocks of gallery field b whose centre,
    turned and shifted by ``transform`` (geometry frame: x right, y up), lands on a foreground
    block of the probe's field; (0, 0) when none does. The gallery's doubled angle is turned
    by twice the rotation: cos 2(θp - θg - turn) = cos 2θp cos(2θg + 2 turn) + sin 2θp
    sin(2θg + 2 turn), all from the code tables."""
    c, s, tx, ty = transform
    side = fc[24]
    per_block = np.float32(1.0) / side
    c2 = c * c - s * s
    s2 = np.float32(2.0) * c * s
    rows, cols = p_field.shape[0], p_field.shape[1]
    top_x, top_y = np.float32(cols), np.float32(rows)
    total = np.float32(0.0)
    n = 0
    for r in range(g_field.shape[1]):
        cy = -(np.float32(r) + np.float32(0.5)) * side
        for q in range(g_field.shape[2]):
            code = g_field[b, r, q]
            if code == 255:
                continue
            cx = (np.float32(q) + np.float32(0.5)) * side
            fx = (c * cx - s * cy + tx) * per_block
            fy = -(s * cx + c * cy + ty) * per_block
            if not (fx >= np.float32(0.0) and fy >= np.float32(0.0) and fx < top_x and fy < top_y):
                continue
            pc = p_field[int(fy), int(fx)]
            if pc == 255:
                continue
            gc = f_cos[code] * c2 - f_sin[code] * s2
            gs = f_sin[code] * c2 + f_cos[code] * s2
            total += f_cos[pc] * gc + f_sin[pc] * gs
            n += 1
    if n == 0:
        return np.float32(0.0), 0
    return np.float32(total / np.float32(n)), n


@numba.njit(cache=True, nogil=True)
def post_gemm(
    prod: F32, m: int, probe: Probe, grid: Grid, g_inv: F32, g_geo: F32, counts: I64,
    n_pairs_table: I64, fc: F32, ic: I64, fields: Fields, f_cos: F32, f_sin: F32, out: Outputs,
) -> None:  # fmt: skip
    """Steps 2–6 for every template of the block; fills ``out`` (see :func:`empty_outputs`)."""
    out_p, out_g, out_usable, out_local, out_relaxed, out_eff, out_selected, out_np = out[:8]
    out_score, out_aligned, out_overlap, out_lssr, out_agreement, out_blocks = out[8:]
    p_field, g_field = fields
    _, p_geo, probe_count = probe
    nb = counts.shape[0]
    r, iterations, max_minutiae = ic[0], ic[1], ic[2]
    sim = np.empty(m, np.float32)
    best = np.empty(m, np.int64)
    g_idx = np.empty(r, np.int64)
    top_vals = np.empty(r, np.float32)
    pa = np.zeros((r, 4), np.float32)
    gb = np.empty((r, 4), np.float32)
    usable = np.empty(r, np.bool_)
    local = np.empty(r, np.float32)
    lam = np.empty(r, np.float32)
    support = np.empty(r, np.float32)
    rho_t = np.empty((r, r), np.float32)
    key = np.empty(r, np.float32)
    scratch = np.empty((4, m), np.float32)
    cells = np.empty(m, np.int64)
    used = np.full(grid[3].shape[0], -1, np.int64)
    for b in range(nb):
        _best_partners(prod, b, m, probe, g_inv, g_geo, counts[b], fc[0], sim, best)
        top_rows(sim, r, g_idx, top_vals)
        for t in range(r):
            row = g_idx[t]
            pi = best[row]
            usable[t] = sim[row] > np.float32(0.0)
            local[t] = sim[row] if usable[t] else np.float32(0.0)
            for c in range(4):
                if probe_count > 0:
                    pa[t, c] = p_geo[pi, c]
                gb[t, c] = g_geo[b, row, c]
            out_p[b, t] = pi
            out_g[b, t] = row
        _compatibility(pa, gb, usable, fc, rho_t)
        _relax(local, rho_t, iterations, fc, lam, support)
        # Rank pairs by efficiency λ / λ0, best first (ties: lower index first; unusable pairs
        # last); the nP best usable ones are averaged.
        for t in range(r):
            eff = lam[t] / local[t] if usable[t] else np.float32(0.0)
            out_eff[b, t] = eff
            key[t] = -eff if usable[t] else np.float32(1.0)
        # The most supported usable pair (first of equal λ; λ > 0) seeds the alignment (step 5).
        seed = -1
        most = np.float32(0.0)
        for t in range(r):
            better = usable[t] & (lam[t] > most)
            most = lam[t] if better else most
            seed = t if better else seed
        n_pairs = n_pairs_table[max(min(counts[b], probe_count, max_minutiae), 0)]
        total = np.float32(0.0)
        for t in range(r):
            rank = 0
            for u in range(r):
                if key[u] < key[t] or (key[u] == key[t] and u < t):
                    rank += 1
            chosen = rank < n_pairs and usable[t]
            out_selected[b, t] = chosen
            if chosen:
                total += lam[t]
            out_usable[b, t] = usable[t]
            out_local[b, t] = local[t]
            out_relaxed[b, t] = lam[t]
        out_np[b] = n_pairs
        lssr = np.float32(total / n_pairs)
        # Step 5: alignment on the seed pair, if any; step 6: orientation fields under it.
        aligned, overlap = 0, 0
        agreement, blocks = np.float32(0.0), 0
        if seed >= 0:
            transform = _transform(grid[3], g_geo, b, out_p[b, seed], out_g[b, seed])
            aligned, overlap = _align(
                g_geo, b, counts[b], transform, grid, fc, scratch, cells, used
            )
            agreement, blocks = _field_agreement(p_field, g_field, b, transform, fc, f_cos, f_sin)
        share = np.float32(aligned) / max(np.float32(overlap), fc[15])
        gain = (agreement - fc[22]) / (np.float32(1.0) - fc[22])
        gain = min(max(gain, np.float32(0.0)), np.float32(1.0))
        cover = min(np.float32(blocks) / fc[23], np.float32(1.0))
        out_aligned[b] = aligned
        out_overlap[b] = overlap
        out_lssr[b] = lssr
        out_agreement[b] = agreement
        out_blocks[b] = blocks
        field_term = fc[21] * gain * gain * cover
        out_score[b] = (lssr + fc[14] * share * share + field_term) * fc[19]  # in [0, 1]


def empty_outputs(nb: int) -> Outputs:
    """The arrays :func:`post_gemm` fills for a block of nb templates, in the order of
    :class:`matcher.fingerprint.match.kernel.Consolidation`: probe and gallery index, usable,
    local, relaxed, efficiency, selected (nb, R); n_pairs, score, aligned, overlap, lssr,
    field agreement, field blocks (nb,)."""
    r = params.N_RELAX
    return (
        np.empty((nb, r), np.int64),
        np.empty((nb, r), np.int64),
        np.empty((nb, r), np.bool_),
        np.empty((nb, r), np.float32),
        np.empty((nb, r), np.float32),
        np.empty((nb, r), np.float32),
        np.empty((nb, r), np.bool_),
        np.empty(nb, np.int64),
        np.empty(nb, np.float32),
        np.empty(nb, np.int64),
        np.empty(nb, np.int64),
        np.empty(nb, np.float32),
        np.empty(nb, np.float32),
        np.empty(nb, np.int64),
    )
