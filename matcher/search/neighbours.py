"""Each live face record's nearest other records, kept current: the CSLS offsets of a search.

A face search ranks gallery record ``g`` for a probe by ``cos(q, g) - r_g / 2`` (CSLS,
:mod:`matcher.face.hubness`), ``r_g`` the mean cosine of ``g`` to its ``k`` nearest other *live*
records. The offsets must describe the gallery as it is now: frozen at enrolment they are not
comparable between records (LFW A–M: rank-1 0.02%). :class:`NeighbourLists` holds, for one
gallery snapshot, every live record's ``k`` best scores and the references of those neighbours;
:func:`refresh` carries them to a later snapshot of the same gallery:

* records added since are scored against every live record;
* records one of whose neighbours was deleted are scored again the same way;
* every other record folds the added records' scores into its list.

So the work is ``(added + affected) * n`` dot products (one float32 matrix product per block
of ``NEIGHBOUR_ROW_BLOCK x NEIGHBOUR_COL_BLOCK``), the first build ``n * n``. Records are
matched between snapshots by reference *and* by a checksum of their embedding (its float64
sum), so a reference that came back with another template counts as deleted and added.

:func:`save` / :func:`load` keep lists across restarts (a process would otherwise rebuild them
at ``n * n`` cost). A saved file is only ever a starting point for :func:`refresh`: lists of
any earlier snapshot of the gallery are brought exactly up to date, so a file left by a crash
is merely older, and one that cannot be read is ignored (a build from scratch). Shapes: ``n``
live records, ``d`` = 128, ``k`` neighbours (rows of a gallery with fewer than ``k + 1``
records are padded with ``-inf``).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from matcher.face import params as face_params
from matcher.gallery import Gallery
from matcher.gallery.files import fsync_dir, save_bytes
from matcher.search import params
from matcher.search.blas import single_threaded_blas
from matcher.search.shards import run_shards

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

#: Neighbour slot of a list that has fewer than ``k`` other records to hold.
NO_NEIGHBOUR = -1


@dataclass(frozen=True, eq=False)
class NeighbourLists:
    """The neighbour lists of one gallery snapshot (``generation``, ``size`` global ids).

    ``ids`` (n,) int64 global ids of the live records, ascending; ``references`` (n,) ``S``
    theirs; ``scores`` (n, k) float32 each record's best cosines to other live records, best
    first, ``-inf`` where it has fewer than ``k`` others; ``neighbours`` (n, k) int64 those
    records as rows of these arrays (``NO_NEIGHBOUR`` where the score is ``-inf``);
    ``checks`` (n,) float64 the sum of each record's embedding.
    """

    generation: int
    size: int
    k: int
    ids: IntArray
    references: np.ndarray
    scores: FloatArray
    neighbours: IntArray
    checks: npt.NDArray[np.float64]

    def offsets(self) -> FloatArray:
        """(size,) float32 ``r_g`` by global id: the mean of each live record's neighbour
        scores (0 for a record with no other; 0 for deleted ids, which no search returns)."""
        finite = np.isfinite(self.scores)
        count = finite.sum(axis=1)
        total = np.where(finite, self.scores, np.float32(0.0)).sum(axis=1, dtype=np.float64)
        out = np.zeros(self.size, np.float32)
        out[self.ids] = np.where(count > 0, total / np.maximum(count, 1), 0.0)
        return out


def refresh(
    previous: NeighbourLists | None,
    gallery: Gallery,
    embeddings: FloatArray,
    k: int = face_params.CSLS_K,
) -> NeighbourLists:
    """The neighbour lists of ``gallery``'s snapshot, reusing ``previous`` (an earlier snapshot
    of the same gallery, or ``None`` to build from scratch).

    ``embeddings`` (size, d) float32 unit rows by global id (rows of deleted ids are ignored).
    A previous list with another ``k`` is not reused.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    ids = np.flatnonzero(gallery.alive).astype(np.int64)
    refs = np.array(gallery.references(), dtype=np.bytes_)
    e = np.ascontiguousarray(embeddings[ids], dtype=np.float32)
    checks = e.sum(axis=1, dtype=np.float64)
    n = ids.shape[0]
    scores = np.full((n, k), -np.inf, np.float32)
    nbr = np.full((n, k), NO_NEIGHBOUR, np.int64)
    todo = np.ones(n, dtype=bool)
    if previous is not None and previous.k == k and previous.ids.size and n:
        order = np.argsort(refs)
        sorted_refs = refs[order]

        def rows_of(wanted: np.ndarray) -> IntArray:
            at = np.minimum(np.searchsorted(sorted_refs, wanted), n - 1)
            return np.where(sorted_refs[at] == wanted, order[at], NO_NEIGHBOUR).astype(np.int64)

        now = rows_of(previous.references)  # (n_prev,) row of each previous record, or -1
        now[checks[now] != previous.checks] = NO_NEIGHBOUR  # same reference, other template
        kept = now >= 0
        slots = previous.neighbours >= 0
        held = np.where(slots, now[np.maximum(previous.neighbours, 0)], NO_NEIGHBOUR)
        lost = (slots & (held < 0)).any(axis=1)  # a neighbour was deleted: score again
        reuse = kept & ~lost
        scores[now[reuse]] = previous.scores[reuse]
        nbr[now[reuse]] = held[reuse]
        todo[now[reuse]] = False
        known = np.zeros(n, dtype=bool)
        known[now[kept]] = True
        added = np.flatnonzero(~known)
        _fold(e, scores, nbr, np.flatnonzero(~todo), added)
    _fold(e, scores, nbr, np.flatnonzero(todo), np.arange(n))
    return NeighbourLists(gallery.generation, gallery.size, k, ids, refs, scores, nbr, checks)


