"""The daily quotas of the rules in force and their use today, on the wire (operators,
auditors)."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from policy.rules import Modality


class QuotaUsageOut(BaseModel):
    """One peer's daily quota of one modality on the rule's current day."""

    peer: str = Field(description="the peer country (ISO 3166-1 alpha-2)")
    modality: Modality
    timezone: str = Field(description="the rule's time zone, in which its days are counted")
    day: date = Field(description="the rule's current day, in its time zone")
    used: int = Field(description="searches granted to the peer on that day")
    limit: int = Field(description="the rule's daily quota")
    remaining: int = Field(
        description="searches the peer may still make that day (0 when a lowered limit is "
        "below what was used)"
    )


class QuotaOut(BaseModel):
    policy_version: str = Field(description="the version of the rules in force")
    at: datetime = Field(description="when the quotas were read (UTC)")
    items: list[QuotaUsageOut] = Field(
        description="every peer and modality the rules allow, by peer then modality"
    )
