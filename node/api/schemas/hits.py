"""A hit reference resolved for follow-up on the wire (operators)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from node.api.schemas.subjects import RecordOut
from node.services.hits import HitSubjectState


class HitOut(BaseModel):
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
    records: list[RecordOut] = Field(
        description="the subject's records now (none once deleted); which of them matched is "
        "not kept"
    )
