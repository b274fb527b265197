"""Officers' peer queries on the wire: ``POST /queries`` in, one result per peer out; the
queries sent, read back from the exchange log (``GET /queries``, ``GET /queries/{id}``), and a
late reply fetched (``POST /queries/{id}/poll``); the examiner's outcome of a hit asked of its
peer (``POST /queries/{id}/outcome``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Base64Bytes, BaseModel, ConfigDict, Field, model_validator

from node.exchange.messages import CaseRef, WirePurpose
from node.settings import CountryCode

#: Most peers one officer query may address (a region's member states).
MAX_PEERS = 32
#: Most templates or images in one query (a ten-print).
MAX_ITEMS = 10


#: A user name as an officer filter names it (``GET /queries?officer=``, ``bdx queries list
#: --officer``): what a principal's name may hold.
OFFICER_NAME_PATTERN = r"^[\w.@:-]{1,128}$"


class ProbeIn(BaseModel):
    """A template (ISO/IEC 19794-2 record or face template bytes) or an image to extract."""

    model_config = ConfigDict(extra="forbid")

    data: Base64Bytes = Field(description="template or image bytes, base64")
    finger_position: int | None = Field(None, ge=0, le=10, description="ISO code; 0 unknown")


class QueryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    peers: list[CountryCode] = Field(min_length=1, max_length=MAX_PEERS)
    purpose: WirePurpose
    modality: Literal["fingerprint", "face"]
    templates: list[ProbeIn] = Field(default_factory=list, max_length=MAX_ITEMS)
    images: list[ProbeIn] = Field(default_factory=list, max_length=MAX_ITEMS)
    case_ref: CaseRef | None = Field(None, description="the officer's case reference, logged")

    @model_validator(mode="after")
    def _one_kind(self) -> QueryIn:
        if bool(self.templates) == bool(self.images):
            raise ValueError("give templates or images (one of them, not both)")
        if len(set(self.peers)) != len(self.peers):
            raise ValueError("a peer is listed twice")
        return self


PeerStatus = Literal[
    "answered",
    "refused_locally",
    "timeout",
    "unreachable",
    "untrusted_peer",
    "http_error",
    "invalid_reply",
    "failed",
]


class PeerResultOut(BaseModel):
    """One peer's answer. ``outcome`` is set only when ``status`` is ``answered``."""

    peer: str
    status: PeerStatus
    query_id: str | None = None
    outcome: Literal["hit", "no_hit", "refused", "error"] | None = None
    reason: str | None = Field(None, description="refusal reason (peer's or local policy's)")
    reference: str | None = Field(None, description="opaque hit reference at the peer")
    strength: str | None = None
    elapsed_ms: float | None = None
    detail: str | None = None
    reply_jws: str | None = Field(None, description="the peer's signed reply (compact JWS)")
    pollable: bool = Field(
        False,
        description="the peer accepted the query and may still answer it after this node "
        "stopped waiting: fetch its reply later with POST /queries/{query_id}/poll",
    )


class QueryOut(BaseModel):
    complete: bool = Field(description="every peer answered (false: partial results)")
    hit: bool = Field(description="at least one peer answered hit")
    case_ref: str | None
    results: list[PeerResultOut]


#: A sent query's latest result: a :data:`PeerStatus` of the exchange, or of a late poll
#: (``pending``: the peer still searches; ``expired``: it holds the reply no more),
#: ``cancelled`` (this node stopped first), ``sent`` (no result logged yet) or
#: ``refused_locally`` (this node's outbound rules refused it: never sent, no result).
QueryStatus = Literal[
    "sent",
    "refused_locally",
    "answered",
    "timeout",
    "unreachable",
    "untrusted_peer",
    "http_error",
    "invalid_reply",
    "failed",
    "cancelled",
    "pending",
    "expired",
]
Outcome = Literal["hit", "no_hit", "refused", "error"]


