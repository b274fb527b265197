""":class:`~node.exchange.admission.PeerWork` at the node's stop, on a real thread pool: what
its :meth:`~node.exchange.admission.PeerWork.close` drops, runs and refuses."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from node.exchange.admission import NODE_STOPPING, PeerWork, PeerWorkClosedError


class _KeptFutures(ThreadPoolExecutor):
    """A thread pool that keeps the future of each job handed to it, so that a failure raised
    in a pool thread (which nobody reads otherwise) can be looked at."""

    def __init__(self, threads: int) -> None:
        super().__init__(threads)
        self.futures: list[Future[Any]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = super().submit(fn, *args, **kwargs)
        self.futures.append(future)
        return future


def test_close_drops_the_waiting_jobs_by_peer_and_lets_the_running_ones_end() -> None:
    """Two peers, one job each running (a thread each) and jobs waiting behind them: ``close``
    hands back how many waited, per peer; the running jobs end, none of the waiting ones runs,
    no job's end raises in its pool thread (it handed the next job to an executor shut down:
    RuntimeError), and a job offered afterwards is refused."""
    executor = _KeptFutures(2)
    work = PeerWork(executor, per_peer=1, queued=4)
    release, ran = threading.Event(), []
    for peer in ("TH", "ID"):
        work.submit(peer, lambda: release.wait(10) and None)
    for n in range(3):
        work.submit("TH", lambda n=n: ran.append(("TH", n)))
    work.submit("ID", lambda: ran.append(("ID", 0)))
    assert (work.load("TH"), work.load("ID")) == ((1, 3), (1, 1))
    assert work.close() == {"TH": 3, "ID": 1}
    shutting = threading.Thread(target=executor.shutdown)
    shutting.start()
    release.set()
    shutting.join(10)
    assert not shutting.is_alive()
    assert ran == []
    assert [f.exception() for f in executor.futures] == [None, None]
    assert (work.load("TH"), work.load("ID")) == ((0, 0), (0, 0))
    with pytest.raises(PeerWorkClosedError) as refused:
        work.submit("TH", lambda: None)
    assert refused.value.reason == NODE_STOPPING
    assert work.close() == {}


def test_jobs_are_handed_on_until_close() -> None:
    """Before ``close`` a waiting job runs when its peer's running job ends, as before."""
    with ThreadPoolExecutor(2) as executor:
        work = PeerWork(executor, per_peer=1, queued=2)
        release, done = threading.Event(), threading.Event()
        work.submit("TH", lambda: release.wait(10) and None)
        work.submit("TH", done.set)
        assert work.load("TH") == (1, 1)
        release.set()
        assert done.wait(10)
    assert work.load("TH") == (0, 0)
