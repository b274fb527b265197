"""Pre-selection for two-stage fingerprint search: a local-similarity sort over reduced cylinders.

The exact kernel (``matcher.fingerprint.match``) spends a 128-long GEMM and a relaxation on
every gallery template. Pre-selection ranks templates by the first half of that work only, at a
quarter of its cost, and the exact kernel then scores the best fraction (the *penetration*).

Shapes: ``d`` descriptor length (cells x ND sections), ``r = d / 2`` reduced length; a probe of
``mp`` valid cylinders; a block of ``nb`` templates padded to ``M`` rows.

1. :func:`reduce_cylinders`: each cylinder's ND direction sections are summed into two, the
   neighbours running roughly *with* the minutia (section centre within 90° of its direction)
   and those running *against* it, then L2-normalised and quantised to uint8 (0..255).
2. :func:`central_rows`: only the valid cylinders nearest the minutiae's centroid take part,
   ``PRESELECT_GALLERY_ROWS`` per gallery template (stored as ``preselect``, (G, r) uint8, zero
   rows where a template has fewer) and ``PRESELECT_PROBE_ROWS`` of the probe. Border
   cylinders are the least reliable (cells cut by the image edge, minutiae outside the other
   impression), so dropping them costs little, and they are most of the GEMM.
3. :func:`preselect_scores`: one GEMM of the block's rows against the probe's (exact: integer
   products of at most 255 x 127, summed r times, stay below 2**24 in float32), the best template
   row for each probe cylinder (max over ``M``), and the sum of the ``pairs`` best of those
   (MCC's local similarity sort, without the relaxation). Scores in [0, pairs]. The two steps
   after the GEMM are one compiled loop per template (:func:`_best_pairs`, ``nogil``): as ~10
   numpy passes per chunk, each search thread went back for the GIL at every pass, and in a
   busy node (request handling holds the GIL too) it waited for it half the time.
4. :class:`Stage` names a score by its row counts and pairs: :data:`FULL` is the one search
   uses; ``benchmarks/preselect_sweep.py`` measures cheaper screening stages against it.
5. Where the CPU has AVX-512 VNNI, search computes :data:`FULL`'s scores with
   :mod:`matcher.search.lanes` instead (byte products in int32, ~6x faster), bit for bit the
   same.

The GEMM is exact in float32: its terms are non-negative integers and each dot product of two
quantised unit vectors is at most about QUANT x PROBE_QUANT (32,385), far below 2**24, so every
partial sum is an exact integer whatever the BLAS summation order; a template's pre-selection
score does not depend on its block.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt

from matcher.fingerprint.match import params as match_params
from matcher.fingerprint.match.types import SearchTemplate
from matcher.search import params

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]

#: Quantisation scale of the stored reduced unit vectors (uint8 range; see the module's note
#: on exactness).
QUANT = 255
#: Quantisation scale of the probe's: the signed-byte range, so that AVX-512 VNNI's unsigned x
#: signed byte products (:mod:`matcher.search.lanes`) take them as they are. Against 255, on
#: 10,000 synthetic fingers (300 probes, seeds 2026 and 7), the share of mates in the best
#: 1 / 2 / 5% was the same (98.67 / 99.0 / 99.0% and 98.67 / 99.33 / 99.67%).
PROBE_QUANT = 127
#: Integer score -> score in [0, pairs] (each local similarity of two unit vectors is at most 1).
SCALE = np.float32(1.0 / (QUANT * PROBE_QUANT))


@functools.cache
def _section_groups() -> npt.NDArray[np.intp]:
    """(ND,) group of each direction section: 0 = with the minutia, 1 = against it."""
    width = 2.0 * np.pi / match_params.ND
    centres = -np.pi + (np.arange(match_params.ND) + 0.5) * width
    return np.where(np.abs(centres) < np.pi / 2.0, 0, 1).astype(np.intp)


def reduced_length(d: int) -> int:
    """Reduced length r for descriptors of length d (cells x ND)."""
    return (d // match_params.ND) * 2


def reduce_cylinders(descriptors: npt.NDArray[np.floating] | U8, quant: int = QUANT) -> U8:
    """(..., d) cylinder cell values -> (..., r) uint8 reduced unit vectors scaled to 0..quant
    (zero rows stay 0)."""
    d = descriptors.shape[-1]
    cells = d // match_params.ND
    v = np.asarray(descriptors, np.float32).reshape(*descriptors.shape[:-1], cells, match_params.ND)
    groups = _section_groups()
    out = np.stack([v[..., groups == g].sum(axis=-1) for g in (0, 1)], axis=-1)
    out = out.reshape(*descriptors.shape[:-1], reduced_length(d))
    norm = np.sqrt(np.square(out).sum(axis=-1, keepdims=True))
    np.divide(out, norm, out=out, where=norm > 0)
    return np.rint(out * quant).astype(np.uint8)


def central_rows(template: SearchTemplate, n: int) -> npt.NDArray[np.intp]:
    """Indices of the (at most) ``n`` valid cylinders of ``template`` nearest the centroid of
    its valid minutiae, nearest first (ties: lower index first)."""
    valid = np.flatnonzero(template.inv_norm > 0)
    xy = template.geometry[valid, :2].astype(np.float64)
    dist2 = np.square(xy - xy.mean(axis=0)).sum(axis=1) if valid.size else np.zeros(0)
    return valid[np.argsort(dist2, kind="stable")[:n]]


def gallery_rows(template: SearchTemplate) -> U8:
    """(G, r) uint8: what the gallery stores for ``template`` (zero rows past its cylinders)."""
    rows = central_rows(template, params.PRESELECT_GALLERY_ROWS)
    out = np.zeros(
        (params.PRESELECT_GALLERY_ROWS, reduced_length(template.descriptors.shape[1])), np.uint8
    )
    out[: rows.size] = reduce_cylinders(template.descriptors[rows])
    return out


def probe_matrix(probe: SearchTemplate, n: int = params.PRESELECT_PROBE_ROWS) -> F32:
    """(r, mp) float32: the probe's ``n`` (at most) central reduced cylinders as GEMM columns
    (integers 0..PROBE_QUANT), nearest the centroid first (so the first columns of a wider
    matrix are a narrower one)."""
    rows = central_rows(probe, n)
    red = reduce_cylinders(probe.descriptors[rows], PROBE_QUANT)
    return np.ascontiguousarray(red.astype(np.float32).T)


@dataclass(frozen=True)
class Stage:
    """One pre-selection score: the first ``gallery_rows`` stored rows of each template against
    the first ``probe_rows`` probe columns, summing the ``pairs`` best local similarities."""

    gallery_rows: int
    probe_rows: int
    pairs: int

    def columns(self, probe_cols: F32) -> F32:
        """(r, <= probe_rows) float32: this stage's columns of a :func:`probe_matrix`."""
        return np.ascontiguousarray(probe_cols[:, : self.probe_rows])

    def scores(self, rows: U8, probe_cols: F32, index: npt.NDArray[np.intp] | None = None) -> F32:
        """:func:`preselect_scores` of this stage (``probe_cols`` from :meth:`columns`)."""
        return preselect_scores(rows[:, : self.gallery_rows], probe_cols, index, self.pairs)


