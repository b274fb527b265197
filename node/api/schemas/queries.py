"""Officers' peer queries on the wire: ``POST /queries`` in, one result per peer out."""

from __future__ import annotations

from typing import Literal

from pydantic import Base64Bytes, BaseModel, ConfigDict, Field, model_validator

from node.exchange.messages import CaseRef, WirePurpose
from node.settings import CountryCode

#: Most peers one officer query may address (a region's member states).
MAX_PEERS = 32
#: Most templates or images in one query (a ten-print).
MAX_ITEMS = 10


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


class QueryOut(BaseModel):
    complete: bool = Field(description="every peer answered (false: partial results)")
    hit: bool = Field(description="at least one peer answered hit")
    case_ref: str | None
    results: list[PeerResultOut]
