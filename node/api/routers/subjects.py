"""``/subjects`` and ``/records``: gallery housekeeping (operators)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from node.api.deps import GalleryDep, GallerySetDep, OperatorUser, SessionDep, actor
from node.api.schemas.common import AfterId, errors
from node.api.schemas.subjects import (
    EncounterOut,
    MergeIn,
    RecordOut,
    RenameIn,
    RestrictedRecords,
    SubjectDeleted,
    SubjectDeletionsIn,
    SubjectMerged,
    SubjectOut,
    SubjectPage,
    SubjectRenamed,
    SubjectsDeleted,
    SubjectSummary,
)
from node.restrictions import SharingRestrictions
from node.services.merging import merge_subjects
from node.services.records import RecordService
from node.services.subjects import SubjectService, delete_subjects

router = APIRouter(tags=["subjects"], responses=errors(404, 409, 415))

#: Largest page of subjects one request returns.
MAX_PAGE = 1000


@router.get("/subjects")
def list_subjects(
    operator: OperatorUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    after: AfterId = 0,
) -> SubjectPage:
    rows = SubjectService(session).page(limit=limit, after_id=after, actor=actor(operator))
    items = [
        SubjectSummary(
            external_id=row.subject.external_id,
            created_at=row.subject.created_at,
            records=row.records,
            state=row.state,
        )
        for row in rows
    ]
    return SubjectPage(items=items, next_after=rows[-1].subject.id if len(rows) == limit else None)


@router.get("/subjects/{external_id}")
def get_subject(external_id: str, operator: OperatorUser, session: SessionDep) -> SubjectOut:
    detail = SubjectService(session).detail(external_id, actor=actor(operator))
    return SubjectOut(
        external_id=detail.subject.external_id,
        created_at=detail.subject.created_at,
        state=detail.state,
        encounters=[EncounterOut.model_validate(e) for e in detail.encounters],
        records=[RecordOut.model_validate(r) for r in detail.records],
    )


@router.delete("/subjects/{external_id}")
def delete_subject(
    external_id: str, operator: OperatorUser, session: SessionDep, gallery: GalleryDep
) -> SubjectDeleted:
    removed = RecordService(session, gallery).delete_subject(external_id, actor=actor(operator))
    SubjectService(session).retire_deleted(external_id)  # no rename takes its id
    return SubjectDeleted(external_id=external_id, templates_removed=removed)


@router.post("/subjects/deletions")
def delete_many_subjects(
    body: SubjectDeletionsIn, operator: OperatorUser, session: SessionDep, gallery: GalleryDep
) -> SubjectsDeleted:
    # Each subject as DELETE /subjects/{external_id} deletes it (one subject.delete audit
    # event each); unknown ones come back in not_found and the others are deleted. A failure
    # (503) stops the list there: those before stay deleted, and the same list sent again
    # finishes it (node.services.subjects.delete_subjects).
    done = delete_subjects(session, gallery, body.external_ids, actor=actor(operator))
    return SubjectsDeleted(
        deleted=[SubjectDeleted(external_id=e, templates_removed=n) for e, n in done.deleted],
        not_found=done.not_found,
    )


@router.post("/subjects/{external_id}/merge")
def merge_subject(
    external_id: str,
    body: MergeIn,
    operator: OperatorUser,
    session: SessionDep,
    galleries: GallerySetDep,
) -> SubjectMerged:
    # The duplicate's records, encounters and hit references become this subject's and the
    # duplicate is removed as a deletion removes a subject (subject.merge audited); 422
    # same_subject for a subject merged into itself, 409 subject_busy while either is
    # enrolled into or deleted (node.services.merging.merge_subjects).
    done = merge_subjects(session, galleries, external_id, body.duplicate, actor=actor(operator))
    return SubjectMerged(
        keep=done.keep,
        duplicate=done.duplicate,
        records=done.records,
        encounters=done.encounters,
        hit_references=done.hit_references,
    )


@router.put("/subjects/{external_id}/external-id")
def rename_subject(
    external_id: str, body: RenameIn, operator: OperatorUser, session: SessionDep
) -> SubjectRenamed:
    # 409 external_id_used: the new id names a subject or did once (never given again).
    subject = SubjectService(session).rename(external_id, body.external_id, actor=actor(operator))
    return SubjectRenamed(external_id=subject.external_id, previous=external_id)


@router.put("/subjects/{external_id}/restrictions")
def restrict_subject(
    external_id: str,
    restrictions: SharingRestrictions,
    operator: OperatorUser,
    session: SessionDep,
) -> RestrictedRecords:
    rows = SubjectService(session).restrict_subject(
        external_id, restrictions, actor=actor(operator)
    )
    return RestrictedRecords(records=[RecordOut.model_validate(r) for r in rows])


@router.get("/records/{reference}")
def get_record(reference: str, operator: OperatorUser, session: SessionDep) -> RecordOut:
    row = SubjectService(session).show_record(reference, actor=actor(operator))
    return RecordOut.model_validate(row)


@router.put("/records/{reference}/restrictions")
def restrict_record(
    reference: str,
    restrictions: SharingRestrictions,
    operator: OperatorUser,
    session: SessionDep,
    subject: Annotated[
        str | None,
        Query(
            description="the subject the record must belong to: a record of another subject "
            "is not found (404 unknown_record) and nothing changes"
        ),
    ] = None,
) -> RecordOut:
    row = SubjectService(session).restrict_record(
        reference, restrictions, actor=actor(operator), subject=subject
    )
    return RecordOut.model_validate(row)
