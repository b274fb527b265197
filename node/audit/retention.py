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
housekeeping runs it hourly, at most :data:`ROUND_BATCHES` batches a round. Each run that
deletes anything is recorded in the audit trail as ``audit.prune`` (the actor: the CLI's user,
or ``system`` for the housekeeping; the counts, boundary and horizon). Before anything, the
log's pruned boundary is checked (:meth:`~certs.translog.TransparencyLog.check_pruned_boundary`):
a tampered log is refused, never pruned over.

An entry older than the horizon that is not pruned stops the run short: one stored with a
future time (a clock set wrong: ``future_store_time``) or one a checkpoint signed after the
horizon proves recent (its store time moved back: ``store_time_unproven``). The report then
says ``complete: false`` with that ``reason``, and a warning is logged (its index and time,
never its contents).
"""

from __future__ import annotations

import logging
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

logger = logging.getLogger(__name__)

PRUNE_ACTION = "audit.prune"
"""The audit trail's action for a retention run that deleted anything."""
SYSTEM_ACTOR = "system"
"""The actor of the housekeeping's runs (as the node's other housekeeping actions)."""

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
    """Whether nothing older than the horizon is left (False: batches left for later, or
    ``reason``)."""
    reason: str | None = None
    """Why entries older than the horizon are left (the module docstring), None otherwise."""

    def to_json(self) -> dict[str, Any]:
        return {
            "horizon": self.horizon.isoformat(),
            "dry_run": self.dry_run,
            "entries_pruned": self.entries_pruned,
            "boundary": self.boundary,
            "sent_queries_deleted": self.sent_queries_deleted,
            "audit_events_deleted": self.audit_events_deleted,
            "complete": self.complete,
            "reason": self.reason,
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
    actor: str = SYSTEM_ACTOR,
) -> RetentionReport:
    """Delete what the exchange log and the audit trail hold from before ``days`` ago (the
    module docstring), at most ``max_batches`` batches of each (None: all). ``on_progress``
    gets the number of log entries each batch pruned; ``actor`` is recorded with the run.
    Raises :class:`~certs.translog.TamperedError` on a tampered pruned boundary."""
    at = now or datetime.now(UTC)
    cutoff = horizon(days, at)
    log.check_pruned_boundary()
    if dry_run:
        return _count(log, engine, cutoff, at)
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
    # Against the clock now: the run's own log_pruned events are later than ``at``.
    reason = _stopped(log, boundary, cutoff, max(at, datetime.now(UTC))) if complete else None
    limit = None if max_batches is None else max_batches * PRUNE_BATCH
    with Session(engine) as session:
        repo = AuditRepository(session)
        events = repo.delete_before(cutoff, limit=limit)
        if limit is not None and events == limit:
            complete = False
        report = RetentionReport(
            cutoff, False, entries, boundary, queries, events, complete and not reason, reason
        )
        if entries or queries or events:
            details = report.to_json()
            del details["dry_run"]
            repo.record(actor, PRUNE_ACTION, None, details)
        session.commit()
    return report


def _count(
    log: TransparencyLog, engine: Engine, cutoff: datetime, now: datetime
) -> RetentionReport:
    start, count = log.prunable(cutoff)
    reason = _stopped(log, start + count, cutoff, now)
    with Session(engine) as session:
        queries = SentQueryIndex(log, session).count_before(start + count)
        events = AuditRepository(session).count_before(cutoff)
    return RetentionReport(
        cutoff, True, count, start + count, queries, events, reason is None, reason
    )


def _stopped(log: TransparencyLog, boundary: int, cutoff: datetime, now: datetime) -> str | None:
    """Why the entry at ``boundary`` (where pruning stopped) is not pruned though older than
    the horizon, logged as a warning (its index and time only); None when it is not older."""
    if boundary >= log.size():
        return None
    entry = log.entry(boundary)
    if entry.created_at > now:
        reason = "future_store_time"
        why = "in the future (a clock set wrong?)"
    elif entry.created_at < cutoff:
        reason = "store_time_unproven"
        why = "before the horizon, but a checkpoint signed after it proves the entry later"
    else:
        return None
    logger.warning(
        "retention stopped at exchange log entry %d: its store time %s is %s; the entries "
        "from it on are not pruned [%s]",
        boundary,
        entry.created_at.isoformat(),
        why,
        reason,
    )
    return reason
