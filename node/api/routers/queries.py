"""``POST /queries``: an officer's hit/no-hit query to peer nodes (see
:mod:`node.exchange.officer`). Answers 200 with one result per peer, partial results marked
(``complete`` false); 503 when this node has no exchange configured."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Request

from node.api.deps import OfficerUser, actor
from node.api.schemas.common import errors
from node.api.schemas.queries import PeerResultOut, QueryIn, QueryOut
from node.exchange.officer import probe_items, query_peers
from node.exchange.setup import Exchange
from node.service_errors import StoreUnavailableError

router = APIRouter(tags=["queries"], responses=errors(415))


def _exchange(request: Request) -> Exchange:
    exchange: Exchange | None = getattr(request.app.state, "exchange", None)
    if exchange is None:
        raise StoreUnavailableError("this node has no peer exchange configured")
    return exchange


@router.post("/queries")
async def send_query(body: QueryIn, officer: OfficerUser, request: Request) -> QueryOut:
    exchange = _exchange(request)
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
