"""Retention of the node's exchange log and audit trail (Prüm: logged data is deleted after
two years; ``exchange_log_days``, default 730).

:func:`prune` deletes, in batches, the bytes of the exchange log's entries appended before the
horizon (``now - exchange_log_days``): a prefix of the log by index
(:meth:`certs.translog.TransparencyLog.prune`), whose leaf hashes, subtree hashes and signed
checkpoints stay, so the log still verifies (``bdx audit store``, exports) and records each
pruning as a ``log_pruned`` event. In the same transaction the officers' query history index
forgets the queries whose ``query_sent`` entry is pruned (``GET /queries/{id}`` answers 404 for
them, as for an unknown query), so it never points to a pruned entry; that transaction locks
the index's state row first, as its catch-up does, then the log's head. The audit trail
(``audit_events``) loses its events older than the same horizon, in batches too.

``bdx audit prune`` runs it to the end (``--dry-run``: counts only); ``bdx serve``'s
housekeeping runs it hourly, at most :data:`ROUND_BATCHES` batches a round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from certs.translog import TransparencyLog
from certs.translog.params import PRUNE_BATCH
from node.repositories.audit import AuditRepository
from node.repositories.sent_queries import SentQueryIndex

ROUND_BATCHES = 4
"""Batches of :data:`~certs.translog.params.PRUNE_BATCH` entries one housekeeping round prunes
(20,000 entries, well under a second of locked head row each): the backlog of an upgraded
node's two-year log goes over hours of rounds without holding back the round's other steps."""


@dataclass(frozen=True)
class RetentionReport:
    """What :func:`prune` did (``dry_run``: would do). Counts only, never contents."""

    horizon: datetime
    dry_run: bool
    entries_pruned: int
    boundary: int
    """Exchange log entries below this index are pruned (would be) afterwards."""
    sent_queries_deleted: int
    audit_events_deleted: int
    complete: bool
    """Whether nothing older than the horizon is left (False: batches left for later)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "horizon": self.horizon.isoformat(),
            "dry_run": self.dry_run,
            "entries_pruned": self.entries_pruned,
            "boundary": self.boundary,
            "sent_queries_deleted": self.sent_queries_deleted,
            "audit_events_deleted": self.audit_events_deleted,
            "complete": self.complete,
        }


def horizon(days: int, now: datetime | None = None) -> datetime:
    """The time before which logged data is deleted: ``days`` before ``now`` (UTC)."""
    return (now or datetime.now(UTC)) - timedelta(days=days)


def prune(
    log: TransparencyLog,
    engine: Engine,
    days: int,
    *,
    dry_run: bool = False,
    max_batches: int | None = None,
    now: datetime | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> RetentionReport:
    """Delete what the exchange log and the audit trail hold from before ``days`` ago (the
    module docstring), at most ``max_batches`` batches of each (None: all). ``on_progress``
    gets the number of log entries each batch pruned."""
    cutoff = horizon(days, now)
    if dry_run:
        return _count(log, engine, cutoff)
    entries = queries = batches = 0
    boundary = log.pruned_size()
    complete = False
    while max_batches is None or batches < max_batches:
        batches += 1
        with Session(engine) as session:
            index = SentQueryIndex(log, session)
            index.lock()  # before the log's head: the order the index's catch-up takes them
            result = log.prune(cutoff, limit=PRUNE_BATCH, connection=session.connection())
            queries += index.forget_before(result.boundary)
            session.commit()
        entries += result.pruned
        boundary = result.boundary
        if on_progress is not None and result.pruned:
            on_progress(result.pruned)
        if result.pruned < PRUNE_BATCH:
            complete = True
            break
    limit = None if max_batches is None else max_batches * PRUNE_BATCH
    with Session(engine) as session:
        events = AuditRepository(session).delete_before(cutoff, limit=limit)
        session.commit()
    if limit is not None and events == limit:
        complete = False
    return RetentionReport(cutoff, False, entries, boundary, queries, events, complete)


def _count(log: TransparencyLog, engine: Engine, cutoff: datetime) -> RetentionReport:
    start, count = log.prunable(cutoff)
    with Session(engine) as session:
        queries = SentQueryIndex(log, session).count_before(start + count)
        events = AuditRepository(session).count_before(cutoff)
    return RetentionReport(cutoff, True, count, start + count, queries, events, True)
