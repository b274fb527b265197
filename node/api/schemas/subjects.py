"""Subjects, encounters, template records and gallery statistics on the wire (operators)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from node.api.schemas.common import WireModel
from node.db.models import Modality, RecordState
from node.restrictions import SharingRestrictions
from node.services.subjects import SubjectState

_SUBJECT_STATE = (
    "active: enrolled; deleting: a deletion has begun and not finished (the gallery could not "
    "be written): its records are out of every search, and DELETE /subjects/{external_id} "
    "again finishes it, as the node itself does every gallery_erase_interval_s"
)


class SubjectSummary(BaseModel):
    external_id: str
    created_at: datetime
    records: int
    state: SubjectState = Field(description=_SUBJECT_STATE)


class SubjectPage(BaseModel):
    items: list[SubjectSummary]
    next_after: int | None = None


class EncounterOut(WireModel):
    external_id: str | None
    source: str | None
    captured_at: datetime | None
    loaded_at: datetime


class RecordOut(WireModel):
    reference: str
    modality: Modality
    finger_position: int | None
    format: str
    format_version: int
    quality: int | None
    restrictions: SharingRestrictions | None = Field(
        description="null when the stored restrictions no longer validate (written under an "
        "earlier rule): the record is never shared until they are set again"
    )
    source: str | None
    state: RecordState
    created_at: datetime
    updated_at: datetime

    @field_validator("restrictions", mode="wrap")
    @classmethod
    def _readable(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            return None


class SubjectOut(BaseModel):
    external_id: str
    created_at: datetime
    state: SubjectState = Field(description=_SUBJECT_STATE)
    encounters: list[EncounterOut]
    records: list[RecordOut]


class SubjectDeleted(BaseModel):
    external_id: str
    templates_removed: int


class RestrictedRecords(BaseModel):
    records: list[RecordOut]


class StoreStatsOut(BaseModel):
    """One gallery of the store (one modality, template format and version)."""

    generation: int
    records: int
    deleted: int
    segments: int
    bytes: int


class GalleryStatisticsOut(BaseModel):
    subjects: int
    records_by_state: dict[str, int]
    active_by_modality: dict[str, int]
    active_by_finger_position: dict[int, int]
    stores: dict[str, StoreStatsOut]


class EnrolResult(BaseModel):
    records: list[RecordOut]
    notes: list[str] = Field(
        default_factory=list,
        description="what the extractor chose, e.g. faces it ignored as bystanders",
    )
