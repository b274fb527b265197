"""The hit references this node issued to peers (table ``exchange_hits``), read for follow-up.

The exchange writes the table (:class:`node.exchange.references.HitReferences`); operators read
it here, in the request's session, so that a resolution or a listing and its audit record are
one transaction. Listings run oldest first (issue time, then reference: a stable order for
paging by offset).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select, type_coerce
from sqlalchemy.orm import Session

from node.db.base import UTCDateTime
from node.db.models import Subject
from node.exchange.references import exchange_hits


@dataclass(frozen=True)
class IssuedHit:
    """One stored hit: the reference, the query it answered, who asked, the gallery's subject
    key it names (``s<id>``, :func:`node.services.galleries.subject_key`) and when."""

    reference: str
    query_id: str
    requester: str
    record_ref: str
    created_at: datetime


class HitRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def by_reference(self, reference: str) -> IssuedHit | None:
        query = _SELECT_HITS.where(exchange_hits.c.reference == reference)
        row = self.session.execute(query).first()
        return None if row is None else IssuedHit(*row)

    def of_record(self, record_ref: str, *, limit: int, offset: int = 0) -> list[IssuedHit]:
        """The stored hits that name ``record_ref`` (a subject key), oldest first."""
        query = _SELECT_HITS.where(exchange_hits.c.record_ref == record_ref)
        return self._page(query, limit=limit, offset=offset)

    def issued(
        self,
        *,
        requester: str | None = None,
        since: datetime | None = None,
        limit: int,
        offset: int = 0,
    ) -> list[IssuedHit]:
        """The stored hits issued to ``requester`` (any, when None) at or after ``since`` (a
        UTC time; any, when None), oldest first."""
        query = _SELECT_HITS
        if requester is not None:
            query = query.where(exchange_hits.c.requester == requester)
        if since is not None:
            query = query.where(exchange_hits.c.created_at >= since)
        return self._page(query, limit=limit, offset=offset)

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


#: Every column of a stored hit, in :class:`IssuedHit`'s order.
_SELECT_HITS: Select[Any] = select(
    exchange_hits.c.reference,
    exchange_hits.c.query_id,
    exchange_hits.c.requester,
    exchange_hits.c.record_ref,
    # Stored as UTC; SQLite hands it back without its zone.
    type_coerce(exchange_hits.c.created_at, UTCDateTime()),
)
