"""AVX-512 VNNI for the compiled kernels: whether the CPU has it, and the LLVM pieces they share.

``vpdpbusd`` multiplies unsigned bytes by signed bytes and sums each group of four products into
one of sixteen int32 lanes: 64 multiply-adds per instruction where a float32 FMA does 16. The
kernels that use it (:mod:`matcher.search.lanes`, :mod:`matcher.fingerprint.match.products`)
compute integer dot products that their float paths compute exactly too (small non-negative
integers), so the two paths agree bit for bit, and the float path serves CPUs without VNNI.
The kernels emit the instruction through numba intrinsics (LLVM IR); those are compiled only
where :func:`vnni_available` says the CPU runs them.
"""

from __future__ import annotations

import functools
from typing import Any

import llvmlite.ir as ir
from llvmlite import binding
from numba.core import cgutils, config

#: int32 lanes of a 512-bit register.
LANES = 16
#: Bytes per int32 word: ``vpdpbusd`` sums this many byte products into a lane.
WORD = 4
#: CPU features the kernels need (names as LLVM reports the host's).
FEATURES = ("avx512f", "avx512bw", "avx512vnni")

I32 = ir.IntType(32)
I64 = ir.IntType(64)
VEC = ir.VectorType(I32, LANES)
FVEC = ir.VectorType(ir.FloatType(), LANES)


@functools.cache
def vnni_available() -> bool:
    """Whether the VNNI kernels run here: the CPU has AVX-512 with VNNI, and numba compiles
    for it (``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES``, e.g. for caches portable across
    machines, must then name the features themselves)."""
    features = binding.get_host_cpu_features()
    if not all(features.get(name, False) for name in FEATURES):
        return False
    name, chosen_text = getattr(config, "CPU_NAME", None), getattr(config, "CPU_FEATURES", None)
    if name in (None, "host") and chosen_text is None:
        return True
    chosen = set((chosen_text or "").split(","))
    return all(f"+{name}" in chosen for name in FEATURES)


def data(context: Any, builder: ir.IRBuilder, ty: Any, value: ir.Value) -> ir.Value:
    """Pointer to the first element of a numba array argument."""
    return context.make_array(ty)(context, builder, value).data


def vector_at(builder: ir.IRBuilder, base: ir.Value, index: ir.Value, vec: ir.Type = VEC) -> Any:
    """Pointer to the ``vec`` (LANES elements) starting at element ``index`` of ``base``."""
    return builder.bitcast(builder.gep(base, [index]), vec.as_pointer())


def const(value: int) -> ir.Constant:
    """An i64 constant (element offsets)."""
    return ir.Constant(I64, value)


def dpbusd(builder: ir.IRBuilder) -> Any:
    """The ``vpdpbusd`` intrinsic: (acc, unsigned bytes, signed bytes) -> acc + dot products."""
    return cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(VEC, [VEC] * 3), "llvm.x86.avx512.vpdpbusd.512"
    )


def splat(builder: ir.IRBuilder, word: ir.Value) -> Any:
    """A VEC of ``word`` (an i32) in every lane (LLVM folds it into the instruction's
    embedded broadcast when ``word`` comes from memory)."""
    undef = ir.Constant(VEC, ir.Undefined)
    one = builder.insert_element(undef, word, ir.Constant(I32, 0))
    return builder.shuffle_vector(one, undef, ir.Constant(VEC, [0] * LANES))
