"""The batch comparison kernel: one probe against a packed block of ``nb`` templates.

Shapes: probe ``mp`` minutiae; block ``nb`` templates of ``M`` rows; ``d`` descriptor length;
``R = params.N_RELAX`` candidate pairs per template.

1. Local similarities, one GEMM: gallery rows (nb*M, d) @ probe (d, mp). Descriptors hold small
   integers, so the product is exact in float32 whatever the BLAS summation order. Each value
   times both inverse norms is the cosine similarity of two cylinders.
2. Each gallery minutia keeps its best probe partner (argmax over the probe axis); partners
   whose directions differ by more than MAX_DIRECTION_DIFF are dropped (MCC's δθ).
3. The R gallery minutiae with the best partners are relaxed (MCC's LSS-R): pair compatibilities
   (nb, R, R) from distance, relative rotation and radial angle; RELAX_ITERATIONS updates.
4. Score: mean relaxed similarity of the nP pairs whose similarity the relaxation kept best
   (efficiency = relaxed / initial), nP growing with the smaller minutia count.

Differences from MCC, all for batch speed: cylinders are coarser (128 values, see params);
local similarity is the cosine of the integer cylinders (one GEMM) rather than MCC's normalised
Euclidean distance over commonly valid cells; candidates are per-reference-row best partners,
a fixed R of them, rather than a sort of the whole similarity matrix (measured: same accuracy,
one argmax pass instead of a partition per template). Scores are invariant to translation and
to rotation up to MAX_DIRECTION_DIFF (±90°).

Everything after the GEMM works on per-template rows with fixed-length reductions and
deterministic, index-ordered tie-breaking, so a template's score does not depend on the other
templates of the block, on the block size or on the padding ``M``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from matcher.fingerprint.match import params
from matcher.fingerprint.match.types import (
    PackedTemplates,
    SearchTemplate,
    check_packed,
    check_search_template,
)

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Consolidation:
    """Every intermediate of the kernel for a block; arrays (nb, R) unless noted.

    ``probe_index``/``gallery_index``: minutia indices of each candidate pair; ``usable``: pair
    took part (real, valid cylinders, compatible directions); ``local``: initial (local)
    similarity λ0; ``relaxed``: λ after relaxation; ``efficiency``: relaxed / local;
    ``selected``: the pairs averaged into the score; ``n_pairs`` (nb,): nP; ``score`` (nb,).
    """

    probe_index: I64
    gallery_index: I64
    usable: npt.NDArray[np.bool_]
    local: F32
    relaxed: F32
    efficiency: F32
    selected: npt.NDArray[np.bool_]
    n_pairs: I64
    score: F32


def _sigmoid(v: npt.NDArray[np.floating], mu: float, tau: float) -> npt.NDArray[np.floating]:
    """MCC's Z(v, μ, τ) = 1 / (1 + exp(-τ (v - μ)))."""
    # exp may overflow to inf for far-off values: the sigmoid is then exactly 0, as intended.
    with np.errstate(over="ignore"):
        return np.asarray(1.0 / (1.0 + np.exp(np.float32(-tau) * (v - np.float32(mu)))))


#: nP for every possible smaller minutia count 0..MAX_MINUTIAE (a table, so that no per-template
#: transcendental function runs on arrays of varying length).
_N_PAIRS = (
    params.MIN_NP
    + np.rint(
        _sigmoid(np.arange(params.MAX_MINUTIAE + 1, dtype=np.float64), params.MU_P, params.TAU_P)
        * (params.MAX_NP - params.MIN_NP)
    )
).astype(np.int64)


def _positions(nb: int, r: int) -> I64:
    """(nb, r) array whose every row is 0..r-1."""
    return np.broadcast_to(np.arange(r, dtype=np.int64), (nb, r))


def top_k_rows(values: npt.NDArray[np.floating], k: int) -> I64:
    """Indices (nb, k), ascending, of the k largest entries of each row of ``values`` (nb, L).

    Ties at the k-th value go to the lowest indices, so the choice depends only on the row's
    values in index order (padding appended at the end, smaller than all, changes nothing).
    """
    nb, length = values.shape
    kth = np.partition(values, length - k, axis=1)[:, length - k]
    greater = values > kth[:, None]
    equal = values == kth[:, None]
    need = k - greater.sum(axis=1)
    take = equal & (np.cumsum(equal, axis=1) <= need[:, None])
    return np.nonzero(greater | take)[1].reshape(nb, k).astype(np.int64)


