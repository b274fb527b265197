"""``/gallery``: enrol images and gallery statistics (operators).

``POST /gallery/enrol`` takes the image itself as the request body (any format the decoder
reads; ``max_upload_bytes``), its metadata as query parameters, its sharing restrictions too
(``restrictions``: the JSON object ``PUT /records/{reference}/restrictions`` takes), so that a
record is never active without them. Extraction and the writes run in a worker thread, never
on the event loop.
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
from node.restrictions import SharingRestrictions
from node.service_errors import InvalidRequestError
from node.services.enrolment import Capture, EnrolmentService, restrictions_from_json
from node.services.subjects import SubjectService

router = APIRouter(tags=["gallery"], responses=errors(409))

#: Longest ``restrictions`` value taken: every field of the model with a peer list naming
#: every country code is under 2,000 characters; the limit keeps a query string from being
#: parsed at any length.
MAX_RESTRICTIONS_CHARS = 4096

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
    restrictions: Annotated[
        str | None,
        Query(
            max_length=MAX_RESTRICTIONS_CHARS,
            description="the record's sharing restrictions, a JSON object as PUT "
            "/records/{reference}/restrictions takes (e.g. "
            '{"asylum_nationality": "SY"}); set in the enrolment\'s transaction',
        ),
    ] = None,
) -> EnrolResult:
    shared = SharingRestrictions() if restrictions is None else _restrictions(restrictions)
    image = await request.body()
    if not image:
        raise InvalidRequestError("the request body must be the image", reason="empty_body")
    capture = Capture(subject, modality, image, finger_position, source, encounter, shared)
    service = EnrolmentService(session, galleries)
    report = await anyio.to_thread.run_sync(
        partial(service.enrol, [capture], actor=actor(operator))
    )
    if report.failed:
        raise report.failed[0][1]
    return EnrolResult(
        records=[RecordOut.model_validate(r) for r in report.enrolled], notes=report.notes
    )


def _restrictions(text: str) -> SharingRestrictions:
    try:
        return restrictions_from_json(text)
    except InvalidRequestError as exc:
        raise InvalidRequestError(f"restrictions: {exc.message}", reason=exc.reason) from None


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