#: The pre-selection score of two-stage search.
FULL = Stage(params.PRESELECT_GALLERY_ROWS, params.PRESELECT_PROBE_ROWS, params.PRESELECT_PAIRS)


@numba.njit(cache=True, nogil=True, fastmath={"nnan", "ninf"})
def _best_pairs(prod: F32, m: int, pairs: int) -> F32:  # pragma: no cover - compiled
    """(nb*M, mp) GEMM output -> (nb,) the sum of the ``pairs`` largest of each template's best
    row per probe column (max over its M rows; a SIMD ``max`` per row). The largest are kept
    by insertion into a short descending list (most columns fall below its last entry and
    are skipped). The values are integers (see the module's note on exactness), so the sum is
    exact in any order."""
    nbm, mp = prod.shape
    nb = nbm // m
    k = min(pairs, mp)
    out = np.empty(nb, np.float32)
    best = np.empty(mp, np.float32)
    top = np.empty(k, np.float32)
    for t in range(nb):
        row = prod[t * m]
        for q in range(mp):
            best[q] = row[q]
        for r in range(t * m + 1, (t + 1) * m):
            row = prod[r]
            for q in range(mp):
                best[q] = max(best[q], row[q])
        n = 0
        for q in range(mp):
            v = best[q]
            if n < k:
                j = n
                n += 1
            elif v > top[k - 1]:
                j = k - 1
            else:
                continue
            while j > 0 and top[j - 1] < v:
                top[j] = top[j - 1]
                j -= 1
            top[j] = v
        total = np.float32(0.0)
        for i in range(k):
            total += top[i]
        out[t] = total
    return out


def warm_up() -> None:
    """Compile (first run after install) or load from numba's on-disk cache :func:`_best_pairs`."""
    _best_pairs(np.zeros((2, 1), np.float32), 1, 1)


def preselect_scores(
    rows: U8,
    probe_cols: F32,
    index: npt.NDArray[np.intp] | None = None,
    pairs: int = params.PRESELECT_PAIRS,
) -> F32:
    """Pre-selection score (n,) float32 in [0, ``pairs``] of the templates ``rows[index]`` (all
    when None) of a block ``rows`` (nb, M, r) uint8 (padding rows zero; may be a view of the
    leading rows) against ``probe_cols`` (r, mp) from :func:`probe_matrix`.

    Works through ``params.PRESELECT_CHUNK_RECORDS`` templates at a time: each chunk is gathered
    and widened to float32 (4x its stored size) right before its GEMM, so the copy is still in
    cache when the GEMM reads it; widening a whole 1,024-template block first sent ~6 MB through
    memory twice. Chunks do not change scores (every template's score is its own rows' work).
    """
    n = rows.shape[0] if index is None else index.shape[0]
    out = np.zeros(n, np.float32)
    if n == 0 or rows.shape[1] == 0 or probe_cols.shape[1] == 0:
        return out
    step = params.PRESELECT_CHUNK_RECORDS
    for s in range(0, n, step):
        part = rows[s : s + step] if index is None else rows[index[s : s + step]]
        out[s : s + step] = _chunk_scores(part, probe_cols, pairs)
    return out


def _chunk_scores(rows: U8, probe_cols: F32, pairs: int) -> F32:
    nb, m, r = rows.shape
    prod = rows.astype(np.float32).reshape(nb * m, r) @ probe_cols  # (nb*M, mp), exact
    return _best_pairs(prod, m, pairs) * SCALE