def _best_partners(probe: SearchTemplate, gallery: PackedTemplates) -> tuple[F32, I64]:
    """(nb, M) best local similarity of each gallery row (-1 on padding) and its probe index."""
    nb, m, d = gallery.descriptors.shape
    prod = gallery.descriptors.reshape(nb * m, d) @ probe.descriptors.T  # (nb*M, mp), exact
    prod *= probe.inv_norm
    best_i = prod.argmax(axis=1)[:, None]  # (nb*M, 1)
    sim = np.take_along_axis(prod, best_i, axis=1).reshape(nb, m)
    best_i = best_i.reshape(nb, m)
    sim *= gallery.inv_norm
    # Cosine of the turn between each gallery minutia and its partner (only the direction
    # columns of the partner are gathered).
    cos_turn = probe.geometry[:, 2][best_i]
    cos_turn *= gallery.geometry[:, :, 2]
    sin_part = probe.geometry[:, 3][best_i]
    sin_part *= gallery.geometry[:, :, 3]
    cos_turn += sin_part
    sim[cos_turn < np.float32(np.cos(params.MAX_DIRECTION_DIFF))] = 0.0
    sim[np.arange(m)[None, :] >= gallery.counts[:, None]] = -1.0
    return sim, best_i


def _chord_(cos: F32) -> F32:
    """In place: angle (given by its cosine) -> chord 2 sin(θ/2) = sqrt(2 - 2 cos θ). Monotone in
    θ, within 1% of θ below 30°, and free of trigonometric functions (bit-reproducible anywhere
    in an array)."""
    cos *= np.float32(-2.0)
    cos += np.float32(2.0)
    np.maximum(cos, np.float32(0.0), out=cos)
    return np.sqrt(cos, out=cos)


def _one_plus_exp_(v: F32, mu: float, tau: float) -> F32:
    """In place: v -> 1 + exp(-τ (v - μ)), the reciprocal of MCC's sigmoid Z(v, μ, τ)."""
    v -= np.float32(mu)
    v *= np.float32(-tau)
    with np.errstate(over="ignore"):  # inf: the sigmoid is then exactly 0, as intended
        np.exp(v, out=v)
    v += np.float32(1.0)
    return v


def _compatibility(pa: F32, gb: F32, usable: npt.NDArray[np.bool_]) -> F32:
    """ρ (nb, R, R) between candidate pairs; pa, gb (nb, R, 4) probe/gallery geometry.

    For pairs t = (a_t, b_t) and k: d1 = difference of the distances a_t-a_k and b_t-b_k;
    d2 = difference of the two pairs' rotations (b -> a); d3 = angle between segment a_t->a_k
    and segment b_t->b_k once rotated by pair t's rotation. d2, d3 as chords (see _chord_).
    ρ = Z(d1) Z(d2) Z(d3). Written with in-place operations: this is the kernel's largest
    elementwise cost.
    """
    ax, ay, ac, as_ = pa[..., 0], pa[..., 1], pa[..., 2], pa[..., 3]
    bx, by, bc, bs = gb[..., 0], gb[..., 1], gb[..., 2], gb[..., 3]
    dax = ax[:, None, :] - ax[:, :, None]  # [b, t, k]: vector from t to k
    day = ay[:, None, :] - ay[:, :, None]
    dbx = bx[:, None, :] - bx[:, :, None]
    dby = by[:, None, :] - by[:, :, None]
    rc = (ac * bc + as_ * bs)[:, :, None]  # rotation of each pair t, b -> a: cos, sin
    rs = (as_ * bc - ac * bs)[:, :, None]
    # d3: cos of the angle between a's segment and b's segment turned by rc, rs.
    num = dbx * dax
    num += dby * day
    num *= rc
    cross = dbx * day
    cross -= dby * dax
    cross *= rs
    num += cross
    la = np.square(dax, out=dax)
    la += np.square(day, out=day)
    np.sqrt(la, out=la)
    lb = np.square(dbx, out=dbx)
    lb += np.square(dby, out=dby)
    np.sqrt(lb, out=lb)
    lengths = np.multiply(la, lb, out=cross)
    np.maximum(lengths, np.float32(1e-6), out=lengths)  # t == k: ρ is zeroed below anyway
    cos3 = np.divide(num, lengths, out=num)
    d3 = _chord_(cos3)
    la -= lb
    d1 = np.abs(la, out=la)
    d2 = np.multiply(rc, rc.transpose(0, 2, 1), out=lb)
    d2 += rs * rs.transpose(0, 2, 1)
    _chord_(d2)
    rho = _one_plus_exp_(d1, params.MU_RHO_DIST, params.TAU_RHO_DIST)
    with np.errstate(over="ignore"):  # a product overflowing to inf means ρ = 0, as intended
        rho *= _one_plus_exp_(d2, params.MU_RHO_ROT, params.TAU_RHO_ROT)
        rho *= _one_plus_exp_(d3, params.MU_RHO_RADIAL, params.TAU_RHO_RADIAL)
    np.reciprocal(rho, out=rho)
    np.putmask(rho, rho < np.float32(params.RHO_FLUSH), np.float32(0.0))
    keep = usable.astype(np.float32)
    rho *= keep[:, :, None]
    rho *= keep[:, None, :]
    r = rho.shape[1]
    rho[:, np.arange(r), np.arange(r)] = 0.0
    return rho


