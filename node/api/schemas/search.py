"""1:N search on the wire (officers)."""

from __future__ import annotations

from pydantic import Base64Bytes, BaseModel, ConfigDict, Field, model_validator

from node.db.models import MAX_FINGER_POSITION
from node.services.search import MAX_FINGERS

#: Most candidates one search returns.
MAX_K = 100


class FingerIn(BaseModel):
    """One finger: an image to extract or an ISO/IEC 19794-2:2005 record (exactly one)."""

    model_config = ConfigDict(extra="forbid")

    position: int = Field(0, ge=0, le=MAX_FINGER_POSITION, description="ISO code; 0 unknown")
    image: Base64Bytes | None = Field(None, description="the image file, base64")
    template: Base64Bytes | None = Field(
        None,
        description="an ISO/IEC 19794-2:2005 finger minutiae record, base64; one of several "
        "finger views is chosen by `position`",
    )

    @model_validator(mode="after")
    def _one_source(self) -> FingerIn:
        if (self.image is None) == (self.template is None):
            raise ValueError("give the finger's image or its template (exactly one)")
        return self


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
    threshold: float = Field(description="score the best finger of a hit reaches")
    threshold_fmr: float = Field(
        description="false-match rate at the threshold, per finger: the stricter of the FMR "
        "target and the FMR that keeps target_fpir over the gallery, divided over the probe's "
        "fingers; or the table's strictest row (3e-6) when that is stricter still"
    )
    gallery_size: int
    target_fpir: float = Field(
        description="false-positive identification rate target: the share of searches for "
        "a person not in the gallery that may hit"
    )
    fpir: float = Field(
        description="FPIR estimated at the threshold for this gallery: 1 - (1 - threshold_fmr)"
        "^(fingers x gallery_size); above the target only where the target lies beyond the "
        "measured table"
    )
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
    target_fpir: float = Field(
        description="false-positive identification rate target: the share of searches for "
        "a person not in the gallery that may hit"
    )
    fpir: float = Field(
        description="FPIR estimated at the threshold for this gallery: 1 - (1 - threshold_fmr)"
        "^gallery_size; above the target only where the target lies beyond the "
        "measured table"
    )
    candidates: list[CandidateOut] = Field(
        description="subjects at or above the threshold first, each group ranked hubness-aware "
        "(CSLS: cosine less half the record's mean cosine to its 10 nearest gallery records); "
        "each with its cosine score"
    )
    notes: list[str] = Field(
        default_factory=list,
        description="what the extractor chose for an image probe, e.g. faces it ignored",
    )


class FaceIn(BaseModel):
    """One face: an image to extract or a face template (exactly one)."""

    model_config = ConfigDict(extra="forbid")

    image: Base64Bytes | None = Field(None, description="the face image file, base64")
    template: Base64Bytes | None = Field(None, description="FaceTemplate bytes, base64")

    @model_validator(mode="after")
    def _one_source(self) -> FaceIn:
        if (self.image is None) == (self.template is None):
            raise ValueError("give the face's image or its template (exactly one)")
        return self


class CombinedSearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fingers: list[FingerIn] = Field(default_factory=list, max_length=MAX_FINGERS)
    face: FaceIn | None = None
    k: int = Field(10, ge=1, le=MAX_K, description="most candidates to return, per modality")

    @model_validator(mode="after")
    def _some_probe(self) -> CombinedSearchIn:
        if not self.fingers and self.face is None:
            raise ValueError("give fingers, a face or both")
        return self


class FusedCandidateOut(BaseModel):
    subject: str
    score: float = Field(description="Fisher's statistic: sum of -log10 FMR over the modalities")
    fmr: float = Field(description="estimated false-match rate of the fused score")
    fingerprint_fmr: float | None = Field(description="null: not a fingerprint candidate")
    face_fmr: float | None = Field(description="null: not a face candidate")


class FusedOut(BaseModel):
    hit: bool
    target_fmr: float
    decision_fmr: float = Field(
        description="the FMR decided at: the target (made stricter where needed to keep "
        "target_fpir at the larger searched gallery's size), or the strictest fused FMR the "
        "measured tables reach for this probe's modalities when that is stricter still"
    )
    target_fpir: float
    fpir: float = Field(
        description="FPIR estimated at decision_fmr over the larger searched gallery's size"
    )
    candidates: list[FusedCandidateOut]


class CombinedSearchOut(BaseModel):
    fingerprint: SearchOut | None = Field(description="null when the probe has no fingers")
    face: FaceSearchOut | None = Field(description="null when the probe has no face")
    fused: FusedOut = Field(description="subject-level decision (Fisher's method on FMRs)")
