"""1:N search on the wire (officers)."""

from __future__ import annotations

from pydantic import Base64Bytes, BaseModel, ConfigDict, Field

from node.db.models import MAX_FINGER_POSITION
from node.services.search import MAX_FINGERS

#: Most candidates one search returns.
MAX_K = 100


class FingerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    position: int = Field(0, ge=0, le=MAX_FINGER_POSITION, description="ISO code; 0 unknown")
    image: Base64Bytes = Field(description="the image file, base64")


class FingerprintSearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fingers: list[FingerIn] = Field(min_length=1, max_length=MAX_FINGERS)
    k: int = Field(10, ge=1, le=MAX_K, description="most candidates to return")


class CandidateOut(BaseModel):
    subject: str
    score: float
    fmr: float | None = Field(description="estimated false-match rate of this score")


class SearchOut(BaseModel):
    hit: bool
    target_fmr: float
    gallery_size: int
    candidates: list[CandidateOut]


class FaceSearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: Base64Bytes | None = Field(None, description="the face image file, base64")
    template: Base64Bytes | None = Field(
        None, description="a face template (FaceTemplate bytes), base64; instead of an image"
    )
    k: int = Field(10, ge=1, le=MAX_K, description="most candidates to return")


class FaceSearchOut(BaseModel):
    hit: bool
    target_fmr: float
    threshold: float = Field(description="cosine similarity a hit reaches")
    threshold_fmr: float = Field(description="false-match rate measured at the threshold (LFW)")
    gallery_size: int
    candidates: list[CandidateOut]
