"""A peer's signed terms for this node, on the wire (``GET /peers/{country}/terms``)."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from policy.rules import Modality, Purpose


class ModalityQuotaOut(BaseModel):
    """One modality's daily quota at the peer, for this node, on the peer rule's day."""

    modality: Modality
    limit: int = Field(description="the peer's daily quota for this node")
    used: int = Field(description="searches the peer granted this node that day")
    remaining: int = Field(description="searches this node may still ask that day")


class TermsOut(BaseModel):
    """What the peer's rules in force let this node ask it."""

    purposes: list[Purpose]
    modalities: list[Modality]
    quotas: list[ModalityQuotaOut] = Field(description="one per modality allowed")
    timezone: str = Field(description="the peer rule's time zone: its days and hours")
    day: date = Field(description="the peer rule's current day, in its time zone")
    resets_at: datetime = Field(description="when that day ends and the quotas start again (UTC)")
    hours: list[str] = Field(
        description="hours of service, 'HH:MM-HH:MM' in the rule's time zone (none: all day)"
    )
    within_hours: bool = Field(description="whether the peer was within them when it answered")


class PeerTermsOut(BaseModel):
    peer: str = Field(description="the peer that signed the terms (ISO 3166-1 alpha-2)")
    requester: str = Field(description="this node's country, to which they are addressed")
    format: str = Field(description="the signed payload's format (bdx-terms-v1)")
    issued_at: datetime = Field(description="when the peer issued them (UTC)")
    policy_version: str | None = Field(
        description="the version of the peer's rules in force; none without terms (a peer "
        "tells a country it holds no rules for nothing of them)"
    )
    terms: TermsOut | None = Field(
        description="none when the peer's rules hold no terms for this node (see refusal)"
    )
    refusal: str | None = Field(
        description="why there are none: unknown_peer (the peer has no rules for this node)"
    )
    terms_jws: str = Field(
        description="the peer's signed answer (compact JWS, typ bdx-terms+jws), verified"
    )
