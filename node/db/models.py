"""ORM models of the node database (the schema itself is built by Alembic migrations).

Biometric arrays are not stored here: they live in the gallery store (files), keyed by the
opaque ``TemplateRecord.reference``. A row and a gallery entry exist together or not at all;
``RecordState`` and :mod:`node.services.records` keep them so across crashes.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from node.db.base import Base, utc_now

#: Longest external identifier (a national case or person number) accepted.
EXTERNAL_ID_CHARS = 128
#: Characters no id or label may hold: C0 and C1 controls and DEL (terminal escapes, 8-bit
#: CSI), line and paragraph separators, and the invisible characters that make one text look
#: like another or hide text: every format character (Unicode category Cf, as of Unicode 15:
#: soft hyphen, Arabic and Syriac marks, zero-width marks, bidi embeddings, overrides and
#: isolates, invisible operators, BOM, interlinear annotation marks, tag characters, ...;
#: U+180E is Cf since Unicode 6.3) and the Hangul fillers (letters that show nothing). Ranges
#: rather than ``\p{Cf}``: the pattern is read by Python's ``re`` and by pydantic's regex.
_INVISIBLE = (
    r"\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2"
    r"\u115f\u1160\u180e\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064\u2066-\u206f"
    r"\u3164\ufeff\uffa0\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
    r"\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)


def _id_pattern(excluded: str) -> str:
    return rf"^[^/\s{excluded}](?:[^/{excluded}]*[^/\s{excluded}])?$"


#: External ids are one URL path segment (``/subjects/{external_id}``): no slash, no
#: leading or trailing blank, none of the characters above.
EXTERNAL_ID_PATTERN = _id_pattern(_INVISIBLE)
#: Free labels (an enrolment's source): printable text only.
LABEL_PATTERN = rf"^[^{_INVISIBLE}]*$"
#: Lone surrogates: what Python makes of the bytes of a file name or argument that are not
#: UTF-8 (``surrogateescape``); no database, URL or JSON text holds one. Python's ``re`` only:
#: pydantic's regex cannot name them, and it refuses such a string itself (``string_unicode``).
_SURROGATES = r"\ud800-\udfff"
_EXTERNAL_ID = re.compile(_id_pattern(_INVISIBLE + _SURROGATES))


def is_external_id(value: str) -> bool:
    """Whether the node takes ``value`` as an external id (the API's rules: 1 to
    :data:`EXTERNAL_ID_CHARS` characters of :data:`EXTERNAL_ID_PATTERN`), and it is text: a
    folder name or argument that is not UTF-8 is none, though the pattern alone takes it."""
    return len(value) <= EXTERNAL_ID_CHARS and _EXTERNAL_ID.fullmatch(value) is not None


#: Highest ISO/IEC 19794-2 finger position (0 = unknown, 1–10 = right thumb … left little).
MAX_FINGER_POSITION = 10


class Modality(enum.StrEnum):
    FINGERPRINT = "fingerprint"
    FACE = "face"


class RecordState(enum.StrEnum):
    """Life cycle of a template record across the database and the gallery store.

    ``pending``: the row is written, the gallery append may not have happened (yet).
    ``active``: present in both; searchable. ``deleting``: the gallery entry is being removed;
    the row goes once it is gone. Reconciliation finishes or undoes ``pending`` and ``deleting``.
    """

    PENDING = "pending"
    ACTIVE = "active"
    DELETING = "deleting"


class Role(enum.StrEnum):
    """Separated duties: officers search, operators keep the gallery, auditors read the
    audit trail, admins manage users. No role implies another."""

    OFFICER = "officer"
    OPERATOR = "operator"
    AUDITOR = "auditor"
    ADMIN = "admin"


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda e: [m.value for m in e],
    )


class Subject(Base):
    __tablename__ = "subjects"
    # The id leaves the database as the gallery's subject key ``s<id>``, which hit references
    # issued to peers resolve to (``exchange_hits.record_ref``) for formal follow-up. Without
    # AUTOINCREMENT SQLite gives a new subject the id of the newest one deleted, and a
    # follow-up on a reference issued before an erasure would find another person (migration
    # 0006). PostgreSQL's sequences never re-use ids.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_CHARS), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)

    encounters: Mapped[list[Encounter]] = relationship(
        back_populates="subject", cascade="all, delete-orphan", passive_deletes=True
    )
    records: Mapped[list[TemplateRecord]] = relationship(
        back_populates="subject", cascade="all, delete-orphan", passive_deletes=True
    )


class RetiredExternalId(Base):
    """An external id that named a subject and names none since: renamed away, merged into
    another subject or deleted. A rename never gives a subject one of these (an operator's or
    a peer's follow-up quoting it would find another person); an enrolment may (the same
    person enrolled again after a deletion). Migration 0013."""

    __tablename__ = "retired_external_ids"

    external_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_CHARS), primary_key=True)
    how: Mapped[str] = mapped_column(String(16))  # renamed, merged or deleted
    retired_at: Mapped[datetime] = mapped_column(default=utc_now)


class Encounter(Base):
    """One capture session of a subject (a booking, an asylum registration, a visa file)."""

    __tablename__ = "encounters"
    __table_args__ = (UniqueConstraint("subject_id", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"))
    external_id: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_CHARS))
    source: Mapped[str | None] = mapped_column(String(255))
    captured_at: Mapped[datetime | None]
    loaded_at: Mapped[datetime] = mapped_column(default=utc_now)

    subject: Mapped[Subject] = relationship(back_populates="encounters")


class TemplateRecord(Base):
    """Metadata of one template; the template itself is in the gallery store."""

    __tablename__ = "template_records"
    __table_args__ = (
        CheckConstraint(
            f"finger_position IS NULL OR (finger_position >= 0 "
            f"AND finger_position <= {MAX_FINGER_POSITION})",
            name="finger_position_range",
        ),
        CheckConstraint(
            "modality = 'fingerprint' OR finger_position IS NULL", name="face_has_no_finger"
        ),
        CheckConstraint("quality IS NULL OR (quality >= 0 AND quality <= 100)", name="quality"),
        Index("ix_template_records_state_modality", "state", "modality"),
        # Subject look-ups filter on the state too ("the active records of these subjects", on
        # every peer hit and local search): with only a subject_id index SQLite chose the state
        # index for an IN list and walked every active record (2 ms at 10k records; 0.07 ms).
        Index("ix_template_records_subject_id_state", "subject_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"))
    encounter_id: Mapped[int | None] = mapped_column(
        ForeignKey("encounters.id", ondelete="SET NULL")
    )
    modality: Mapped[Modality] = mapped_column(_enum(Modality, "modality"))
    finger_position: Mapped[int | None] = mapped_column(SmallInteger)
    format: Mapped[str] = mapped_column(String(64))
    format_version: Mapped[int] = mapped_column(Integer)
    quality: Mapped[int | None] = mapped_column(SmallInteger)
    restrictions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[RecordState] = mapped_column(
        _enum(RecordState, "record_state"), default=RecordState.PENDING
    )
    #: A merge's copy, not committed yet: its original's reference (migration 0014). Reconcile
    #: removes such a ``pending`` copy from both stores, never activates it: the merge did not
    #: happen. The merge's commit clears it.
    merge_of: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)

    subject: Mapped[Subject] = relationship(back_populates="records")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)

    tokens: Mapped[list[ApiToken]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )


class ApiToken(Base):
    """A bearer token: only its public id and the SHA-256 of the whole token are stored.

    ``last_used_at`` is when it last authenticated a request, noted in memory and written by
    the node every ``TOKEN_USE_INTERVAL_S`` (:mod:`node.services.params`) and at its stop: it
    may lag by that much; empty for a token never used since it was issued (or since 0010).
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[str] = mapped_column(String(32), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="tokens")


class AuditEvent(Base):
    """An admin or operator action. ``details`` never holds biometric data or secrets."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
