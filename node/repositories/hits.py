"""The hit references this node issued to peers (table ``exchange_hits``), read for follow-up.

The exchange writes the table (:class:`node.exchange.references.HitReferences`); operators read
it here, in the request's session, so that a resolution or a listing and its audit record are
one transaction. Listings run oldest first (issue time, then reference: a total order), and a
page continues after the last hit of the one before (:class:`HitCursor`, keyset paging): an
operator working the ``pending`` queue page by page moves the hits she records out of it, and
an offset would then skip as many of those still pending.

An operator records the examiner's outcome of a hit's follow-up on its row
(:meth:`HitRepository.record_outcome`): a compare-and-set on the outcome read before, so that
of two operators recording at once neither overwrites the other's unseen (the audit record of
each names the outcome it replaced).
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, or_, select, text, type_coerce, update
from sqlalchemy.orm import Session

from node.db.base import UTCDateTime
from node.db.models import Subject
from node.exchange.references import HitOutcome, exchange_hits, well_formed


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


#: The epoch a cursor counts its microseconds from.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Longest cursor text taken: base64url of up to 20 digits, ``:`` and a reference (60
#: characters at most; a little more is refused before decoding anything).
CURSOR_CHARS = 64


class BadCursorError(ValueError):
    """A cursor no listing of this node handed out."""


@dataclass(frozen=True)
class HitCursor:
    """Where a page of a hit listing ends: the issue time and the reference of its last hit
    (the listings' order). On the wire it is opaque (:meth:`encode`, ``next_after``), and a
    request's ``after`` continues after it whatever was recorded or expired meanwhile."""

    created_at: datetime
    reference: str

    def encode(self) -> str:
        micros = (self.created_at - _EPOCH) // timedelta(microseconds=1)
        raw = f"{micros}:{self.reference}".encode("ascii")
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, text: str) -> HitCursor:
        """The cursor ``text`` encodes; :class:`BadCursorError` for anything else."""
        if len(text) > CURSOR_CHARS or not text.isascii():
            raise BadCursorError("not a cursor of this listing")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
            micros, reference = raw.split(":")
            if not micros.isdigit() or not well_formed(reference):
                raise ValueError(raw)
            return cls(_EPOCH + timedelta(microseconds=int(micros)), reference)
        except (ValueError, binascii.Error, OverflowError):
            raise BadCursorError("not a cursor of this listing") from None

    @classmethod
    def of(cls, hit: IssuedHit) -> HitCursor:
        """The cursor after ``hit``."""
        return cls(hit.created_at.astimezone(UTC), hit.reference)


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
        after: HitCursor | None = None,
        offset: int = 0,
    ) -> list[IssuedHit]:
        """The stored hits that name ``record_ref`` (a subject key) whose follow-up stands at
        ``outcome`` (any, when None), oldest first, after the cursor ``after`` (from the
        first, when None) and ``offset`` more."""
        query = _with_outcome(_SELECT_HITS.where(exchange_hits.c.record_ref == record_ref), outcome)
        return self._page(query, limit=limit, after=after, offset=offset)

    def issued(
        self,
        *,
        requester: str | None = None,
        since: datetime | None = None,
        outcome: OutcomeState | None = None,
        limit: int,
        after: HitCursor | None = None,
        offset: int = 0,
    ) -> list[IssuedHit]:
        """The stored hits issued to ``requester`` (any, when None) at or after ``since`` (a
        UTC time; any, when None) whose follow-up stands at ``outcome`` (any, when None),
        oldest first, paged as :meth:`of_record`."""
        query = _SELECT_HITS
        if requester is not None:
            query = query.where(exchange_hits.c.requester == requester)
        if since is not None:
            query = query.where(exchange_hits.c.created_at >= since)
        return self._page(_with_outcome(query, outcome), limit=limit, after=after, offset=offset)

    def lock_for_outcome(self) -> None:
        """On SQLite, take the database's write lock now, until the transaction ends: the
        driver begins no transaction for a read, so the checks an outcome is recorded on
        (the subject still enrolled, not being deleted) would otherwise be read outside the
        transaction of its write, and a deletion could commit between the two. A write that
        changes nothing takes the lock (and begins the transaction) first; the reads after it
        and the write are then one transaction, and a deletion waits for it. PostgreSQL
        locks the subject's row instead (``SubjectRepository.lock``)."""
        if self.session.get_bind().dialect.name == "sqlite":
            self.session.execute(text("UPDATE exchange_hits SET note = note WHERE 0 = 1"))

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

    def _page(
        self, query: Select[Any], *, limit: int, after: HitCursor | None, offset: int
    ) -> list[IssuedHit]:
        row = exchange_hits.c
        if after is not None:
            later = row.created_at > after.created_at
            same = and_(row.created_at == after.created_at, row.reference > after.reference)
            query = query.where(or_(later, same))
        ordered = query.order_by(row.created_at, row.reference)
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
