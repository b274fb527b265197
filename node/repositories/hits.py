"""The hit references this node issued to peers (table ``exchange_hits``), read for follow-up.

The exchange writes the table (:class:`node.exchange.references.HitReferences`); operators read
it here, in the request's session, so that a resolution or a listing and its audit record are
one transaction. Listings run oldest first (issue time, then reference: a stable order for
paging by offset).

An operator records the examiner's outcome of a hit's follow-up on its row
(:meth:`HitRepository.record_outcome`): a compare-and-set on the outcome read before, so that
of two operators recording at once neither overwrites the other's unseen (the audit record of
each names the outcome it replaced).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select, type_coerce, update
from sqlalchemy.orm import Session

from node.db.base import UTCDateTime
from node.db.models import Subject
from node.exchange.references import HitOutcome, exchange_hits


class OutcomeState(enum.StrEnum):
    """Where a hit's follow-up stands: ``pending`` (no outcome recorded) or the outcome an
    operator recorded (:class:`node.exchange.references.HitOutcome`); what the listings show
    and filter on."""

    PENDING = "pending"
    CONFIRMED = HitOutcome.CONFIRMED.value
    NOT_CONFIRMED = HitOutcome.NOT_CONFIRMED.value
    WITHDRAWN = HitOutcome.WITHDRAWN.value


@dataclass(frozen=True)
class IssuedHit:
    """One stored hit: the reference, the query it answered, who asked, the gallery's subject
    key it names (``s<id>``, :func:`node.services.galleries.subject_key`) and when; and the
    outcome of its follow-up, when one is recorded (else the four are None): the outcome, when,
    by whom (an audit actor) and the operator's note."""

    reference: str
    query_id: str
    requester: str
    record_ref: str
    created_at: datetime
    outcome: HitOutcome | None
    outcome_at: datetime | None
    outcome_by: str | None
    note: str | None

    @property
    def state(self) -> OutcomeState:
        return OutcomeState.PENDING if self.outcome is None else OutcomeState(self.outcome.value)


class HitRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def by_reference(self, reference: str) -> IssuedHit | None:
        query = _SELECT_HITS.where(exchange_hits.c.reference == reference)
        row = self.session.execute(query).first()
        return None if row is None else IssuedHit(*row)

    def of_record(
        self,
        record_ref: str,
        *,
        outcome: OutcomeState | None = None,
        limit: int,
        offset: int = 0,
    ) -> list[IssuedHit]:
        """The stored hits that name ``record_ref`` (a subject key) whose follow-up stands at
        ``outcome`` (any, when None), oldest first."""
        query = _with_outcome(_SELECT_HITS.where(exchange_hits.c.record_ref == record_ref), outcome)
        return self._page(query, limit=limit, offset=offset)

    def issued(
        self,
        *,
        requester: str | None = None,
        since: datetime | None = None,
        outcome: OutcomeState | None = None,
        limit: int,
        offset: int = 0,
    ) -> list[IssuedHit]:
        """The stored hits issued to ``requester`` (any, when None) at or after ``since`` (a
        UTC time; any, when None) whose follow-up stands at ``outcome`` (any, when None),
        oldest first."""
        query = _SELECT_HITS
        if requester is not None:
            query = query.where(exchange_hits.c.requester == requester)
        if since is not None:
            query = query.where(exchange_hits.c.created_at >= since)
        return self._page(_with_outcome(query, outcome), limit=limit, offset=offset)

    def record_outcome(
        self, seen: IssuedHit, outcome: HitOutcome, *, at: datetime, by: str, note: str | None
    ) -> bool:
        """Record ``outcome`` on the hit ``seen`` names, if its outcome is still the one
        ``seen`` holds (in this transaction, not committed). False when it is not: another
        operator recorded one meanwhile, or the row expired; read it again."""
        row = exchange_hits.c
        unchanged = [
            row.reference == seen.reference,
            row.outcome.is_not_distinct_from(seen.outcome),
            row.outcome_at.is_not_distinct_from(seen.outcome_at),
            row.outcome_by.is_not_distinct_from(seen.outcome_by),
            row.note.is_not_distinct_from(seen.note),
        ]
        values = {"outcome": outcome, "outcome_at": at, "outcome_by": by, "note": note}
        done = self.session.execute(update(exchange_hits).where(*unchanged).values(values))
        return bool(getattr(done, "rowcount", 0) == 1)

    def subjects(self, subject_ids: Iterable[int]) -> dict[int, Subject]:
        """The subjects, by row id, of those ids still enrolled (a deleted one is absent)."""
        ids = sorted(set(subject_ids))
        if not ids:
            return {}
        found = self.session.scalars(select(Subject).where(Subject.id.in_(ids)))
        return {s.id: s for s in found}

    def _page(self, query: Select[Any], *, limit: int, offset: int) -> list[IssuedHit]:
        ordered = query.order_by(exchange_hits.c.created_at, exchange_hits.c.reference)
        rows = self.session.execute(ordered.limit(limit).offset(offset))
        return [IssuedHit(*row) for row in rows]


def _with_outcome(query: Select[Any], outcome: OutcomeState | None) -> Select[Any]:
    """``query`` narrowed to the hits whose follow-up stands at ``outcome`` (None: any)."""
    if outcome is None:
        return query
    if outcome is OutcomeState.PENDING:
        return query.where(exchange_hits.c.outcome.is_(None))
    return query.where(exchange_hits.c.outcome == HitOutcome(outcome.value))


#: Every column of a stored hit, in :class:`IssuedHit`'s order.
_SELECT_HITS: Select[Any] = select(
    exchange_hits.c.reference,
    exchange_hits.c.query_id,
    exchange_hits.c.requester,
    exchange_hits.c.record_ref,
    # Stored as UTC; SQLite hands it back without its zone.
    type_coerce(exchange_hits.c.created_at, UTCDateTime()),
    exchange_hits.c.outcome,
    type_coerce(exchange_hits.c.outcome_at, UTCDateTime()),
    exchange_hits.c.outcome_by,
    exchange_hits.c.note,
)