def consolidate(probe: SearchTemplate, gallery: PackedTemplates) -> Consolidation:
    """Run the whole kernel and keep every intermediate (see :class:`Consolidation`)."""
    check_search_template(probe)
    check_packed(gallery)
    return _consolidate(probe, gallery)


def _consolidate(probe: SearchTemplate, gallery: PackedTemplates) -> Consolidation:
    nb, m = gallery.inv_norm.shape
    r = params.N_RELAX
    if probe.count == 0:
        sim = np.full((nb, m), -1.0, np.float32)
        best_i = np.zeros((nb, m), np.int64)
    else:
        sim, best_i = _best_partners(probe, gallery)
    g_idx = top_k_rows(sim, r)  # (nb, R)
    rows = np.arange(nb)[:, None]
    local = sim[rows, g_idx]
    usable = local > 0.0
    local = np.where(usable, local, np.float32(0.0)).astype(np.float32)
    p_idx = best_i[rows, g_idx]
    gb = gallery.geometry[rows, g_idx]
    pa = (
        probe.geometry[p_idx]
        if probe.count
        else np.zeros((nb, r, 4), np.float32)  # nothing usable anyway
    )
    rho = _compatibility(pa, gb, usable)

    lam = local.copy()
    spread = np.float32((1.0 - params.RELAX_WEIGHT) / (r - 1))
    weight = np.float32(params.RELAX_WEIGHT)
    support = np.empty_like(lam)
    for _ in range(params.RELAX_ITERATIONS):  # λ <- wR λ + spread Σk ρ[t, k] λk, in place
        np.matmul(rho, lam[:, :, None], out=support[:, :, None])  # 25% faster than einsum
        support *= spread
        lam *= weight
        lam += support
    eff = np.zeros_like(lam)
    np.divide(lam, local, out=eff, where=usable)

    # Rank pairs by efficiency (ties: lower index first); unusable pairs rank last.
    # A stable sort of -e orders equal values by index, as "ties: lower index first" asks.
    neg = np.where(usable, -eff, np.float32(1.0))
    order = np.argsort(neg, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, _positions(nb, r), axis=1)
    smaller = np.minimum(gallery.counts.astype(np.int64), min(probe.count, params.MAX_MINUTIAE))
    n_pairs = _N_PAIRS[np.clip(smaller, 0, params.MAX_MINUTIAE)]
    selected = (rank < n_pairs[:, None]) & usable
    score = ((lam * selected).sum(axis=1) / n_pairs).astype(np.float32)
    return Consolidation(p_idx, g_idx, usable, local, lam, eff, selected, n_pairs, score)


def score_many(probe: SearchTemplate, gallery: PackedTemplates) -> F32:
    """Similarity in [0, 1] of ``probe`` to each template of ``gallery``: (nb,) float32.

    Runs the kernel over sub-blocks of ``params.CHUNK_TEMPLATES`` templates so that every
    intermediate array stays in cache (scores do not depend on the split).
    """
    check_search_template(probe)
    check_packed(gallery)
    nb = len(gallery)
    step = params.CHUNK_TEMPLATES
    if nb <= step:
        return _consolidate(probe, gallery).score
    out = np.empty(nb, np.float32)
    for s in range(0, nb, step):
        part = PackedTemplates(
            gallery.descriptors[s : s + step],
            gallery.inv_norm[s : s + step],
            gallery.geometry[s : s + step],
            gallery.counts[s : s + step],
            gallery.format,
            gallery.version,
        )
        out[s : s + step] = _consolidate(probe, part).score
    return out
