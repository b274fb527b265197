"""``POST /queries``: an officer's hit/no-hit query to peer nodes (see
:mod:`node.exchange.officer`). Answers 200 with one result per peer, partial results marked
(``complete`` false; a peer refused here has its reason and the failed check's sentence,
as the history gives them); 422 ``unknown_peer``, nobody asked, when some country is no
configured peer of this node; 503 ``no_exchange`` when this node runs no peer exchange.

``GET /queries`` and ``GET /queries/{query_id}``: the queries sent, read back from the exchange
log (an officer's own; every officer's for admins and auditors, recorded in the audit trail);
``POST /queries/{query_id}/poll``: fetch the reply a peer kept for a query this node stopped
waiting for (:mod:`node.services.queries`); ``POST /queries/{query_id}/outcome``: ask the peer
that gave the query a hit for the examiner's outcome of it (:mod:`node.services.hit_outcomes`).
Both make this node contact a peer: officers (their own queries) and admins only, not auditors.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request

from node.api.deps import OfficerUser, SessionDep, actor, require_role
from node.api.routers.auditlog import LogDep
from node.api.routers.peers import get_exchange
from node.api.schemas.common import ERROR_STATUSES, MAX_ROW_ID, ErrorBody, UtcDatetime, errors
from node.api.schemas.queries import (
    OFFICER_NAME_PATTERN,
    LoggedFollowUpOut,
    LoggedReplyOut,
    PeerFollowUpOut,
    PeerResultOut,
    QueryFollowUpOut,
    QueryIn,
    QueryOut,
    SentQueryDetail,
    SentQueryOut,
    SentQueryPage,
)
from node.db.models import Role
from node.exchange.officer import probe_items, query_peers
from node.services.hit_outcomes import HitOutcomeService
from node.services.queries import QueryHistory, SentQuery, Viewer
from node.services.users import Principal
from node.settings import CountryCode

router = APIRouter(tags=["queries"], responses=errors(415))
#: The readings' 503: also when the history's index is far behind the exchange log.
_INDEXING: dict[int | str, dict[str, Any]] = {
    503: {
        "model": ErrorBody,
        "description": ERROR_STATUSES[503] + "; history_indexing (Retry-After) while the "
        "node indexes its exchange log for the query history (after an upgrade or a restore): "
        "ask again later",
    }
}

#: Largest page of sent queries one request returns (as for hits).
MAX_PAGE = 1000

QueryReader = Annotated[Principal, Depends(require_role(Role.OFFICER, Role.ADMIN, Role.AUDITOR))]
QueryPoller = Annotated[Principal, Depends(require_role(Role.OFFICER, Role.ADMIN))]
OfficerName = Annotated[
    str | None,
    Query(
        pattern=OFFICER_NAME_PATTERN,
        description="admins and auditors: only this officer's queries (a user name); an "
        "officer may name only themselves",
    ),
]


@router.post(
    "/queries",
    responses={
        422: {
            "model": ErrorBody,
            "description": ERROR_STATUSES[422] + "; unknown_peer: some country asked is no "
            "configured peer of this node (no outbound rule or no address; the detail names "
            "them). The request is refused as a whole, whatever this node's own PKI documents "
            "say (reported before own_stale_crl and the like): no peer of it is asked, and "
            "each unknown country's attempt is in the history (refused_locally, unknown_peer)",
        }
    },
)
async def send_query(body: QueryIn, officer: OfficerUser, request: Request) -> QueryOut:
    exchange = get_exchange(request)
    use_images = bool(body.images)
    pairs = [(p.data, p.finger_position) for p in (body.images or body.templates)]
    templates = await anyio.to_thread.run_sync(
        lambda: probe_items(body.modality, pairs, images=use_images)
    )
    local = await anyio.to_thread.run_sync(exchange.pki_watch.refusal)
    results = await query_peers(
        exchange.requester,
        exchange.policy,
        exchange.peers,
        body.peers,
        body.purpose,
        body.modality,
        templates,
        case_ref=body.case_ref,
        officer=actor(officer),
        local=local,
    )
    out = [PeerResultOut.model_validate(r.summary()) for r in results]
    return QueryOut(
        complete=all(r.answered for r in results),
        hit=any(r.outcome == "hit" for r in out),
        case_ref=body.case_ref,
        results=out,
    )


def _viewer(principal: Principal) -> Viewer:
    return Viewer(actor(principal), principal.role)


@router.get(
    "/queries",
    summary="The queries this node sent to peers",
    responses={
        200: {
            "description": "a page of the queries sent, oldest first, each with its latest "
            "result; an officer's own only, every officer's (or officer's) for admins and "
            "auditors, whose listings are recorded in the audit trail (query.list)"
        },
        **_INDEXING,
    },
)
def list_sent_queries(
    reader: QueryReader,
    log: LogDep,
    session: SessionDep,
    since: Annotated[
        UtcDatetime | None, Query(description="only the queries sent at or after this time")
    ] = None,
    case_ref: Annotated[str | None, Query(description="only this case reference's")] = None,
    peer: Annotated[CountryCode | None, Query(description="only those sent to this peer")] = None,
    officer: OfficerName = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[
        int, Query(ge=0, le=MAX_ROW_ID, description="next_offset of the previous page")
    ] = 0,
) -> SentQueryPage:
    # (No docstring: the operation's description is its role.)
    page = QueryHistory(log, session).page(
        _viewer(reader),
        officer=officer,
        peer=peer,
        case_ref=case_ref,
        since=since,
        limit=limit,
        offset=offset,
    )
    nxt = offset + len(page.items)
    return SentQueryPage(
        items=[SentQueryOut.model_validate(_summary(q)) for q in page.items],
        total=page.total,
        next_offset=nxt if nxt < page.total else None,
    )


@router.get(
    "/queries/{query_id}",
    summary="One query this node sent",
    responses={
        **errors(404),
        200: {
            "description": "when, to whom and why it was sent, its latest result (the "
            "reference on a hit) and every result logged; an admin's or auditor's view is "
            "recorded in the audit trail (query.show). 404 unknown_query for a query this "
            "node never sent, and for another officer's"
        },
        **_INDEXING,
    },
)
def show_sent_query(
    query_id: str, reader: QueryReader, log: LogDep, session: SessionDep
) -> SentQueryDetail:
    return _detail(QueryHistory(log, session).show(_viewer(reader), query_id))


@router.post(
    "/queries/{query_id}/poll",
    summary="Fetch the reply a peer kept for a query this node stopped waiting for",
    responses={
        **errors(404, 409),
        200: {
            "description": "the query's new state, its reply fetched once from the status URL "
            "the peer gave (202) before this node stopped waiting (the peer keeps a reply for "
            "a while: 10 minutes on a bdx node), verified as every reply is and logged as a "
            "late reply_received event: answered (late), pending (the peer still searches: "
            "ask again later) or expired (the peer holds the reply no more). 409 "
            "not_timed_out for a query answered or failed for good, no_status_url for one "
            "the peer never accepted. An admin's poll is recorded as query.poll"
        },
        **_INDEXING,
    },
)
async def poll_sent_query(
    query_id: str, poller: QueryPoller, log: LogDep, session: SessionDep, request: Request
) -> SentQueryDetail:
    # (No docstring: the operation's description is its role.)
    history = QueryHistory(log, session)
    found = await history.poll(_viewer(poller), query_id, get_exchange(request))
    return _detail(found)


@router.post(
    "/queries/{query_id}/outcome",
    summary="Ask the peer that gave a query a hit for the examiner's outcome of it",
    responses={
        **errors(404, 409),
        200: {
            "description": "per peer that answered the query with a hit: its signed answer, "
            "verified (trust list, CRL, the peer's country, the reference and query this node "
            "logged, the nonce sent, the time): answered with the outcome (pending, "
            "confirmed, not_confirmed, withdrawn) and when the peer recorded it, "
            "unknown_reference (the peer keeps no such reference for this node: its "
            "follow-up period is over), or why there is none (unknown_peer, unreachable, "
            "timeout, untrusted_peer, http_error, invalid_reply; the detail says more). "
            "Each is logged in the exchange log (outcome_received, with when the peer "
            "signed it: the query's follow_up is the answer signed last); an admin's asking "
            "is recorded in the audit trail (query.outcome), a refused one too. Officers "
            "(their own queries) and admins ask, as they poll; auditors do not (403 "
            "wrong_role): asking contacts the peer. 404 unknown_query for a "
            "query this node never sent, and for another officer's; 409 no_hit for a query "
            "the peer gave no hit (nothing to ask); 503 with its code while this node's own "
            "trust list, CRL or certificates are refused (nobody asked)"
        },
        **_INDEXING,
    },
)
async def ask_hit_outcome(
    query_id: str, asker: QueryPoller, log: LogDep, session: SessionDep, request: Request
) -> QueryFollowUpOut:
    # (No docstring: the operation's description is its role.)
    service = HitOutcomeService(log, session, get_exchange(request))
    found, results = await service.ask(_viewer(asker), query_id)
    return QueryFollowUpOut(
        query_id=found.query_id,
        case_ref=found.case_ref,
        results=[
            PeerFollowUpOut.model_validate(
                {
                    "peer": r.peer,
                    "reference": r.reference,
                    "status": r.status,
                    "outcome": r.outcome,
                    "outcome_at": r.outcome_at,
                    "issued_at": r.issued_at,
                    "detail": r.detail,
                    "outcome_jws": r.token,
                }
            )
            for r in results
        ],
    )


def _summary(q: SentQuery) -> dict[str, object]:
    latest = q.latest
    return {
        "query_id": q.query_id,
        "peer": q.peer,
        "purpose": q.purpose,
        "modality": q.modality,
        "case_ref": q.case_ref,
        "officer": q.officer,
        "sent_at": q.sent_at,
        "status": q.status,
        "outcome": latest.outcome if latest else None,
        "reason": latest.reason if latest else q.refusal,
        "reference": latest.reference if latest else None,
        "strength": latest.strength if latest else None,
        "detail": latest.detail if latest else q.refusal_detail,
        "replied_at": latest.received_at if latest else None,
        "late": latest.late if latest else False,
        "pollable": q.status_url is not None,
    }


def _detail(q: SentQuery) -> SentQueryDetail:
    answer = q.answer
    replies = [
        LoggedReplyOut.model_validate(
            {
                "status": r.status,
                "received_at": r.received_at,
                "late": r.late,
                "outcome": r.outcome,
                "reason": r.reason,
                "reference": r.reference,
                "strength": r.strength,
                "detail": r.detail,
            }
        )
        for r in q.replies
    ]
    f = q.follow_up
    follow_up = None
    if f is not None:
        follow_up = LoggedFollowUpOut.model_validate(
            {
                "status": f.status,
                "reference": f.reference,
                "outcome": f.outcome,
                "outcome_at": f.outcome_at,
                "received_at": f.received_at,
            }
        )
    return SentQueryDetail.model_validate(
        {
            **_summary(q),
            "replies": replies,
            "reply_jws": answer.reply_jws if answer else None,
            "follow_up": follow_up,
        }
    )