#: Version of the file :func:`save` writes (a file of another version is not read).
FILE_VERSION = 1


def save(lists: NeighbourLists, path: Path) -> None:
    """Write ``lists`` to ``path`` (a .npz) durably: temp file, fsync, rename, fsync the
    directory, so the file is whole or absent."""
    buf = io.BytesIO()
    meta = np.array([FILE_VERSION, lists.generation, lists.size, lists.k], np.int64)
    np.savez(
        buf,
        meta=meta,
        ids=lists.ids,
        references=lists.references,
        scores=lists.scores,
        neighbours=lists.neighbours,
        checks=lists.checks,
    )
    save_bytes(path.parent, path.name, buf.getvalue())
    fsync_dir(path.parent)


def load(path: Path) -> NeighbourLists:
    """Lists written by :func:`save`. Raises :class:`FileNotFoundError` when there is no file
    and :class:`ValueError` (with the reason) when it is not a whole, consistent list file."""
    try:
        with path.open("rb") as fh, np.load(fh, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"unreadable neighbour file: {type(exc).__name__}") from None
    want = {"meta", "ids", "references", "scores", "neighbours", "checks"}
    if set(arrays) != want:
        raise ValueError("neighbour file has other arrays")
    meta = arrays["meta"]
    if meta.shape != (4,) or meta.dtype != np.int64 or int(meta[0]) != FILE_VERSION:
        raise ValueError("neighbour file of another version")
    _, generation, size, k = (int(v) for v in meta)
    ids, refs, scores = arrays["ids"], arrays["references"], arrays["scores"]
    nbr, checks = arrays["neighbours"], arrays["checks"]
    n = ids.shape[0]
    if not (
        ids.dtype == np.int64
        and refs.dtype.kind == "S"
        and scores.dtype == np.float32
        and nbr.dtype == np.int64
        and checks.dtype == np.float64
        and k >= 1
        and ids.shape == (n,)
        and refs.shape == (n,)
        and checks.shape == (n,)
        and scores.shape == (n, k)
        and nbr.shape == (n, k)
        and bool(np.all((ids >= 0) & (ids < size)))
        and bool(np.all((nbr >= NO_NEIGHBOUR) & (nbr < n)))
        and bool(np.all((nbr >= 0) == np.isfinite(scores)))
    ):
        raise ValueError("inconsistent neighbour file")
    return NeighbourLists(generation, size, k, ids, refs, scores, nbr, checks)