class LoggedReplyOut(BaseModel):
    """One result logged for a query: the exchange's, or a late poll's."""

    status: QueryStatus
    received_at: datetime = Field(description="when this node logged it")
    late: bool = Field(description="fetched by a late poll, after this node stopped waiting")
    outcome: Outcome | None = None
    reason: str | None = None
    reference: str | None = None
    strength: str | None = None
    detail: str | None = None


#: The examiner's outcome of a hit at the peer that gave it (pending: none recorded yet).
FollowUpOutcome = Literal["pending", "confirmed", "not_confirmed", "withdrawn"]
#: What asking a peer for a hit's outcome came to: its signed answer (answered,
#: unknown_reference), or why there is none.
FollowUpStatus = Literal[
    "answered",
    "unknown_reference",
    "unknown_peer",
    "unreachable",
    "timeout",
    "untrusted_peer",
    "http_error",
    "invalid_reply",
]


class PeerFollowUpOut(BaseModel):
    """One peer's answer about the hit it gave, as verified here."""

    peer: str
    reference: str = Field(description="the peer's hit reference asked about")
    status: FollowUpStatus = Field(
        description="answered (outcome set); unknown_reference: the peer keeps no such "
        "reference for this node (its follow-up period is over, or never given); else why "
        "there is no answer (unknown_peer: no longer a peer in the settings, nobody asked)"
    )
    outcome: FollowUpOutcome | None = Field(description="the examiner's outcome, when answered")
    outcome_at: datetime | None = Field(description="when the peer recorded it (not pending)")
    issued_at: datetime | None = Field(description="when the peer signed its answer")
    detail: str | None = None
    outcome_jws: str | None = Field(description="the peer's signed answer (compact JWS)")


class QueryFollowUpOut(BaseModel):
    """The outcome of a query's hit, asked of each peer that gave it one."""

    query_id: str
    case_ref: str | None
    results: list[PeerFollowUpOut]


class LoggedFollowUpOut(BaseModel):
    """The latest outcome of a query's hit its peer answered, as logged here."""

    status: Literal["answered", "unknown_reference"]
    reference: str | None
    outcome: FollowUpOutcome | None
    outcome_at: datetime | None = Field(description="when the peer recorded it")
    received_at: datetime = Field(description="when this node logged the answer")


class SentQueryOut(BaseModel):
    """A query this node sent to one peer for an officer, with its latest result."""

    query_id: str
    peer: str
    purpose: str | None
    modality: str | None
    case_ref: str | None
    officer: str | None = Field(description="who sent it, as the exchange log names them")
    sent_at: datetime
    status: QueryStatus = Field(
        description="the standing result's status: answered once the peer's answer is "
        "logged (final, whatever is logged after it), else the latest result's (sent: none "
        "yet)"
    )
    outcome: Outcome | None = Field(description="set when the peer answered")
    reason: str | None = Field(
        description="the peer's refusal reason; for refused_locally, this node's (its outbound "
        "rules', or own_stale_crl...)"
    )
    reference: str | None = Field(description="the peer's opaque hit reference, on a hit")
    strength: str | None = None
    detail: str | None = None
    replied_at: datetime | None = Field(description="when the standing result was logged")
    late: bool = Field(description="the standing result came from a late poll")
    pollable: bool = Field(
        description="the peer accepted it and may still hold its reply: POST "
        "/queries/{query_id}/poll fetches it"
    )


class SentQueryDetail(SentQueryOut):
    replies: list[LoggedReplyOut] = Field(description="every result logged, oldest first")
    reply_jws: str | None = Field(
        description="the peer's signed reply (compact JWS) of its answer, if any"
    )
    follow_up: LoggedFollowUpOut | None = Field(
        default=None,
        description="the latest outcome of its hit the peer answered (POST "
        "/queries/{query_id}/outcome asks again); null when none was asked or answered",
    )


class SentQueryPage(BaseModel):
    """A page of sent queries, oldest first; ``next_offset`` is the offset of the next page
    (``None`` on the last)."""

    items: list[SentQueryOut]
    total: int = Field(description="queries matching the filters")
    next_offset: int | None
