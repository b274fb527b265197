"""Search shards: split evenly, and no more threads than the cores left to each search."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from matcher.search import shards


def _on_thread(fn: Callable[[], None]) -> None:
    """Run ``fn`` on another thread (a share held by this one is not that thread's)."""
    t = threading.Thread(target=fn)
    t.start()
    t.join()


@contextlib.contextmanager
def _busy_elsewhere() -> Iterator[None]:
    """Another thread counted busy until the block ends."""
    entered, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with shards.busy():
            entered.set()
            leave.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    entered.wait(10)
    try:
        yield
    finally:
        leave.set()
        t.join()


def test_a_lone_search_gets_its_threads_and_concurrent_ones_share_the_cores() -> None:
    cores = shards._CORES
    got: list[int] = []

    def search(threads: int) -> None:
        with shards._share(threads) as n:
            got.append(n)

    with shards._share(2) as first:
        assert first == min(2, cores)
        _on_thread(lambda: search(2))  # while the first runs
        with shards.busy():  # nested on the first's thread: counted once
            _on_thread(lambda: search(8))
    assert got == [max(1, min(2, cores // 2))] * 2
    with shards._share(1) as alone:
        assert alone == 1
    with shards._share(2) as again:  # every share was given back
        assert again == min(2, cores)


def test_a_query_counted_busy_leaves_its_search_the_share_of_the_cores() -> None:
    with shards.busy(), shards._share(2) as n:  # the search inside the query: one unit
        assert n == min(2, shards._CORES)
    with _busy_elsewhere(), shards.busy(), shards._share(2) as n:  # two queries in flight
        assert n == max(1, min(2, shards._CORES // 2))


def test_run_shards_runs_on_the_callers_thread_while_others_search() -> None:
    blocks = [[0] * 10 for _ in range(8)]
    seen: list[str] = []

    def work(shard: list[list[int]]) -> int:
        seen.append(threading.current_thread().name)
        return sum(len(b) for b in shard)

    with contextlib.ExitStack() as busy:
        for _ in range(shards._CORES):  # as many queries in flight as there are cores
            busy.enter_context(_busy_elsewhere())
        assert shards.run_shards(blocks, work, 2) == [80]
    assert seen == [threading.current_thread().name]
    seen.clear()
    results = shards.run_shards(blocks, work, 2)
    assert sum(results) == 80 and len(results) == min(2, shards._CORES)
