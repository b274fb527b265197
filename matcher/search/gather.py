"""Copy chosen gallery rows into the exact kernel's packed input, compiled (numba, ``nogil``).

Two-stage search scores a few hundred pre-selected records scattered over every segment. As
numpy fancy indexing that copy was ~8 small calls per (segment, row-length group), each going
back for the GIL: in a busy node the search threads spent more time waiting for it than
copying. One compiled call per part copies all of a part's fields.

Shapes: a segment's ``desc`` (n, M, d) uint8, ``inv`` (n, M) float32, ``geo`` (n, M, 4)
float32, ``counts`` (n,) int32, ``field`` (n, h, w) uint8; ``rows`` (k,) int64 positions in
the segment; the outputs (N, m, ...) (descriptors uint8, as stored: the kernel takes them so)
with m <= M the part's padded row length (rows past a template's minutiae are zero padding, so
cutting them changes no score), the fields (N, H, W) with H >= h, W >= w, filled with
background beforehand.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]


@numba.njit(cache=True, nogil=True)
def gather_rows(  # pragma: no cover - compiled
    rows: I64,
    start: int,
    desc: U8,
    inv: F32,
    geo: F32,
    counts: I32,
    field: U8,
    at: int,
    out_ids: I64,
    out_desc: U8,
    out_inv: F32,
    out_geo: F32,
    out_counts: I32,
    out_field: U8,
) -> None:
    """Copy segment rows ``rows`` to output rows ``at ..``, global ids ``start + rows``."""
    m = out_desc.shape[1]
    d = desc.shape[2]
    h, w = field.shape[1], field.shape[2]
    # Compiled code reads without bounds checks: refuse what would read or write outside.
    if m > desc.shape[1] or d != out_desc.shape[2] or h > out_field.shape[1]:
        raise ValueError("gather_rows: output rows longer than the segment's, or fields too big")
    if w > out_field.shape[2] or at < 0 or at + rows.shape[0] > out_desc.shape[0]:
        raise ValueError("gather_rows: fields too big for the output, or rows past its end")
    for i in range(rows.shape[0]):
        if rows[i] < 0 or rows[i] >= desc.shape[0]:
            raise IndexError("gather_rows: a row outside the segment")
    for i in range(rows.shape[0]):
        r = rows[i]
        o = at + i
        out_ids[o] = start + r
        out_counts[o] = counts[r]
        for a in range(m):
            for c in range(d):
                out_desc[o, a, c] = desc[r, a, c]
            out_inv[o, a] = inv[r, a]
            for c in range(4):
                out_geo[o, a, c] = geo[r, a, c]
        for y in range(h):
            for x in range(w):
                out_field[o, y, x] = field[r, y, x]


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def warm_up() -> None:
    """Compile (first run after install) or load from numba's on-disk cache :func:`gather_rows`
    for what search passes: read-only (memory-mapped) segment arrays."""
    n, m, d = 1, 1, 1
    gather_rows(
        np.zeros(n, np.int64),
        0,
        _read_only(np.zeros((n, m, d), np.uint8)),
        _read_only(np.zeros((n, m), np.float32)),
        _read_only(np.zeros((n, m, 4), np.float32)),
        _read_only(np.zeros(n, np.int32)),
        _read_only(np.zeros((n, 1, 1), np.uint8)),
        0,
        np.zeros(n, np.int64),
        np.zeros((n, m, d), np.uint8),
        np.zeros((n, m), np.float32),
        np.zeros((n, m, 4), np.float32),
        np.zeros(n, np.int32),
        np.zeros((n, 1, 1), np.uint8),
    )
