"""Opaque hit references: meaningless to anyone but the responder, unlinkable across queries.

``reference = base64url(HMAC-SHA256(secret, "bdx-ref-v3" | salt | query_id | requester |
record_ref))[:REF_CHARS]``, with ``salt`` 16 fresh random bytes per hit.

The same record found by two queries gets two unrelated references, whatever the requester
puts in its queries: the salt is the responder's. (Under "bdx-ref-v2" the inputs were all the
requester's: once a nonce left the replay table, a peer resending one fixed query id and nonce
every few minutes got the same reference for every probe of the same person, a stable
pseudonym per subject.) The responder keeps the mapping reference → record (table
``exchange_hits``) for the follow-up through formal channels. The secret is the node's,
generated once and kept with its keys: references stay unpredictable even where the random
source repeats itself (a virtual machine restored from a snapshot replays its state).
References issued under earlier versions stay resolvable: only the stored mapping is read back.
The mapping is kept for the follow-up period only (``retention``, the node's
``hit_reference_days``): :meth:`HitReferences.expire` deletes older rows. A reference no
operator resolved, still in both nodes' exchange logs, then names nobody. A resolved one stays
linked to its subject: each resolution is an audit event (``hit.resolve``,
:mod:`node.services.hits`) holding the reference and the subject's external id, mirrored into
the append-only exchange log, and neither is pruned with this table.

An operator records on the row the examiner's outcome of the follow-up (:class:`HitOutcome`,
with when, by whom and a short note; :mod:`node.services.hits`). The follow-up period runs
from the hit's issue whatever its outcome: a confirmed hit's row expires as a pending one's
(the personal data, once released through formal channels, is the requesting country's to
keep; this table holds only the link), and its ``hit.outcome`` audit events remain.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Enum,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError

from node.exchange.messages import b64url

DOMAIN = b"bdx-ref-v3"
#: Random bytes drawn for each reference (128 bits: never repeated).
SALT_BYTES = 16
#: Draws before an (astronomically unlikely) taken reference is reported as an error.
ISSUE_ATTEMPTS = 3
#: 22 base64url characters = 132 bits: collisions are out of reach for any gallery size.
REF_CHARS = 22
MIN_SECRET_BYTES = 32
#: A reference's first character is never this one: an operator types the reference into
#: command lines (``bdx subjects reference REF``), where a leading ``-`` reads as an option.
OPTION_LIKE = "-"
#: Every reference this node ever issued (each version): REF_CHARS base64url characters.
_REFERENCE = re.compile(rf"[A-Za-z0-9_-]{{{REF_CHARS}}}")

#: Longest note an operator may keep with a hit's outcome (``exchange_hits.note``): a file
#: number or a line on why (a blurred latent, the request withdrawn by letter of ...), copied
#: into the audit trail with each outcome; long enough for that, too short for a report.
NOTE_CHARS = 200
#: Longest ``outcome_by``: an audit actor (``user:<name>``), as ``audit_events.actor``.
ACTOR_CHARS = 128


class HitOutcome(enum.StrEnum):
    """The examiner's outcome of a hit's follow-up, as an operator records it: ``confirmed``
    (the forensic examiner confirmed the match), ``not_confirmed`` (a false hit),
    ``withdrawn`` (the requesting country withdrew its follow-up). None recorded: pending."""

    CONFIRMED = "confirmed"
    NOT_CONFIRMED = "not_confirmed"
    WITHDRAWN = "withdrawn"


#: The models' convention for CHECK constraints (``node.db.base``): the outcome's is
#: ``ck_exchange_hits_outcome`` (migration 0009); indexes keep SQLAlchemy's default names.
metadata = MetaData(
    naming_convention={"ix": "ix_%(column_0_label)s", "ck": "ck_%(table_name)s_%(constraint_name)s"}
)

exchange_hits = Table(
    "exchange_hits",
    metadata,
    Column("reference", String(REF_CHARS), primary_key=True),
    Column("query_id", String(36), nullable=False, index=True),
    Column("requester", String(2), nullable=False),
    # Listings by subject filter on it (migration 0009).
    Column("record_ref", String(128), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    # The follow-up's outcome, all four NULL until an operator records one (0009).
    Column(
        "outcome",
        Enum(
            HitOutcome,
            name="outcome",
            native_enum=False,
            create_constraint=True,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        ),
        nullable=True,
    ),
    Column("outcome_at", DateTime(timezone=True), nullable=True),
    Column("outcome_by", String(ACTOR_CHARS), nullable=True),
    Column("note", String(NOTE_CHARS), nullable=True),
)

#: Built once (every hit runs it).
_INSERT_HIT = insert(exchange_hits)

#: Rows deleted per transaction: the first expiry after an upgrade (years of hits) must not
#: hold SQLite's write lock for long.
EXPIRE_BATCH = 10_000
#: One batch: the oldest rows by the ``created_at`` index, deleted by primary key.
_EXPIRE_ONE_BATCH = delete(exchange_hits).where(
    exchange_hits.c.reference.in_(
        select(exchange_hits.c.reference)
        .where(exchange_hits.c.created_at < bindparam("cutoff"))
        .limit(EXPIRE_BATCH)
    )
)


def make_reference(
    secret: bytes, salt: bytes, query_id: uuid.UUID, requester: str, record_ref: str
) -> str:
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the reference secret must be at least {MIN_SECRET_BYTES} bytes")
    who = requester.encode("ascii")
    if len(who) != 2 or len(salt) != SALT_BYTES:
        raise ValueError(f"a requester is a 2-letter country code and a salt {SALT_BYTES} bytes")
    message = DOMAIN + salt + query_id.bytes + who + record_ref.encode()
    return b64url(hmac.new(secret, message, hashlib.sha256).digest())[:REF_CHARS]


def well_formed(reference: str) -> bool:
    """Whether ``reference`` has the shape of a reference this node issues (anything else was
    never issued here: no database look-up needed)."""
    return _REFERENCE.fullmatch(reference) is not None


class HitReferences:
    """Issues references for hits and resolves them for formal follow-up (operators resolve
    them through :mod:`node.services.hits`, which records each resolution)."""

    def __init__(self, engine: Engine, secret: bytes, retention: timedelta | None = None) -> None:
        if retention is not None and retention <= timedelta(0):
            raise ValueError("the follow-up period of hit references must be positive")
        self.engine = engine
        self.secret = secret
        self.retention = retention  # None: kept for ever

    def expire(self, now: datetime | None = None) -> tuple[int, datetime | None]:
        """Delete the references issued more than :attr:`retention` before ``now``,
        :data:`EXPIRE_BATCH` rows per transaction: (how many, the cut-off; ``(0, None)``
        when references are kept for ever)."""
        if self.retention is None:
            return 0, None
        cutoff = (now or datetime.now(UTC)) - self.retention
        total = 0
        while True:
            with self.engine.begin() as conn:
                deleted = int(conn.execute(_EXPIRE_ONE_BATCH, {"cutoff": cutoff}).rowcount or 0)
            total += deleted
            if deleted < EXPIRE_BATCH:
                return total, cutoff

    def issue(self, query_id: uuid.UUID, requester: str, record_ref: str) -> str:
        """A new reference to ``record_ref`` for one hit (stored for follow-up)."""
        for _ in range(ISSUE_ATTEMPTS - 1):
            try:
                return self._store(query_id, requester, record_ref)
            except IntegrityError:  # the reference is taken: draw again
                continue
        return self._store(query_id, requester, record_ref)

    def _store(self, query_id: uuid.UUID, requester: str, record_ref: str) -> str:
        ref = OPTION_LIKE
        while ref.startswith(OPTION_LIKE):  # 1 draw in 64: drawn again (a few µs)
            salt = secrets.token_bytes(SALT_BYTES)
            ref = make_reference(self.secret, salt, query_id, requester, record_ref)
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
