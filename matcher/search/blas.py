"""Keep BLAS single-threaded while search runs its own threads.

OpenBLAS starts its own threads for every gemv/gemm above a small size. On a loaded 2-core
machine their per-call hand-off costs more than the product: 16 calls of a (65536, 128) gemv
took 3x as long as one (1M, 128) gemv with 2 OpenBLAS threads, and the same time with 1. Search
therefore pins BLAS to one thread per call and parallelises over gallery shards itself.
threadpoolctl finds the BLAS numpy loaded and sets its thread count (~10 µs per call).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from threadpoolctl import ThreadpoolController

_CONTROLLER: ThreadpoolController | None = None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    with _CONTROLLER.limit(limits=1, user_api="blas"):
        yield
