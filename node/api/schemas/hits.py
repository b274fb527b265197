"""Hit references on the wire (operators): one resolved for follow-up, and pages of them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from node.api.schemas.subjects import RecordOut
from node.services.hits import HitSubjectState


class HitSummary(BaseModel):
    """A hit this node answered, and where its subject stands now."""

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


class HitOut(HitSummary):
    records: list[RecordOut] = Field(
        description="the subject's records now (none once deleted); which of them matched is "
        "not kept"
    )


class HitPage(BaseModel):
    """A page of stored hits, oldest first; ``next_offset`` is the offset of the next page
    (``None`` on the last). Hits past their follow-up period (``hit_reference_days``) are no
    longer stored, so an expiry between two pages shifts the later ones forward."""

    items: list[HitSummary]
    next_offset: int | None
