"""``GET /peers/{country}/terms``: what a peer's rules let this node ask it now, signed by the
peer and verified here (:mod:`node.exchange.terms`, :mod:`node.services.peer_terms`).

200 with the terms (or none and no rules version, ``refusal`` ``unknown_peer``, when the peer
holds no rules for this node: its signed answer); 422 ``unknown_peer`` for a country that is
no configured peer of this node (nobody asked); 502 when the peer could not be asked or its
answer does not verify (``unreachable``, ``timeout``, ``untrusted_peer``, ``http_error``,
``invalid_reply``); 503 when this node runs no exchange or its own PKI documents are refused.
Each reading that went out is recorded in the audit trail (``peer.terms``). Officers and
admins read; auditors do not (403 ``wrong_role``): a reading contacts the peer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from node.api.deps import SessionDep, actor, require_role
from node.api.schemas.common import ErrorBody, errors
from node.api.schemas.peers import ModalityQuotaOut, PeerTermsOut, TermsOut
from node.db.models import Role
from node.exchange.setup import Exchange
from node.service_errors import ExchangeUnavailableError
from node.services.peer_terms import PeerTermsService
from node.services.users import Principal
from node.settings import CountryCode

router = APIRouter(tags=["peers"], responses=errors())

#: Whoever may send queries, and admins; not auditors: a reading makes this node contact the
#: peer and writes an entry in its exchange log (as ``POST /queries/{id}/poll``, officers and
#: admins only), and auditors review.
TermsReader = Annotated[Principal, Depends(require_role(Role.OFFICER, Role.ADMIN))]
PeerCode = Annotated[CountryCode, Path(description="the peer country (ISO 3166-1 alpha-2)")]


def get_exchange(request: Request) -> Exchange:
    """The node's peer exchange; 503 ``no_exchange`` (the CLI's exit 6) on a node that runs
    none (no ``policy_file``). Every route that needs the exchange refuses with this one
    error (``GET /quota``, ``POST /queries``...), never a storage code."""
    exchange: Exchange | None = getattr(request.app.state, "exchange", None)
    if exchange is None:
        raise ExchangeUnavailableError("this node has no peer exchange configured")
    return exchange


ExchangeDep = Annotated[Exchange, Depends(get_exchange)]


@router.get(
    "/peers/{country}/terms",
    summary="A peer's signed terms for this node",
    responses={
        200: {
            "description": "what the peer's rules in force let this node ask it (purposes, "
            "modalities, each modality's daily quota used and left today, when the day "
            "resets, hours of service), fetched over mutual TLS and verified (signature, the "
            "peer's certificate, the nonce, the time); asking consumes no quota. terms and "
            "policy_version are null with refusal unknown_peer when the peer's rules hold "
            "none for this node. "
            "422 unknown_peer for a country that is no configured peer of this node (nobody "
            "asked). Each reading that went out is recorded in the audit trail (peer.terms). "
            "Officers and admins read; auditors do not (403 wrong_role): reading contacts "
            "the peer"
        },
        502: {
            "model": ErrorBody,
            "description": "the peer could not be asked or its answer does not verify: "
            "unreachable, timeout, untrusted_peer, http_error, invalid_reply (the "
            "verification's reason in the detail: bad_signature, nonce_mismatch, "
            "stale_message...)",
        },
    },
)
async def peer_terms(
    country: PeerCode, reader: TermsReader, session: SessionDep, request: Request
) -> PeerTermsOut:
    # (No docstring: the operation's description is its role.)
    service = PeerTermsService(session, get_exchange(request))
    got = await service.read(country, actor=actor(reader))
    p = got.payload
    terms = None
    if p.terms is not None:
        t = p.terms
        terms = TermsOut(
            purposes=t.purposes,
            modalities=t.modalities,
            quotas=[ModalityQuotaOut.model_validate(q.model_dump()) for q in t.quotas],
            timezone=t.timezone,
            day=t.day,
            resets_at=t.resets_at,
            hours=t.hours,
            within_hours=t.within_hours,
        )
    return PeerTermsOut(
        peer=p.responder,
        requester=p.requester,
        format=p.format,
        issued_at=p.issued_at,
        policy_version=p.policy_version,
        terms=terms,
        refusal=p.refusal,
        terms_jws=got.token,
    )
