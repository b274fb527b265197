"""Hubness-aware scores: CSLS, cross-domain similarity local scaling (Conneau et al., 2018).

In high-dimensional embeddings some records are "hubs": near many records of other people, so
they win rank-1 against probes that are not theirs (LFW A–M's look-alikes beat a single mate at
0.93–0.95 against 0.87). CSLS discounts each side by how crowded its neighbourhood is:

    csls(q, g) = 2 * cos(q, g) - r_q - r_g

where ``r_g`` is the mean cosine of gallery record ``g`` to its ``k`` nearest *other* gallery
records and ``r_q`` the mean of the probe's ``k`` best scores against the gallery. This module
uses half of it, ``cos(q, g) - (r_q + r_g) / 2``, which stays on the cosine scale (−1..1 less
the offsets). For one probe ``r_q`` is a constant, so the ranking of a search depends only on
``cos(q, g) - r_g / 2``: ``r_g`` is a per-record offset computed from the gallery
(:func:`csls_offsets`), and ``r_q`` (:func:`mean_top_k`) is taken from the search's own scores.

Use it to *rank* and keep the decision on the cosine: the node's face search
(:func:`matcher.search.face.search_face` with the offsets :mod:`matcher.search.neighbours`
keeps current) ranks the records at or above the cosine threshold first, each group by
``cos - r_g / 2``, so hit or no-hit is exactly the cosine's decision and CSLS picks which
matching record is reported. As a verification score CSLS is worse on LFW, where a subject's
own images fill its ``k`` neighbours (figures in ``params.CSLS_K``).
The offsets describe the gallery as it is: frozen at each record's enrolment (against the
records enrolled before it) they are not comparable between records (LFW A–M: rank-1 0.02%).

Everything runs block by block as matrix products, never a Python loop over records: the
nearest neighbours by :func:`matcher.search.neighbours.nearest` (blocks of rows against blocks
of columns), the evaluation's scores ``SCORE_BLOCK_ROWS`` probes against the whole gallery at a
time. Embeddings are unit vectors (``float32``, shape (n, d)), so inner products are cosines.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from matcher.face import params as P
from matcher.search.neighbours import nearest

FloatArray = npt.NDArray[np.float32]


def _unit_rows(name: str, x: npt.ArrayLike) -> FloatArray:
    a = np.ascontiguousarray(x, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), got {a.shape}")
    if a.size and not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds non-finite values")
    return a


def neighbour_scores(
    gallery: npt.ArrayLike, k: int, *, block_rows: int | None = None
) -> FloatArray:
    """The ``k`` highest cosines of each gallery record to the *other* records, best first.

    ``gallery`` (n, d) unit embeddings. Returns float32 (n, min(k, n - 1)); row ``i`` holds
    ``max``-first the scores of record ``i`` against every record but itself. Ties are kept
    (two equal scores both appear). Computed by :func:`matcher.search.neighbours.nearest`
    (``block_rows`` rows and columns per matrix product).
    """
    g = _unit_rows("gallery", gallery)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    kk = min(k, max(g.shape[0] - 1, 0))
    if kk == 0:
        return np.zeros((g.shape[0], 0), np.float32)
    scores, _ = nearest(g, kk, block=block_rows)
    return scores


def csls_offsets(
    gallery: npt.ArrayLike, k: int = P.CSLS_K, *, block_rows: int | None = None
) -> FloatArray:
    """Per-record CSLS offset ``r_g``: mean cosine of each record to its ``k`` nearest others.

    ``gallery`` (n, d) unit embeddings. Returns float32 (n,). With fewer than ``k`` other
    records the mean is over all of them; a gallery of one record gets 0. A search ranks record
    ``g`` for probe ``q`` by ``cos(q, g) - r_g / 2``.
    """
    top = neighbour_scores(gallery, k, block_rows=block_rows)
    if top.shape[1] == 0:
        return np.zeros(top.shape[0], np.float32)
    return top.mean(axis=1, dtype=np.float64).astype(np.float32)


def mean_top_k(scores: npt.ArrayLike, k: int = P.CSLS_K) -> FloatArray:
    """Probe-side CSLS term ``r_q``: mean of each row's ``k`` highest scores.

    ``scores`` (m, n) cosines of m probes against a gallery of n records. Returns float32 (m,);
    with n < k the mean is over all n; an empty gallery gives 0.
    """
    s = np.asarray(scores, dtype=np.float32)
    if s.ndim != 2:
        raise ValueError(f"scores must have shape (m, n), got {s.shape}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    m, n = s.shape
    kk = min(k, n)
    if kk == 0:
        return np.zeros(m, np.float32)
    top = np.partition(s, n - kk, axis=1)[:, n - kk :]
    return top.mean(axis=1, dtype=np.float64).astype(np.float32)


def csls_scores(
    cosines: npt.ArrayLike, probe_offsets: npt.ArrayLike, gallery_offsets: npt.ArrayLike
) -> FloatArray:
    """``cos(q, g) - (r_q + r_g) / 2`` for cosines (m, n), ``r_q`` (m,) and ``r_g`` (n,).

    Returns float32 (m, n).
    """
    s = np.asarray(cosines, dtype=np.float32)
    rq = np.asarray(probe_offsets, dtype=np.float32)
    rg = np.asarray(gallery_offsets, dtype=np.float32)
    if s.ndim != 2 or rq.shape != (s.shape[0],) or rg.shape != (s.shape[1],):
        raise ValueError(f"shapes {s.shape}, {rq.shape}, {rg.shape} do not fit (m, n), (m,), (n,)")
    return s - np.float32(0.5) * (rq[:, None] + rg[None, :])


class LeaveOneOutOffsets:
    """CSLS offsets for leave-one-out evaluation, where each probe is taken out of the gallery.

    The gallery of probe ``q`` is every enrolled image but ``q``: record ``g``'s offset is the
    mean cosine to its ``k`` nearest records *of that gallery*, so when ``q`` is one of them it
    is replaced by ``g``'s (k+1)-th neighbour (exact, from each record's k+1 best scores).
    ``e`` (n, d) unit float32 embeddings; ``full`` (n,) float32 holds each record's offset over
    all the other records, which is also its probe term ``r_q`` when it is the probe.
    """

    def __init__(self, e: FloatArray, k: int) -> None:
        self.k = k
        self.others = e.shape[0] - 1  # records in the gallery of a probe
        top = neighbour_scores(e, k + 1)  # (n, min(k + 1, n - 1))
        kk = max(min(k, self.others), 0)
        self.full = (
            top[:, :kk].mean(axis=1, dtype=np.float64).astype(np.float32)
            if kk
            else np.zeros(e.shape[0], np.float32)
        )  # (n,) offset of each record over all the others: the probe term r_q
        self.sums = top[:, :kk].sum(axis=1, dtype=np.float64)  # (n,)
        if self.others > k:
            self.kth, self.next = top[:, k - 1], top[:, k]  # (n,) k-th and (k+1)-th scores

    def gallery_offsets(self, s: FloatArray) -> FloatArray:
        """Offsets r_g (block, n) float32 without probe q, for cosines ``s`` (block, n) of
        probes q (rows) against every record g (columns)."""
        k, m = self.k, self.others
        if m > k:
            inside = s >= (self.kth - P.CSLS_TIE_SLACK)[None, :]
            drop = np.where(inside, s - self.next[None, :], np.float32(0.0)) / np.float32(k)
            return np.asarray(self.full[None, :] - drop, dtype=np.float32)
        if m >= 2:  # every other record is a neighbour: mean over the m - 1 left
            return ((self.sums[None, :] - s) / (m - 1)).astype(np.float32)
        return np.zeros_like(s)

    def csls(self, rows: npt.NDArray[np.int64], s: FloatArray) -> FloatArray:
        """CSLS scores (block, n) float32 of probes ``rows`` (block,) from their cosines ``s``
        (block, n) against every record: ``cos - (r_q + r_g) / 2`` with ``r_q`` the probe's
        offset over all the others and ``r_g`` from :meth:`gallery_offsets` (without q)."""
        return np.asarray(
            s - np.float32(0.5) * (self.full[rows, None] + self.gallery_offsets(s)),
            dtype=np.float32,
        )
