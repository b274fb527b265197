"""Opaque hit references: meaningless to anyone but the responder, unlinkable across queries.

``reference = base64url(HMAC-SHA256(secret, "bdx-ref-v1" | query_id | record_ref))[:REF_CHARS]``

The same record found by two queries gets two unrelated references (the query id differs), so
requesters cannot link hits across queries; the responder keeps the mapping reference → record
(table ``exchange_hits``) for the follow-up through formal channels. The secret is the node's,
generated once and kept with its keys; without it a reference reveals nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Engine, MetaData, String, Table, insert, select

from node.exchange.messages import b64url

DOMAIN = b"bdx-ref-v1"
#: 22 base64url characters = 132 bits: collisions are out of reach for any gallery size.
REF_CHARS = 22
MIN_SECRET_BYTES = 32

metadata = MetaData()

exchange_hits = Table(
    "exchange_hits",
    metadata,
    Column("reference", String(REF_CHARS), primary_key=True),
    Column("query_id", String(36), nullable=False, index=True),
    Column("requester", String(2), nullable=False),
    Column("record_ref", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

#: Built once (every hit runs it).
_INSERT_HIT = insert(exchange_hits)


def make_reference(secret: bytes, query_id: uuid.UUID, record_ref: str) -> str:
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the reference secret must be at least {MIN_SECRET_BYTES} bytes")
    mac = hmac.new(secret, DOMAIN + query_id.bytes + record_ref.encode("utf-8"), hashlib.sha256)
    return b64url(mac.digest())[:REF_CHARS]


class HitReferences:
    """Issues references for hits and resolves them for formal follow-up."""

    def __init__(self, engine: Engine, secret: bytes) -> None:
        self.engine = engine
        self.secret = secret

    def issue(self, query_id: uuid.UUID, requester: str, record_ref: str) -> str:
        ref = make_reference(self.secret, query_id, record_ref)
        row = {
            "reference": ref,
            "query_id": str(query_id),
            "requester": requester,
            "record_ref": record_ref,
            "created_at": datetime.now(UTC),
        }
        with self.engine.begin() as conn:
            conn.execute(_INSERT_HIT, row)
        return ref

    def resolve(self, reference: str) -> tuple[str, str, str] | None:
        """(record reference, query id, requester) for a reference this node issued, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(
                    exchange_hits.c.record_ref, exchange_hits.c.query_id, exchange_hits.c.requester
                ).where(exchange_hits.c.reference == reference)
            ).first()
        return None if row is None else (row[0], row[1], row[2])
