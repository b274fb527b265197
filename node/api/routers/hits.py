"""``GET /hits/{reference}``: follow up a hit this node answered (operators); ``GET /hits`` and
``GET /subjects/{external_id}/hits``: list the hits stored for a requesting country or for one
subject.

A peer's officer got a hit and an opaque reference; the requesting country quotes it through
formal channels, and this node's operator resolves it to the subject
(:mod:`node.services.hits`). Each resolution is recorded in the audit trail (``hit.resolve``),
and so is each listing (``hit.list``), which auditors review. Operators only: auditors review
disclosures and do not make them (no role implies another, :class:`node.db.models.Role`), and
officers query peers, they do not read this node's gallery. The routes are on the API port
only: the peer listener serves the peer routes and nothing else (:mod:`node.exchange.serving`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from node.api.deps import OperatorUser, SessionDep, actor
from node.api.schemas.common import MAX_ROW_ID, UtcDatetime, errors
from node.api.schemas.hits import HitOut, HitPage, HitSummary
from node.api.schemas.subjects import RecordOut
from node.services.hits import HitService, ListedHit
from node.settings import CountryCode

router = APIRouter(tags=["hits"], responses=errors(404))

#: Largest page of hits one request returns (as for subjects).
MAX_PAGE = 1000

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Offset = Annotated[int, Query(ge=0, le=MAX_ROW_ID, description="next_offset of the previous page")]


@router.get("/hits/{reference}")
def resolve_hit(reference: str, operator: OperatorUser, session: SessionDep) -> HitOut:
    found = HitService(session).resolve(reference, actor=actor(operator))
    return HitOut(
        reference=found.hit.reference,
        query_id=found.hit.query_id,
        requester=found.hit.requester,
        issued_at=found.hit.created_at,
        subject=None if found.subject is None else found.subject.external_id,
        state=found.state,
        records=[RecordOut.model_validate(r) for r in found.records],
    )


@router.get("/hits")
def list_hits(
    operator: OperatorUser,
    session: SessionDep,
    requester: Annotated[
        CountryCode | None, Query(description="only the hits issued to this country")
    ] = None,
    since: Annotated[
        UtcDatetime | None, Query(description="only the hits issued at or after this time")
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> HitPage:
    listed = HitService(session).issued(
        requester=requester, since=since, limit=limit, offset=offset, actor=actor(operator)
    )
    return _page(listed, limit, offset)


@router.get("/subjects/{external_id}/hits")
def list_subject_hits(
    external_id: str,
    operator: OperatorUser,
    session: SessionDep,
    limit: Limit = 100,
    offset: Offset = 0,
) -> HitPage:
    listed = HitService(session).of_subject(
        external_id, limit=limit, offset=offset, actor=actor(operator)
    )
    return _page(listed, limit, offset)


def _page(listed: list[ListedHit], limit: int, offset: int) -> HitPage:
    items = [
        HitSummary(
            reference=row.hit.reference,
            query_id=row.hit.query_id,
            requester=row.hit.requester,
            issued_at=row.hit.created_at,
            subject=None if row.subject is None else row.subject.external_id,
            state=row.state,
        )
        for row in listed
    ]
    return HitPage(items=items, next_offset=offset + limit if len(items) == limit else None)
