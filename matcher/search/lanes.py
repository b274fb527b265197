"""Pre-selection scores with AVX-512 VNNI: sixteen templates across the lanes of one register.

The score is :func:`matcher.search.preselect.preselect_scores`'s (the sum of the ``pairs``
largest of each probe column's best product with a template's stored rows), computed in int32
by ``vpdpbusd``: unsigned bytes times signed bytes, four products summed into each of sixteen
int32 lanes, 64 multiply-adds per instruction where a float32 FMA does 16. The products are
integers either way (stored rows 0..255, probe columns 0..``preselect.PROBE_QUANT``), so the
two paths give the same scores bit for bit; this one also skips the uint8 -> float32 widening
and the (nb*M, mp) product matrix. Shapes: ``n`` templates of ``M`` stored rows of ``r``
values; ``g = ceil(n / LANES)`` groups; ``w = r / 4`` words (4 bytes) per row; ``NQ`` probe
columns (``params.PRESELECT_PROBE_ROWS``).

1. :func:`to_lanes`: stored rows (n, M, r) uint8 -> (g, M, w, LANES) int32, element
   [t, m, k, l] = bytes 4k..4k+3 of row m of template LANES*t + l (zero past n). So one
   register load is word k of row m of sixteen templates, and every step is vertical: no
   shuffles, no horizontal sums. Built once per gallery segment and kept with it (the stored
   rows are immutable; a 10,000-record segment takes 15 MB).
2. :func:`probe_words`: the probe's columns (r, mp) -> (NQ, w) int32, four signed bytes each,
   zero columns past mp (a zero column's best product is 0, and so adds 0 to the sum, as the
   missing column does in the float path).
3. :func:`lane_scores`: per group, per stored row: ``w`` register loads, then for every probe
   column ``w`` ``vpdpbusd`` with the probe word broadcast (two accumulators, so that two
   chains of half the latency run side by side), and ``best[q] = max(best[q], dot)``; then
   the ``pairs`` largest of ``best[:, lane]`` by a compare-exchange network over the NQ
   columns and their sum. Compiled with numba, ``nogil``; the LLVM intrinsic is emitted only
   where :func:`available` (the CPU has AVX-512 VNNI); elsewhere search uses the float path.

10,000 random templates of 24 rows against 20 columns, one thread: 2.2 ms against 14.5 ms for
the float path (widening, GEMM, best pairs), same process.
"""

from __future__ import annotations

from typing import Any

import llvmlite.ir as ir
import numba
import numpy as np
import numpy.typing as npt
from numba import types
from numba.extending import intrinsic

from matcher import simd
from matcher.fingerprint.match.types import descriptor_length
from matcher.search import params, preselect
from matcher.simd import LANES, VEC, WORD, const, data, vector_at

I32A = npt.NDArray[np.int32]

#: Values per stored row (the reduced cylinder length).
ROW_VALUES = preselect.reduced_length(descriptor_length())
#: Words per stored row.
WORDS = ROW_VALUES // WORD
assert ROW_VALUES % WORD == 0
#: Probe columns the kernel is built for.
NQ = params.PRESELECT_PROBE_ROWS
#: Largest local similarities summed (the kernel is built for the search's score).
PAIRS = params.PRESELECT_PAIRS


def available() -> bool:
    """Whether this CPU runs the kernel (:func:`matcher.simd.vnni_available`)."""
    return simd.vnni_available()


