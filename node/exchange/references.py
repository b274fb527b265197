"""Opaque hit references: meaningless to anyone but the responder, unlinkable across queries.

``reference = base64url(HMAC-SHA256(secret, "bdx-ref-v2" | query_id | requester | len(nonce) |
nonce | record_ref))[:REF_CHARS]``

The same record found by two queries gets two unrelated references (each query message has its
own nonce, and the replay guard refuses a nonce twice), so requesters cannot link hits across
queries, not even by reusing a query id; the responder keeps the mapping reference → record
(table ``exchange_hits``) for the follow-up through formal channels. The secret is the node's,
generated once and kept with its keys; without it a reference reveals nothing. (References
issued under "bdx-ref-v1", without requester and nonce, stay resolvable: only the stored
mapping is read back.)
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Engine, MetaData, String, Table, insert, select
from sqlalchemy.exc import IntegrityError

from node.exchange.messages import b64url

DOMAIN = b"bdx-ref-v2"
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


def make_reference(
    secret: bytes, query_id: uuid.UUID, requester: str, nonce: str, record_ref: str
) -> str:
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the reference secret must be at least {MIN_SECRET_BYTES} bytes")
    who, once = requester.encode("ascii"), nonce.encode("ascii")
    if len(who) != 2 or len(once) > 255:
        raise ValueError("a requester is a 2-letter country code and a nonce at most 255 bytes")
    message = DOMAIN + query_id.bytes + who + bytes([len(once)]) + once + record_ref.encode()
    return b64url(hmac.new(secret, message, hashlib.sha256).digest())[:REF_CHARS]


class HitReferences:
    """Issues references for hits and resolves them for formal follow-up."""

    def __init__(self, engine: Engine, secret: bytes) -> None:
        self.engine = engine
        self.secret = secret

    def issue(self, query_id: uuid.UUID, requester: str, nonce: str, record_ref: str) -> str:
        """The reference of ``record_ref`` for one query message (stored for follow-up)."""
        ref = make_reference(self.secret, query_id, requester, nonce, record_ref)
        row = {
            "reference": ref,
            "query_id": str(query_id),
            "requester": requester,
            "record_ref": record_ref,
            "created_at": datetime.now(UTC),
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(_INSERT_HIT, row)
        except IntegrityError:
            # The same message's inputs again (only possible once its nonce left the replay
            # table): the stored mapping is the same one, so the reference stands.
            if self.resolve(ref) != (record_ref, str(query_id), requester):
                raise
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