def nearest(
    embeddings: npt.ArrayLike, k: int, *, block: int | None = None
) -> tuple[FloatArray, IntArray]:
    """Each row's ``k`` best cosines to the *other* rows of ``embeddings`` (n, d) float32 unit
    rows, best first: scores (n, k) float32 (``-inf`` past the n - 1 others) and those rows
    (n, k) int64 (``NO_NEIGHBOUR`` there). ``block``: rows and columns per matrix product
    (default ``NEIGHBOUR_ROW_BLOCK`` x ``NEIGHBOUR_COL_BLOCK``)."""
    e = np.ascontiguousarray(embeddings, dtype=np.float32)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    n = e.shape[0]
    scores = np.full((n, k), -np.inf, np.float32)
    nbr = np.full((n, k), NO_NEIGHBOUR, np.int64)
    _fold(e, scores, nbr, np.arange(n), np.arange(n), block=block)
    return scores, nbr


def _fold(
    e: FloatArray,
    scores: FloatArray,
    nbr: IntArray,
    rows: IntArray,
    cols: IntArray,
    *,
    block: int | None = None,
) -> None:
    """Fold the cosines of records ``rows`` (r,) against records ``cols`` (c,) (both ascending)
    into the rows' lists ``scores`` / ``nbr`` (n, k), in place; a record is never its own
    neighbour. Row blocks are independent (each writes only its rows), so they run on
    ``params.THREADS`` threads, BLAS on one thread each."""
    if rows.size == 0 or cols.size == 0:
        return
    row_step = block or params.NEIGHBOUR_ROW_BLOCK
    col_step = block or params.NEIGHBOUR_COL_BLOCK
    row_blocks = [rows[r0 : r0 + row_step] for r0 in range(0, rows.size, row_step)]

    def work(shard: Sequence[IntArray]) -> None:
        for rb in shard:
            _fold_rows(e, scores, nbr, rb, cols, col_step)

    with single_threaded_blas():
        run_shards(row_blocks, work, params.THREADS)


def _fold_rows(
    e: FloatArray, scores: FloatArray, nbr: IntArray, rb: IntArray, cols: IntArray, step: int
) -> None:
    """:func:`_fold` for one block of rows ``rb`` (r,), ``step`` columns at a time. Only the
    scores above a row's current k-th best are kept; where a block holds many (while the lists
    are short), the threshold is first raised to the block's own k-th best per row."""
    k = scores.shape[1]
    er = e[rb]  # (r, d)
    for c0 in range(0, cols.size, step):
        cb = cols[c0 : c0 + step]
        s = er @ e[cb].T  # (r, c)
        at = np.minimum(np.searchsorted(cb, rb), cb.size - 1)
        own = cb[at] == rb
        s[np.flatnonzero(own), at[own]] = -np.inf  # not its own neighbour
        kth = scores[rb, k - 1]  # (r,) current k-th best (-inf while a list is short)
        mask = s > kth[:, None]
        found = int(np.count_nonzero(mask))
        if found > params.NEIGHBOUR_DENSE_FACTOR * k * rb.size and cb.size > k:
            block_kth = np.partition(s, cb.size - k, axis=1)[:, cb.size - k]  # (r,)
            mask = s >= np.maximum(kth, block_kth)[:, None]
            mask &= s > kth[:, None]
            found = int(np.count_nonzero(mask))
        if found == 0:
            continue
        flat = np.flatnonzero(mask)  # (found,) faster than a 2-d nonzero
        rr, cc = np.divmod(flat, cb.size)
        _merge(scores, nbr, rb, rr, cb[cc], s.ravel()[flat])


def _merge(
    scores: FloatArray,
    nbr: IntArray,
    rb: IntArray,
    rr: IntArray,
    cand: IntArray,
    vals: FloatArray,
) -> None:
    """Merge candidates (m,) (row position ``rr`` in ``rb``, neighbour ``cand``, score
    ``vals``) into the k-lists of rows ``rb`` (r,), keeping each row's k best, best first."""
    r, k = rb.size, scores.shape[1]
    all_r = np.concatenate([np.repeat(np.arange(r), k), rr])
    all_s = np.concatenate([scores[rb].ravel(), vals])
    all_n = np.concatenate([nbr[rb].ravel(), cand])
    order = np.lexsort((-all_s, all_r))  # by row, then best first
    all_r, all_s, all_n = all_r[order], all_s[order], all_n[order]
    first = np.searchsorted(all_r, np.arange(r))
    keep = np.arange(all_r.size) - first[all_r] < k  # every row has at least k candidates
    top_s = all_s[keep].reshape(r, k)
    scores[rb] = top_s
    nbr[rb] = np.where(np.isfinite(top_s), all_n[keep].reshape(r, k), NO_NEIGHBOUR)
