"""The hit references this node issued to peers (table ``exchange_hits``), read for follow-up.

The exchange writes the table (:class:`node.exchange.references.HitReferences`); operators read
it here, in the request's session, so that a resolution and its audit record are one
transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, type_coerce
from sqlalchemy.orm import Session

from node.db.base import UTCDateTime
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
        query = select(
            exchange_hits.c.reference,
            exchange_hits.c.query_id,
            exchange_hits.c.requester,
            exchange_hits.c.record_ref,
            # Stored as UTC; SQLite hands it back without its zone.
            type_coerce(exchange_hits.c.created_at, UTCDateTime()),
        ).where(exchange_hits.c.reference == reference)
        row = self.session.execute(query).first()
        return None if row is None else IssuedHit(*row)