def to_lanes(rows: npt.NDArray[np.uint8]) -> I32A:
    """(n, M, r) uint8 stored rows -> (g, M, w, LANES) int32 lane layout (see the module)."""
    n, m, r = rows.shape
    if r != ROW_VALUES:
        raise ValueError(f"stored rows of {r} values; the kernel is built for {ROW_VALUES}")
    g = -(-n // LANES)
    padded = np.zeros((g * LANES, m, r), np.uint8)
    padded[:n] = rows
    words = padded.view(np.int32).reshape(g, LANES, m, WORDS)
    return np.ascontiguousarray(words.transpose(0, 2, 3, 1))


def probe_words(probe_cols: npt.NDArray[np.floating]) -> I32A:
    """(r, mp) probe columns (integers 0..PROBE_QUANT, from ``preselect.probe_matrix``) ->
    (NQ, w) int32 words of four signed bytes; columns past mp are zero."""
    r, mp = probe_cols.shape
    if r != ROW_VALUES or mp > NQ:
        raise ValueError(f"probe columns {probe_cols.shape}; the kernel takes ({ROW_VALUES}, <=NQ)")
    if mp and not 0 <= np.min(probe_cols) <= np.max(probe_cols) <= preselect.PROBE_QUANT:
        raise ValueError(f"probe values must lie in 0..{preselect.PROBE_QUANT} (signed bytes)")
    out = np.zeros((NQ, r), np.int8)
    out[:mp] = np.asarray(probe_cols).T.astype(np.int8)
    return out.view(np.int32).reshape(NQ, WORDS)


@intrinsic
def _row_update(typingctx: Any, lanes: Any, offset: Any, words: Any, best: Any) -> Any:
    """best[q] = max(best[q], dot products of one stored row of LANES templates (the w words
    at int32 ``offset`` of ``lanes``) with probe column q), for every q < NQ."""
    sig = types.void(lanes, offset, words, best)

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> Any:
        lanes_p = data(context, builder, signature.args[0], args[0])
        words_p = data(context, builder, signature.args[2], args[2])
        best_p = data(context, builder, signature.args[3], args[3])
        base = builder.gep(lanes_p, [args[1]])
        dot4 = simd.dpbusd(builder)
        row = [
            builder.load(vector_at(builder, base, const(LANES * k)), align=4) for k in range(WORDS)
        ]
        for q in range(NQ):
            acc = [ir.Constant(VEC, None), ir.Constant(VEC, None)]  # two chains, half as long
            for k in range(WORDS):
                word = builder.load(builder.gep(words_p, [const(q * WORDS + k)]))
                acc[k % 2] = builder.call(dot4, [acc[k % 2], row[k], simd.splat(builder, word)])
            dot = builder.add(acc[0], acc[1])
            ptr = vector_at(builder, best_p, const(q * LANES))
            old = builder.load(ptr, align=4)
            new = builder.select(builder.icmp_signed(">", dot, old), dot, old)
            builder.store(new, ptr, align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _top_sum(typingctx: Any, best: Any, out: Any, offset: Any) -> Any:
    """out[offset:offset+LANES] = per lane, the sum of the PAIRS largest of best[:, lane]
    (a compare-exchange network: each column is inserted into a sorted list of PAIRS)."""
    sig = types.void(best, out, offset)

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> Any:
        best_p = data(context, builder, signature.args[0], args[0])
        out_p = data(context, builder, signature.args[1], args[1])
        top = [ir.Constant(VEC, None)] * PAIRS  # products are >= 0, so 0 is a neutral start
        for q in range(NQ):
            v = builder.load(vector_at(builder, best_p, const(q * LANES)), align=4)
            for i in range(PAIRS):
                keep = builder.icmp_signed(">", top[i], v)
                top[i], v = builder.select(keep, top[i], v), builder.select(keep, v, top[i])
        total = top[0]
        for t in top[1:]:
            total = builder.add(total, t)
        builder.store(total, vector_at(builder, out_p, args[2]), align=4)
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(cache=True, nogil=True)
def _lane_scores(lanes: I32A, words: I32A, out: I32A) -> None:  # pragma: no cover - compiled
    g, m = lanes.shape[0], lanes.shape[1]
    best = np.empty((NQ, LANES), np.int32)
    row_words = WORDS * LANES
    for t in range(g):
        best[:] = 0
        # (mypy counts the intrinsics' typing-context parameter, which numba supplies)
        for r in range(m):
            _row_update(lanes, (t * m + r) * row_words, words, best)  # type: ignore[call-arg]
        _top_sum(best, out, t * LANES)  # type: ignore[call-arg]


def lane_scores(lanes: I32A, words: I32A) -> I32A:
    """(g * LANES,) int32 integer pre-selection scores of a lane layout (:func:`to_lanes`)
    against probe words (:func:`probe_words`); multiply by ``preselect.SCALE`` for the float
    path's scores. Only where :func:`available`."""
    if lanes.ndim != 4 or lanes.shape[2:] != (WORDS, LANES) or lanes.dtype != np.int32:
        raise ValueError(f"lane layout {lanes.shape} {lanes.dtype} is not (g, M, w, LANES) int32")
    if words.shape != (NQ, WORDS) or words.dtype != np.int32:
        raise ValueError(f"probe words {words.shape} {words.dtype} are not (NQ, w) int32")
    out = np.empty(lanes.shape[0] * LANES, np.int32)
    _lane_scores(np.ascontiguousarray(lanes), np.ascontiguousarray(words), out)
    return out


def warm_up() -> None:
    """Compile (first run after install) or load from numba's cache the kernel, where it runs."""
    if available():
        lane_scores(np.zeros((1, 1, WORDS, LANES), np.int32), np.zeros((NQ, WORDS), np.int32))
