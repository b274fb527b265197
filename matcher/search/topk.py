"""Streaming top-k over blocks of scores, and the merge of shard results.

Scores are similarities (higher is better). Ties are broken by the lower global id, so results
do not depend on block size or thread count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TopK:
    """Running best ``k`` (global id, score) over blocks fed with :meth:`push`.

    Keeps a threshold (the current k-th best score) so that most of each block is dismissed by
    one vectorised comparison before any partial sort. ``values`` (k,) float32 rides along with
    each kept id: what the caller reports when it ranks by something else than the score it
    reports (a face search ranks by CSLS and reports the cosine); the scores themselves when
    none are given.
    """

    k: int
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    values: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))

    def __post_init__(self) -> None:
        if self.values.shape != self.scores.shape:
            self.values = np.asarray(self.scores, dtype=np.float32).copy()

    def push(
        self,
        start: int,
        scores: np.ndarray,
        alive: np.ndarray | None = None,
        values: np.ndarray | None = None,
    ) -> None:
        """Offer block scores (n,) float32 for global ids ``start .. start+n`` (and their
        ``values`` (n,), by default the scores)."""
        if self.k <= 0:
            return
        if len(self.ids) >= self.k:
            cand = np.flatnonzero(scores >= self.scores[-1])
        else:
            cand = np.arange(scores.shape[0])
        if alive is not None and cand.size:
            cand = cand[alive[cand]]
        if cand.size == 0:
            return
        self.add(
            cand.astype(np.int64) + start,
            scores[cand],
            None if values is None else values[cand],
        )

    def add(self, ids: np.ndarray, scores: np.ndarray, values: np.ndarray | None = None) -> None:
        """Offer candidates: global ids (m,) int64 with scores (m,) (and values (m,))."""
        extra = scores if values is None else values
        if np.isnan(scores).any():  # NaN would poison the k-th-score partition below
            ok = ~np.isnan(scores)
            ids, scores, extra = ids[ok], scores[ok], extra[ok]
        ids = np.concatenate([self.ids, ids])
        scores = np.concatenate([self.scores, scores.astype(np.float32, copy=False)])
        vals = np.concatenate([self.values, extra.astype(np.float32, copy=False)])
        if ids.shape[0] > self.k:
            # Partition on the k-th score, keep everything tied with it, then sort exactly.
            kth = np.partition(scores, ids.shape[0] - self.k)[ids.shape[0] - self.k]
            keep = scores >= kth
            ids, scores, vals = ids[keep], scores[keep], vals[keep]
        order = np.lexsort((ids, -scores))[: self.k]
        self.ids, self.scores, self.values = ids[order], scores[order], vals[order]

    def merge(self, other: TopK) -> None:
        """Fold another shard's result in (same ``k``)."""
        if other.ids.size:
            self.add(other.ids, other.scores, other.values)


@dataclass
class TopKRows:
    """Running best ``k`` per probe for a batch of ``nq`` probes fed (nq, n) score blocks.

    Kept as flat arrays sorted by (probe, -score, id); ``tau`` (nq,) is each probe's current
    k-th best score, so a block costs one comparison pass plus work on the few survivors.
    """

    k: int
    nq: int
    q: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    tau: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.tau = np.full(self.nq, -np.inf, dtype=np.float32)

    def push(self, start: int, scores: np.ndarray) -> None:
        """Offer (nq, n) scores of global ids ``start .. start+n`` (-inf = not a candidate)."""
        if self.k <= 0 or scores.shape[1] == 0:
            return
        mask = scores >= self.tau[:, None]
        if np.count_nonzero(mask) > 2 * self.k * self.nq and scores.shape[1] > self.k:
            n = scores.shape[1]
            cols = np.argpartition(scores, n - self.k, axis=1)[:, n - self.k :]
            vals = np.take_along_axis(scores, cols, axis=1)
            rows = np.broadcast_to(np.arange(self.nq)[:, None], cols.shape)
            keep = vals >= self.tau[:, None]
            rows, cols, vals = rows[keep], cols[keep], vals[keep]
        else:
            rows, cols = np.nonzero(mask)
            vals = scores[rows, cols]
        live = np.isfinite(vals)
        self.add(rows[live], cols[live].astype(np.int64) + start, vals[live])

    def add(self, q: np.ndarray, ids: np.ndarray, scores: np.ndarray) -> None:
        """Offer candidates: probe index (m,), global id (m,), score (m,)."""
        q = np.concatenate([self.q, q.astype(np.int64, copy=False)])
        ids = np.concatenate([self.ids, ids])
        scores = np.concatenate([self.scores, scores.astype(np.float32, copy=False)])
        order = np.lexsort((ids, -scores, q))
        q, ids, scores = q[order], ids[order], scores[order]
        first = np.searchsorted(q, np.arange(self.nq))
        keep = np.arange(q.shape[0]) - first[q] < self.k
        self.q, self.ids, self.scores = q[keep], ids[keep], scores[keep]
        counts = np.bincount(self.q, minlength=self.nq)
        last = np.searchsorted(self.q, np.arange(self.nq)) + counts - 1
        full = counts >= self.k
        self.tau = np.where(full, self.scores[np.where(full, last, 0)], -np.inf).astype(np.float32)

    def merge(self, other: TopKRows) -> None:
        self.add(other.q, other.ids, other.scores)

    def row(self, j: int) -> TopK:
        """Probe ``j``'s result as a :class:`TopK`."""
        sel = self.q == j
        return TopK(self.k, self.ids[sel], self.scores[sel])
