"""Subjects, encounters, template records and gallery statistics on the wire (operators)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from node.api.schemas.common import WireModel
from node.db.models import EXTERNAL_ID_CHARS, EXTERNAL_ID_PATTERN, Modality, RecordState
from node.restrictions import SharingRestrictions
from node.services import params
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


#: A subject's external id in a request body, as enrolment takes it.
ExternalIdIn = Annotated[
    str, Field(min_length=1, max_length=EXTERNAL_ID_CHARS, pattern=EXTERNAL_ID_PATTERN)
]


class SubjectDeletionsIn(BaseModel):
    """The subjects to delete, each as ``DELETE /subjects/{external_id}`` deletes it."""

    model_config = ConfigDict(extra="forbid")

    external_ids: list[ExternalIdIn] = Field(
        min_length=1,
        max_length=params.MAX_BULK_DELETIONS,
        description=f"1 to {params.MAX_BULK_DELETIONS} external ids (a repeated one is "
        "deleted once); send a longer list in several requests",
    )


class SubjectsDeleted(BaseModel):
    deleted: list[SubjectDeleted] = Field(description="the subjects deleted, in the order asked")
    not_found: list[str] = Field(
        description="the external ids of no subject (never enrolled, or deleted already: a "
        "list sent again after an interruption reports those it deleted here); the others "
        "were deleted"
    )


class MergeIn(BaseModel):
    """The duplicate enrolment to merge into the subject of the path."""

    model_config = ConfigDict(extra="forbid")

    duplicate: ExternalIdIn


class SubjectMerged(BaseModel):
    keep: str
    duplicate: str = Field(description="its external id names no subject any more")
    records: int = Field(description="the duplicate's records, now the kept subject's")
    encounters: int = Field(description="the duplicate's encounters moved to the kept subject")
    hit_references: int = Field(
        description="hit references issued on the duplicate, now resolving to the kept subject"
    )


class RenameIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_id: ExternalIdIn = Field(
        description="the subject's new external id: one that never named a subject"
    )


class SubjectRenamed(BaseModel):
    external_id: str
    previous: str = Field(description="the old external id: it names no subject any more")


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
