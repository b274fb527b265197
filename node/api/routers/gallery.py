"""``/gallery``: enrol images and gallery statistics (operators).

``POST /gallery/enrol`` takes the image itself as the request body (any format the decoder
reads; ``max_upload_bytes``), its metadata as query parameters. Extraction and the writes run
in a worker thread, never on the event loop.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Query, Request, status

from node.api.deps import GallerySetDep, OperatorUser, SessionDep, actor
from node.api.schemas.common import errors
from node.api.schemas.subjects import EnrolResult, GalleryStatisticsOut, RecordOut, StoreStatsOut
from node.db.models import (
    EXTERNAL_ID_CHARS,
    EXTERNAL_ID_PATTERN,
    LABEL_PATTERN,
    MAX_FINGER_POSITION,
    Modality,
)
from node.service_errors import InvalidRequestError
from node.services.enrolment import Capture, EnrolmentService
from node.services.subjects import SubjectService

router = APIRouter(tags=["gallery"], responses=errors(409))

_IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.post("/gallery/enrol", status_code=status.HTTP_201_CREATED, openapi_extra=_IMAGE_BODY)
async def enrol_image(
    request: Request,
    operator: OperatorUser,
    session: SessionDep,
    galleries: GallerySetDep,
    subject: Annotated[
        str, Query(min_length=1, max_length=EXTERNAL_ID_CHARS, pattern=EXTERNAL_ID_PATTERN)
    ],
    modality: Modality,
    finger_position: Annotated[int | None, Query(ge=0, le=MAX_FINGER_POSITION)] = None,
    source: Annotated[str | None, Query(max_length=255, pattern=LABEL_PATTERN)] = None,
    encounter: Annotated[
        str | None, Query(max_length=EXTERNAL_ID_CHARS, pattern=EXTERNAL_ID_PATTERN)
    ] = None,
) -> EnrolResult:
    image = await request.body()
    if not image:
        raise InvalidRequestError("the request body must be the image", reason="empty_body")
    capture = Capture(subject, modality, image, finger_position, source, encounter)
    service = EnrolmentService(session, galleries)
    report = await anyio.to_thread.run_sync(
        partial(service.enrol, [capture], actor=actor(operator))
    )
    if report.failed:
        raise report.failed[0][1]
    return EnrolResult(
        records=[RecordOut.model_validate(r) for r in report.enrolled], notes=report.notes
    )


@router.get("/gallery/statistics")
def gallery_statistics(
    operator: OperatorUser, session: SessionDep, galleries: GallerySetDep
) -> GalleryStatisticsOut:
    stats = SubjectService(session).statistics()
    stores = {
        name: StoreStatsOut(
            generation=s.generation,
            records=s.records,
            deleted=s.deleted,
            segments=s.segments,
            bytes=s.bytes,
        )
        for name, s in galleries.stats().items()
    }
    return GalleryStatisticsOut(
        subjects=stats.subjects,
        records_by_state=stats.records_by_state,
        active_by_modality=stats.active_by_modality,
        active_by_finger_position=stats.active_by_finger_position,
        stores=stores,
    )
