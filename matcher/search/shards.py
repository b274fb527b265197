"""Run a per-block scorer over a gallery's blocks on several threads and merge the top-k.

numpy releases the GIL in BLAS calls and ufunc loops, so threads that each scan a contiguous
shard of blocks run on separate cores; each keeps its own :class:`TopK`, merged at the end.
Shards pay off only while cores are free: a node answering several queries at once already
keeps them busy, and more runnable threads than cores only add GIL and scheduler hand-offs.
So a search takes its share of the cores (:func:`_share`) given the work in flight, which
callers count with :func:`busy`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence, Sized
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from matcher.search.topk import TopK
from matcher.workers import usable_cpus

T = TypeVar("T")
B = TypeVar("B", bound=Sized)


def split(blocks: Sequence[B], parts: int) -> list[Sequence[B]]:
    """Cut ``blocks`` into at most ``parts`` contiguous shards of near-equal row counts."""
    total = sum(len(b) for b in blocks)
    if parts <= 1 or len(blocks) <= 1 or total == 0:
        return [blocks] if blocks else []
    shards: list[Sequence[B]] = []
    start, acc = 0, 0
    for i, b in enumerate(blocks):
        acc += len(b)
        if acc * parts >= total * (len(shards) + 1) and len(shards) < parts - 1:
            shards.append(blocks[start : i + 1])
            start = i + 1
    shards.append(blocks[start:])
    return [s for s in shards if s]


def run_shards(blocks: Sequence[B], work: Callable[[Sequence[B]], T], threads: int) -> list[T]:
    """``work(shard)`` for each shard; on a pool of up to ``threads`` when more than one, fewer
    when other work shares the cores (see :func:`_share`)."""
    with _share(threads) as n:
        shards = split(blocks, n)
        if len(shards) <= 1:
            return [work(s) for s in shards]
        return list(_pool(len(shards)).map(work, shards))


_CORES = usable_cpus()
_running = 0
_RUNNING_LOCK = threading.Lock()
_held = threading.local()


@contextlib.contextmanager
def busy() -> Iterator[None]:
    """Count this thread's CPU-bound work among the work sharing the cores, for as long as the
    block runs: a node wraps each query it answers, so that a search started inside takes only
    its share (:func:`_share`). Nested uses on one thread count once."""
    global _running
    if getattr(_held, "on", False):
        yield
        return
    with _RUNNING_LOCK:
        _running += 1
    _held.on = True
    try:
        yield
    finally:
        _held.on = False
        with _RUNNING_LOCK:
            _running -= 1


@contextlib.contextmanager
def _share(threads: int) -> Iterator[int]:
    """Threads for one search: at most ``threads``, and no more than its share of the cores
    with the other work counted by :func:`busy` (at least 1, the caller's own). More threads
    than cores only add hand-offs: on 2 cores a node answering peer queries on 2 threads
    served 5% more queries/s with single-threaded searches than with 2 shards each."""
    with busy():
        with _RUNNING_LOCK:
            n = max(1, min(threads, _CORES // _running))
        yield n


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    """A process-wide pool per thread count: starting threads per search costs ~0.2 ms, which
    is most of a 10k-record face search. Work never submits to a pool from inside it."""
    with _POOLS_LOCK:
        if threads not in _POOLS:
            _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="bdx-search")
        return _POOLS[threads]


def merged(results: Sequence[TopK], k: int) -> TopK:
    out = TopK(k)
    for r in results:
        out.merge(r)
    return out
