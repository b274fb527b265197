"""``GET /hits/{reference}``: follow up a hit this node answered (operators); ``GET /hits`` and
``GET /subjects/{external_id}/hits``: list the hits stored for a requesting country or for one
subject; ``PUT /hits/{reference}/outcome``: record the examiner's outcome of a hit's follow-up.

A peer's officer got a hit and an opaque reference; the requesting country quotes it through
formal channels, and this node's operator resolves it to the subject
(:mod:`node.services.hits`). Each resolution is recorded in the audit trail (``hit.resolve``),
and so is each listing (``hit.list``), which auditors review. Operators only: auditors review
disclosures and do not make them (no role implies another, :class:`node.db.models.Role`), and
officers query peers, they do not read this node's gallery. The routes are on the API port
only: the peer listener serves the peer routes and nothing else (:mod:`node.exchange.serving`).

The outcome (confirmed, not confirmed: a false hit, withdrawn) is recorded by operators too,
each recording audited as ``hit.outcome`` with the outcome it replaced; the listings show it
and ``GET /hits?outcome=`` filters on it (``pending``: none recorded).

The listings page by cursor: each page's ``next_after`` is passed as the next request's
``after`` (keyset paging on the issue time and the reference), so that recording outcomes while
working the ``?outcome=pending`` queue page by page skips no hit. ``offset`` still works (it
counts past the cursor) for older clients; it skips hits when the filtered set shrinks between
pages.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from node.api.deps import OperatorUser, SessionDep, actor
from node.api.schemas.common import MAX_ROW_ID, ErrorBody, UtcDatetime, errors
from node.api.schemas.hits import HitOut, HitPage, HitSummary, OutcomeIn, OutcomeOut
from node.api.schemas.subjects import RecordOut
from node.repositories.hits import CURSOR_CHARS, BadCursorError, HitCursor, IssuedHit
from node.service_errors import InvalidRequestError
from node.services.hits import HitService, ListedHit, OutcomeState
from node.settings import CountryCode

router = APIRouter(tags=["hits"], responses=errors(404))

#: Largest page of hits one request returns (as for subjects).
MAX_PAGE = 1000

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
After = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=CURSOR_CHARS,
        description="next_after of the previous page: continue after its last hit",
    ),
]
Offset = Annotated[
    int,
    Query(
        ge=0,
        le=MAX_ROW_ID,
        description="hits to skip (after the cursor, when after is given); deprecated: use "
        "after, as an offset skips hits when recorded outcomes move them out of the filter",
    ),
]
OutcomeFilter = Annotated[
    OutcomeState | None,
    Query(description="only the hits whose follow-up stands so (pending: no outcome recorded)"),
]

#: What the outcome route's own refusals mean (the shared texts speak of user names).
OUTCOME_RESPONSES: dict[int | str, dict[str, object]] = {
    **errors(409, 415),
    409: {
        "model": ErrorBody,
        "description": "subject_deleted, subject_deleting: the hit's subject is deleted, or its "
        "deletion has begun; the follow-up is over and nothing is recorded. outcome_changed: "
        "the outcome stored is not the expected one (the detail names it); nothing is recorded",
    },
}


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
        **_outcome(found.hit),
    )


@router.put("/hits/{reference}/outcome", responses=OUTCOME_RESPONSES)
def record_outcome(
    reference: str, body: OutcomeIn, operator: OperatorUser, session: SessionDep
) -> OutcomeOut:
    done = HitService(session).record_outcome(
        reference, body.outcome, note=body.note, actor=actor(operator), expected=body.expected
    )
    previous = OutcomeState.PENDING if done.previous is None else OutcomeState(done.previous)
    return OutcomeOut(
        reference=done.hit.reference,
        query_id=done.hit.query_id,
        requester=done.hit.requester,
        issued_at=done.hit.created_at,
        previous=previous,
        **_outcome(done.hit),
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
    outcome: OutcomeFilter = None,
    limit: Limit = 100,
    after: After = None,
    offset: Offset = 0,
) -> HitPage:
    listed = HitService(session).issued(
        requester=requester,
        since=since,
        outcome=outcome,
        limit=limit,
        after=_cursor(after),
        offset=offset,
        actor=actor(operator),
    )
    return _page(listed, limit, offset)


@router.get("/subjects/{external_id}/hits")
def list_subject_hits(
    external_id: str,
    operator: OperatorUser,
    session: SessionDep,
    outcome: OutcomeFilter = None,
    limit: Limit = 100,
    after: After = None,
    offset: Offset = 0,
) -> HitPage:
    listed = HitService(session).of_subject(
        external_id,
        outcome=outcome,
        limit=limit,
        after=_cursor(after),
        offset=offset,
        actor=actor(operator),
    )
    return _page(listed, limit, offset)


def _cursor(after: str | None) -> HitCursor | None:
    """The cursor ``after`` encodes: 422 ``bad_cursor`` for one no listing handed out."""
    if after is None:
        return None
    try:
        return HitCursor.decode(after)
    except BadCursorError:
        raise InvalidRequestError(
            "after: not a next_after this listing handed out", reason="bad_cursor"
        ) from None


def _page(listed: list[ListedHit], limit: int, offset: int) -> HitPage:
    items = [
        HitSummary(
            reference=row.hit.reference,
            query_id=row.hit.query_id,
            requester=row.hit.requester,
            issued_at=row.hit.created_at,
            subject=None if row.subject is None else row.subject.external_id,
            state=row.state,
            **_outcome(row.hit),
        )
        for row in listed
    ]
    full = len(items) == limit
    return HitPage(
        items=items,
        next_after=HitCursor.of(listed[-1].hit).encode() if full else None,
        next_offset=offset + limit if full else None,
    )


def _outcome(hit: IssuedHit) -> dict[str, object]:
    """The outcome fields of a hit's wire shapes."""
    return {
        "outcome": hit.state,
        "outcome_at": hit.outcome_at,
        "outcome_by": hit.outcome_by,
        "note": hit.note,
    }
