"""Hit references on the wire (operators): one resolved for follow-up, pages of them, and the
examiner's outcome recorded on one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from node.api.schemas.subjects import RecordOut
from node.db.models import LABEL_PATTERN
from node.exchange.references import NOTE_CHARS
from node.services.hits import HitOutcome, HitSubjectState, OutcomeState

#: The examiner's outcome of a hit's follow-up, as an operator recorded it.
Outcome = Annotated[
    OutcomeState,
    Field(
        description="pending: none recorded; confirmed: the examiner confirmed the match; "
        "not_confirmed: a false hit; withdrawn: the requesting country withdrew its follow-up"
    ),
]
OutcomeAt = Annotated[
    datetime | None, Field(description="when the outcome was recorded; null while pending")
]
OutcomeBy = Annotated[
    str | None,
    Field(description="who recorded it (user:<name>, as in the audit trail); null while pending"),
]
Note = Annotated[str | None, Field(description="the operator's note with the outcome, if any")]


class HitSummary(BaseModel):
    """A hit this node answered, where its subject stands now, and its follow-up's outcome."""

    reference: str
    query_id: str = Field(description="the id of the peer's query this hit answered")
    requester: str = Field(description="the requesting country (ISO 3166-1 alpha-2)")
    issued_at: datetime = Field(description="when this node answered the hit")
    subject: str | None = Field(
        description="the subject's external id; null once the subject is deleted"
    )
    state: HitSubjectState = Field(
        description="active: enrolled; deleting: a deletion has begun and not finished (its "
        "records are out of every search); deleted: erased since the hit, nothing is left to "
        "disclose"
    )
    outcome: Outcome
    outcome_at: OutcomeAt
    outcome_by: OutcomeBy
    note: Note


class HitOut(HitSummary):
    records: list[RecordOut] = Field(
        description="the subject's records now (none once deleted); which of them matched is "
        "not kept"
    )


class HitPage(BaseModel):
    """A page of stored hits, oldest first (issue time, then reference). ``next_after`` is
    the ``after`` of the next page: it continues after this page's last hit, whatever outcomes
    were recorded or hits expired meanwhile (``None`` on the last page). ``next_offset`` is
    the ``offset`` of the next page for older clients: an outcome recorded between two pages
    of a filtered listing (``?outcome=pending``) moves a hit out of it, and the next offset
    then skips as many hits."""

    items: list[HitSummary]
    next_after: str | None = Field(
        description="pass as after to get the next page; null on the last page (opaque)"
    )
    next_offset: int | None = Field(description="deprecated: use next_after")


class OutcomeIn(BaseModel):
    """The examiner's outcome to record on a hit (it replaces one recorded before)."""

    model_config = ConfigDict(extra="forbid")

    outcome: HitOutcome = Field(
        description="confirmed: the examiner confirmed the match; not_confirmed: a false hit; "
        "withdrawn: the requesting country withdrew its follow-up"
    )
    note: str | None = Field(
        None,
        min_length=1,
        max_length=NOTE_CHARS,
        pattern=LABEL_PATTERN,
        description="a short plain-text note (a file number, why): no control or invisible "
        "characters, not blank; copied into the audit trail: never personal data. It "
        "replaces the earlier note: left out, an earlier one is cleared",
        examples=["case file 2026/117"],
    )

    expected: OutcomeState | None = Field(
        None,
        description="record only if the outcome stored is still this one (pending: none "
        "recorded): another stored meanwhile is a 409 outcome_changed and nothing is recorded; "
        "left out, the last recording wins",
        examples=["pending"],
    )

    @field_validator("note")
    @classmethod
    def _not_blank(cls, note: str | None) -> str | None:
        if note is not None and not note.strip():
            raise ValueError("a note must say something: leave it out instead of blank")
        return note


class OutcomeOut(BaseModel):
    """The outcome recorded on a hit, and the one it replaced (the subject is not named:
    ``GET /hits/{reference}`` resolves it)."""

    reference: str
    query_id: str = Field(description="the id of the peer's query this hit answered")
    requester: str = Field(description="the requesting country (ISO 3166-1 alpha-2)")
    issued_at: datetime = Field(description="when this node answered the hit")
    outcome: Outcome
    outcome_at: OutcomeAt
    outcome_by: OutcomeBy
    note: Note
    previous: OutcomeState = Field(description="the outcome it replaced (pending: none)")
