"""Step 1 of the kernel: the (nb*M, mp) integer dot products of gallery and probe cylinders.

Cell values are integers 0..QUANT_LEVELS on both sides, so every product and sum is an exact
integer (at most d * QUANT_LEVELS**2 = 28,800, far below 2**24) and three ways of computing
them give the same float32 matrix:

* float32 rows (1:1 comparison, evaluation): one BLAS GEMM against the probe's rows;
* uint8 rows as galleries store them, on a CPU with AVX-512 VNNI: :func:`_vnni_products`,
  ``vpdpbusd`` with sixteen probe columns in the lanes of a register and each 4-byte word of
  a gallery row broadcast; no widening of the rows, and 64 multiply-adds per instruction;
* uint8 rows elsewhere: widened to float32, then the GEMM.

On VNNI the matrix comes back ``mp_pad`` = mp rounded up to LANES columns wide (zero past mp):
the consolidation reads columns below mp only. Shapes: ``n = nb*M`` rows of ``d`` values;
``w = d / 4`` words; ``mp`` probe minutiae.
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
from matcher.errors import TemplateFormatError
from matcher.fingerprint.match import params
from matcher.fingerprint.match.types import SearchTemplate, descriptor_length
from matcher.simd import FVEC, LANES, VEC, WORD, const, data, vector_at

F32 = npt.NDArray[np.float32]
I32A = npt.NDArray[np.int32]

#: Words per cylinder row.
WORDS = descriptor_length() // WORD
assert descriptor_length() % WORD == 0
assert np.iinfo(np.int8).max >= params.QUANT_LEVELS  # probe values are signed bytes


def probe_words(probe: SearchTemplate) -> I32A:
    """(w, mp_pad) int32: word k of probe row j at [k, j] (four signed bytes), zero columns
    past mp. Kept on the probe: a search scores one probe in many calls."""
    words: I32A | None = probe.__dict__.get("_product_words")
    if words is None:
        desc = probe.descriptors
        mp = desc.shape[0]
        if mp and not 0 <= desc.min() <= desc.max() <= params.QUANT_LEVELS:
            raise TemplateFormatError(
                f"cylinder values must lie in 0..{params.QUANT_LEVELS}", reason="bad_template"
            )
        padded = np.zeros((-(-mp // LANES) * LANES, descriptor_length()), np.int8)
        padded[:mp] = desc.astype(np.int8)
        words = np.ascontiguousarray(padded.view(np.int32).T)
        object.__setattr__(probe, "_product_words", words)  # a cache: the probe stays as it was
    return words


def products(rows: npt.NDArray[np.float32] | npt.NDArray[np.uint8], probe: SearchTemplate) -> F32:
    """(n, mp) float32 dot products of ``rows`` (n, d) float32 or uint8 with the probe's rows
    (n, mp_pad on the VNNI path; see the module)."""
    if rows.dtype == np.uint8:
        if simd.vnni_available():
            words = probe_words(probe)
            out = np.empty((rows.shape[0], words.shape[1]), np.float32)
            _vnni_products(np.ascontiguousarray(rows).view(np.int32), words, out)
            return out
        rows = rows.astype(np.float32)
    return np.asarray(rows @ probe.descriptors.T, np.float32)


@intrinsic
def _row_block(
    typingctx: Any, rows: Any, row_at: Any, words: Any, col_at: Any, stride: Any, out: Any
) -> Any:
    """out[row, col_at:col_at+LANES] = row ``row_at`` of ``rows`` (w int32 words) dotted with
    probe columns col_at.. (``words`` [k * stride + col]), as float32."""
    sig = types.void(rows, row_at, words, col_at, stride, out)

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> Any:
        rows_p = data(context, builder, signature.args[0], args[0])
        words_p = data(context, builder, signature.args[2], args[2])
        out_p = data(context, builder, signature.args[5], args[5])
        row_at, col_at, stride = args[1], args[3], args[4]
        row = builder.gep(rows_p, [builder.mul(row_at, const(WORDS))])
        cols = builder.gep(words_p, [col_at])
        dot4 = simd.dpbusd(builder)
        acc = [ir.Constant(VEC, None), ir.Constant(VEC, None)]  # two chains, half as long
        for k in range(WORDS):
            word = builder.load(builder.gep(row, [const(k)]))
            probe = builder.load(vector_at(builder, cols, builder.mul(stride, const(k))), align=4)
            acc[k % 2] = builder.call(dot4, [acc[k % 2], simd.splat(builder, word), probe])
        dot = builder.sitofp(builder.add(acc[0], acc[1]), FVEC)
        at = builder.add(builder.mul(row_at, stride), col_at)
        builder.store(dot, vector_at(builder, out_p, at, FVEC), align=4)
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(cache=True, nogil=True)
def _vnni_products(rows: I32A, words: I32A, out: F32) -> None:  # pragma: no cover - compiled
    """rows (n, w) int32 words of uint8 cells; words (w, mp_pad); out (n, mp_pad)."""
    n, stride = rows.shape[0], words.shape[1]
    for i in range(n):
        for c in range(0, stride, LANES):
            _row_block(rows, i, words, c, stride, out)  # type: ignore[call-arg]


def warm_up() -> None:
    """Compile or load from numba's cache the VNNI path, where the CPU has it."""
    if simd.vnni_available():
        t = SearchTemplate(
            np.zeros((1, descriptor_length()), np.float32),
            np.zeros(1, np.float32),
            np.zeros((1, 4), np.float32),
        )
        products(np.zeros((1, descriptor_length()), np.uint8), t)
