"""What one peer may take of a node's peer port, so that it cannot spoil it for the others.

* :class:`PeerWork`: the peer threads are shared, but one peer's queries run on at most its
  share of them (:data:`~node.exchange.params.PEER_THREAD_SHARE`); its further queries wait
  behind each other in a queue of their own (at most
  :data:`~node.exchange.params.PEER_QUEUED_QUERIES`, beyond which they are refused with 503
  ``peer_busy``), so another peer's query still finds a free thread. At the node's stop it is
  closed (:meth:`PeerWork.close`): the queries still waiting are dropped and counted per peer,
  and a query offered afterwards is refused (:class:`PeerWorkClosedError`).
* :class:`RefusalBudget`: the refusals of one peer that charge it nothing (a body that is no
  JWS, a bad signature, a stale or replayed query, a policy refusal...) are each logged while
  the peer's token bucket has tokens; beyond it they are only counted, and one
  ``refusals_suppressed`` event per peer and window says how many and why. What the peer is
  answered is the responder's business (:mod:`node.exchange.responder`): a verified query
  still gets its signed refusal, an unverified one 429.

Peers are told apart by their TLS-authenticated country (``None``: a client whose certificate
was refused, all such clients together).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from node.exchange import params
from node.service_errors import RetryLaterError, StoreUnavailableError

log = logging.getLogger(__name__)

#: Why a query is refused or dropped at the node's stop (the reason a request the stop cuts
#: off is answered with, :class:`node.api.errors.StopCutOff`).
NODE_STOPPING = "node_stopping"


class PeerWorkClosedError(StoreUnavailableError):
    """A job offered to a :class:`PeerWork` closed by the node's stop: it is not run."""

    default_reason = NODE_STOPPING


def peer_share(threads: int) -> int:
    """How many of ``threads`` peer threads one peer's queries may hold at once (at least
    one)."""
    return max(1, int(threads * params.PEER_THREAD_SHARE))


@dataclass
class _PeerQueue:
    running: int = 0
    waiting: deque[Callable[[], None]] = field(default_factory=deque)


class PeerWork:
    """Runs each peer's jobs on ``executor``, at most ``per_peer`` of one peer's at a time.

    A job beyond that waits in its peer's queue (memory only, at most ``queued`` jobs) and is
    handed to the executor when one of the same peer's jobs ends: one peer's backlog never
    stands in the executor's queue before another peer's job.

    :meth:`close` ends that before the executor is shut down: the jobs waiting are dropped
    (counted per peer for the caller to report), a job that ends hands none on, and
    :meth:`submit` refuses. A job is handed to the executor under the lock that ``close``
    takes, so none reaches an executor shut down after ``close`` (its RuntimeError was raised
    in a pool thread, where nobody read it, and the job was lost without a word)."""

    def __init__(self, executor: Executor, per_peer: int, queued: int) -> None:
        self.executor = executor
        self.per_peer = per_peer
        self.queued = queued
        self._lock = threading.Lock()
        self._peers: dict[str, _PeerQueue] = {}
        self._closed = False

    def submit(self, peer: str, job: Callable[[], None]) -> None:
        """Run ``job`` for ``peer`` now or after its peer's earlier jobs; raise
        :class:`RetryLaterError` (``peer_busy``) when the peer's queue is full, and
        :class:`PeerWorkClosedError` once :meth:`close` was called."""
        with self._lock:
            if self._closed:
                raise PeerWorkClosedError(
                    f"this node is stopping: {peer}'s query is not taken", reason=NODE_STOPPING
                )
            state = self._peers.setdefault(peer, _PeerQueue())
            if state.running < self.per_peer:
                state.running += 1
            elif len(state.waiting) < self.queued:
                state.waiting.append(job)
                return
            else:
                raise RetryLaterError(
                    f"{peer} has {self.per_peer + self.queued} queries running or waiting here",
                    reason="peer_busy",
                    retry_after_s=params.PEER_BUSY_RETRY_AFTER_S,
                )
            self.executor.submit(self._run, peer, job)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (the node stops)."""
        return self._closed

    def close(self) -> dict[str, int]:
        """Stop taking and handing on jobs (the node stops); the number of jobs dropped from
        each peer's queue, by peer. The jobs running, or handed to the executor already, are
        left to it."""
        with self._lock:
            self._closed = True
            dropped = {p: len(s.waiting) for p, s in self._peers.items() if s.waiting}
            for state in self._peers.values():
                state.waiting.clear()
        return dropped

    def load(self, peer: str) -> tuple[int, int]:
        """``peer``'s jobs running and waiting now."""
        with self._lock:
            state = self._peers.get(peer)
            return (state.running, len(state.waiting)) if state else (0, 0)

    def _run(self, peer: str, job: Callable[[], None]) -> None:
        try:
            job()
        finally:
            with self._lock:
                state = self._peers[peer]
                if state.waiting:  # its turn in the executor's queue, behind the others'
                    self.executor.submit(self._run, peer, state.waiting.popleft())
                else:
                    state.running -= 1
                    if not state.running:
                        del self._peers[peer]


@dataclass
class _Bucket:
    tokens: float
    at: float
    suppressed: Counter[str] = field(default_factory=Counter)
    since: datetime | None = None  # the window's start (its first suppressed refusal)
    opened: float = 0.0


class RefusalBudget:
    """Per-peer token buckets of logged refusals (capacity :data:`REFUSAL_BURST`, refilled at
    :data:`REFUSAL_RATE_PER_S`), and the counts of the refusals beyond them."""

    def __init__(
        self,
        burst: float = params.REFUSAL_BURST,
        rate_per_s: float = params.REFUSAL_RATE_PER_S,
        window_s: float = params.REFUSAL_SUMMARY_WINDOW_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.rate = rate_per_s
        self.window_s = window_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._buckets: dict[str | None, _Bucket] = {}

    def take(self, peer: str | None, reason: str, now: datetime) -> bool:
        """Whether ``peer``'s refusal (``reason``) may be logged; if not, it is counted for the
        peer's next ``refusals_suppressed`` event."""
        t = self._monotonic()
        with self._lock:
            bucket = self._buckets.get(peer)
            if bucket is None:
                bucket = self._buckets[peer] = _Bucket(self.burst, t)
            bucket.tokens = min(self.burst, bucket.tokens + (t - bucket.at) * self.rate)
            bucket.at = t
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return True
            if bucket.since is None:
                bucket.since, bucket.opened = now, t
            bucket.suppressed[reason] += 1
            return False

    def summaries(
        self, event: Callable[..., dict[str, Any]], *, closing: bool = False
    ) -> list[dict[str, Any]]:
        """The ``refusals_suppressed`` events due (and forgotten here): each peer's whose window
        has closed, and every one with ``closing`` (the node stops). A peer's window opens at
        its first refusal counted and closes ``window_s`` later: one event per peer and window
        at most, however often its refusals are logged meanwhile. ``event`` makes an event of
        a type and fields."""
        t = self._monotonic()
        due: list[dict[str, Any]] = []
        with self._lock:
            for who, bucket in self._buckets.items():
                if bucket.since is None:
                    continue
                if closing or t - bucket.opened >= self.window_s:
                    due.append(
                        event(
                            "refusals_suppressed",
                            peer=who,
                            since=bucket.since.isoformat(),
                            count=sum(bucket.suppressed.values()),
                            reasons=dict(sorted(bucket.suppressed.items())),
                        )
                    )
                    bucket.suppressed = Counter()
                    bucket.since = None
        return due
