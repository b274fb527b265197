"""Peer endpoints (mutual TLS): ``POST /peer/v1/queries`` and ``GET /peer/v1/queries/{id}``;
``GET /peer/v1/terms`` (the caller's terms under this node's rules, signed:
:mod:`node.exchange.terms`); ``GET /peer/v1/hits/{reference}/outcome`` (the examiner's outcome
of a hit this node gave the caller, signed: :mod:`node.exchange.outcomes`).

The body of a query is its compact JWS (``application/jose``). The TLS client certificate names
the requesting country; the query's signature must be of the same country. A search that takes
longer than :data:`~node.exchange.params.SYNC_WAIT_SECONDS` is answered ``202 Accepted`` with a
``Location`` to poll; the finished reply (a signed JWS, no personal data) is kept in memory for
:data:`~node.exchange.params.PENDING_TTL_SECONDS` and only the requesting country may fetch it.
Signature verification and matching run in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field

from certs.errors import CertsError
from certs.pki.asgi import peer_der
from certs.pki.profiles import Usage
from certs.pki.tls import peer_country
from certs.translog import TransparencyLog
from matcher.errors import BdxError
from matcher.search.shards import busy
from matcher.workers import usable_cpus
from node.api.errors import STOPPING_RETRY_AFTER_S, database_failed, error_response
from node.api.schemas.common import ErrorBody
from node.errors import NotFoundError
from node.exchange import params
from node.exchange.admission import PeerWork, PeerWorkClosedError, peer_share
from node.exchange.messages import QueryPayload
from node.exchange.outcomes import OUTCOME_PATH, REFERENCE_PATTERN, OutcomeDesk
from node.exchange.pki_watch import explain
from node.exchange.requester import JOSE
from node.exchange.responder import Answer, Responder
from node.exchange.terms import NONCE_PATTERN, TERMS_PATH, TermsDesk
from node.exchange.witnessing import (
    MAX_NOTE_CHARS,
    PROOF_PATH,
    VIEWS_PATH,
    WITNESS_PATH,
    WitnessService,
    cosignature_json,
    log_origin,
)
from node.service_errors import (
    InternalServiceError,
    InvalidRequestError,
    RetryLaterError,
    StoreUnavailableError,
)

log = logging.getLogger(__name__)

#: What the peer routes' error statuses mean (bodies are :class:`ErrorBody`). Every route needs
#: mutual TLS with a member's certificate (the peer listener asks for it in the handshake).
PEER_ERRORS: dict[int, str] = {
    400: "the body is not JSON (witness routes)",
    403: "no client certificate, or it or the JWS's signer is refused: no_certificate, "
    "not_in_trust_list, revoked, expired, wrong_country, bad_signature, malformed (a body "
    "that is no compact JWS), bad_note (a checkpoint that does not verify), bad_timestamp (a "
    "checkpoint dated ahead of this witness's clock or before the last one it cosigned)",
    404: "no query of that id is pending for the caller (unknown_query), no view of that "
    "log (unknown_log)",
    409: "stale_proof: the consistency proof starts from another size than the witness's",
    413: "the body is larger than the limit of its path",
    422: "the request's values are refused (malformed_jws: a body that is not ASCII; "
    "bad_proof: a consistency proof malformed for its sizes; bad_size: sizes a proof cannot "
    "be made for; a terms or outcome request's nonce that is none, a reference that is none)",
    429: "too_many_terms_requests, too_many_outcome_requests: the caller asked its terms, or "
    "hits' outcomes, more often than its allowance (node.exchange.terms, "
    "node.exchange.outcomes), see Retry-After; too_many_refusals: the caller's queries were "
    "refused before their signature was "
    "verified (a body that is no JWS, a bad signature, a malformed payload) more often than "
    "its budget allows; each is counted in one refusals_suppressed event; see Retry-After. A "
    "verified query refused (policy, replay...) is always answered its signed refusal",
    500: "an unexpected failure on this node; its log has the details",
    503: "this node's exchange or witness service is not available, or its own trust list or "
    "CRL is stale or its own certificate refused (own_stale_crl, own_certificate_revoked...): "
    "it answers and cosigns nothing until they are renewed; peer_busy: the caller's queries "
    "waiting for its share of this node's threads are too many, see Retry-After",
}
router = APIRouter(
    prefix="/peer/v1",
    tags=["peer"],
    responses={s: {"model": ErrorBody, "description": d} for s, d in PEER_ERRORS.items()},
)


@dataclass
class _Pending:
    requester: str
    future: Future[Answer]
    created: float


class PendingReplies:
    """Replies of searches answered ``202`` (still running or finished recently), by requester
    and query id (memory only; query ids are the requesters', so one peer's cannot displace
    another's). A query answered at once is never kept: nobody polls for it."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], _Pending] = {}

    def add(self, query_id: str, requester: str, future: Future[Answer]) -> None:
        self._expire()
        key = (requester, query_id)
        self._items.pop(key, None)  # a repeated id: the newest query's reply, kept in order
        self._items[key] = _Pending(requester, future, time.monotonic())

    def get(self, query_id: str, requester: str) -> Future[Answer]:
        self._expire()
        item = self._items.get((requester, query_id))
        if item is None:
            raise NotFoundError(
                f"no pending query {query_id} of {requester}", reason="unknown_query"
            )
        return item.future

    def _expire(self) -> None:
        # Items are in insertion (= creation) order: stop at the first one young enough.
        cutoff = time.monotonic() - params.PENDING_TTL_SECONDS
        for key, item in list(self._items.items()):
            if item.created >= cutoff:
                break
            if item.future.done():
                del self._items[key]


def _without_frames(exc: BaseException) -> BaseException:
    """``exc`` cut from its traceback and the exceptions it chains: their frames hold the query
    and its probe, which must not outlive the request (a query answered 202 keeps its future,
    and with it the exception, for polling). An unexpected error is logged here, with its
    traceback, and answered as :class:`InternalServiceError`; the database failing (locked,
    down, its disk full) is logged in one line and answered 503 ``database_unavailable``."""
    failed = database_failed(exc, "POST", f"{router.prefix}/queries")
    if failed is not None:
        return failed
    if not isinstance(exc, BdxError):  # as text: a record's exc_info would hold the frames
        log.error("peer query failed\n%s", "".join(traceback.format_exception(exc)).rstrip())
        return InternalServiceError("internal error; the node's log has details")
    exc.__context__ = exc.__cause__ = None
    return exc.with_traceback(None)


def _retrieved(future: asyncio.Future[Answer]) -> None:
    if not future.cancelled():
        future.exception()


# Dependencies that only read app state are ``async``: FastAPI runs a plain ``def`` dependency in a
# worker thread, a hop per dependency per request.
async def get_responder(request: Request) -> Responder:
    responder: Responder | None = getattr(request.app.state, "responder", None)
    if responder is None:
        raise StoreUnavailableError("this node does not answer peer queries (no exchange set up)")
    return responder


#: Peer threads per search process (see :func:`peer_executor`).
THREADS_PER_SEARCH_PROCESS = 2


def _peer_threads(request: Request) -> int:
    settings = getattr(request.app.state, "settings", None)
    processes = getattr(settings, "search_processes", 0)
    default = THREADS_PER_SEARCH_PROCESS * processes if processes else usable_cpus()
    threads: int = getattr(settings, "peer_threads", None) or default
    return threads


def peer_executor(request: Request) -> ThreadPoolExecutor:
    """The app's worker threads for peer queries: ``peer_threads`` of the settings, by default
    one per usable CPU core, or two per search process when searches run in processes (a peer
    thread then mostly waits for its search; with two per process one runs the request path
    while the other's search runs: 2 processes answered 84 queries/s with 2 threads, 102 with
    4, 99 with 8; benchmarks/README, "Exchange")."""
    executor: ThreadPoolExecutor | None = getattr(request.app.state, "peer_executor", None)
    if executor is None:
        executor = ThreadPoolExecutor(_peer_threads(request), thread_name_prefix="bdx-peer")
        request.app.state.peer_executor = executor
    return executor


def peer_work(request: Request) -> PeerWork:
    """The peer threads (:func:`peer_executor`) as the peers share them: one peer's queries
    run on at most its share (:func:`~node.exchange.admission.peer_share`), the others wait
    behind each other (:class:`~node.exchange.admission.PeerWork`)."""
    work: PeerWork | None = getattr(request.app.state, "peer_work", None)
    if work is None:
        share = peer_share(_peer_threads(request))
        work = PeerWork(peer_executor(request), share, params.PEER_QUEUED_QUERIES)
        request.app.state.peer_work = work
    return work


async def get_pending(request: Request) -> PendingReplies:
    pending: PendingReplies | None = getattr(request.app.state, "pending_replies", None)
    if pending is None:
        pending = PendingReplies()
        request.app.state.pending_replies = pending
    return pending


ResponderDep = Annotated[Responder, Depends(get_responder)]
PendingDep = Annotated[PendingReplies, Depends(get_pending)]


async def tls_peer(request: Request, responder: ResponderDep) -> str:
    """The requesting country, from the validated mutual-TLS client certificate.

    A certificate validated before under the trust list and CRL held now is looked up on the
    event loop (freshness and validity window re-checked); any other is validated in a
    worker thread.
    """
    der = peer_der(request.scope)
    if der:
        identity = responder.trust.cached(der, Usage.TLS)
        if identity is not None:
            return identity.country
    return await anyio.to_thread.run_sync(peer_country, der, responder.trust)


PeerCountry = Annotated[str, Depends(tls_peer)]


async def tls_query_peer(request: Request, responder: ResponderDep) -> str:
    """:func:`tls_peer` for an incoming query: a refused certificate is logged as a refused
    query (stage ``tls``), as every later refusal is, before the 403."""
    try:
        return await tls_peer(request, responder)
    except CertsError as exc:
        await anyio.to_thread.run_sync(responder.refused_unverified, None, "tls", exc.reason)
        raise


QueryPeerCountry = Annotated[str, Depends(tls_query_peer)]


async def own_standing(request: Request) -> None:
    """Refuse (503, unsigned) while this node's own trust list or CRL is stale or its own
    certificates are refused (:class:`~node.exchange.pki_watch.PkiWatch`): it must not
    answer, charge a quota, search, sign or cosign with documents or keys its peers refuse."""
    exchange = getattr(request.app.state, "exchange", None)
    if exchange is None:
        return
    notice = await anyio.to_thread.run_sync(exchange.pki_watch.refusal)
    if notice is not None:
        raise StoreUnavailableError(explain(notice), reason=notice.code)


OwnStanding = Annotated[None, Depends(own_standing)]


def _jose(answer: Answer) -> Response:
    return Response(answer.token, media_type=JOSE)


def _accepted(query_id: str) -> Response:
    location = f"{router.prefix}/queries/{query_id}"
    return Response(status_code=202, headers={"Location": location, "Retry-After": "1"})


@router.post(
    "/queries",
    response_class=Response,
    responses={
        200: {"content": {JOSE: {}}, "description": "The signed reply (compact JWS)."},
        202: {"description": "Search still running; poll the Location."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The signed query: a compact JWS (typ bdx-query+jws) of a v1 query.",
            "content": {JOSE: {"schema": {"type": "string"}}},
        }
    },
)
async def receive_query(
    request: Request, responder: ResponderDep, pending: PendingDep, country: QueryPeerCountry
) -> Response:
    """Answer a signed hit/no-hit query from a peer node."""
    try:
        await own_standing(request)
    except StoreUnavailableError as exc:  # logged as every refusal is
        await anyio.to_thread.run_sync(
            responder.refused_unverified, country, "credentials", exc.reason
        )
        raise
    body = await request.body()
    try:
        token = body.decode("ascii").strip()
    except UnicodeDecodeError:
        await anyio.to_thread.run_sync(
            responder.refused_unverified, country, "signature", "malformed_jws"
        )
        raise InvalidRequestError(
            "the body must be a compact JWS", reason="malformed_jws"
        ) from None
    # One worker-thread job verifies and answers (signature checks and matching never run on
    # the event loop); the query id is needed here only when the answer is not ready in time.
    verified: Future[QueryPayload] = Future()
    answer: Future[Answer] = Future()

    def run() -> None:
        with busy():  # a search it starts shares the cores with the other queries'
            try:
                query = responder.verify(token, country)
            except BaseException as exc:
                failure = _without_frames(exc)
                verified.set_exception(failure)
                answer.set_exception(failure)
                return
            verified.set_result(query)
            try:
                answer.set_result(responder.answer_verified(query))
            except BaseException as exc:
                answer.set_exception(_without_frames(exc))

    try:
        peer_work(request).submit(country, run)
    except PeerWorkClosedError as exc:  # the node's own stop, not the peer's doing: no refusal
        log.info("query from %s not taken: %s", country, exc.message)
        headers = {"Retry-After": str(STOPPING_RETRY_AFTER_S)}
        return error_response(503, exc.reason, exc.message, headers)
    except RetryLaterError as exc:  # its queue is full: logged as every refusal is (bounded)
        await anyio.to_thread.run_sync(
            responder.refused_unverified, country, "admission", exc.reason
        )
        raise
    waited = asyncio.wrap_future(answer)
    try:
        done = await asyncio.wait_for(asyncio.shield(waited), timeout=params.SYNC_WAIT_SECONDS)
    except TimeoutError:
        # The polls answer a failure from ``answer``; asyncio would log this wrapper's copy as
        # "Future exception was never retrieved" (with the failure's text) once it is dropped.
        waited.add_done_callback(_retrieved)
        query = await asyncio.wrap_future(verified)
        query_id = str(query.query_id)
        pending.add(query_id, query.requester, answer)
        return _accepted(query_id)
    return _jose(done)


@router.get(
    "/queries/{query_id}",
    response_class=Response,
    responses={200: {"content": {JOSE: {}}}, 202: {"description": "Still running."}},
)
async def query_status(query_id: str, pending: PendingDep, country: PeerCountry) -> Response:
    """The signed reply of a query answered 202, once it is ready."""
    future = pending.get(query_id, country)
    if not future.done():
        return _accepted(query_id)
    failure = future.exception()
    if failure is not None:  # a copy: raising the kept one would hang each poll's frames on it
        raise copy.copy(failure)
    return _jose(future.result())


_Desk = TypeVar("_Desk", TermsDesk, OutcomeDesk)


def _desk(request: Request, responder: Responder, kind: type[_Desk], name: str) -> _Desk:
    """The app's one desk of ``kind`` (kept as ``app.state.<name>``) for the running
    responder: a new one when the responder was replaced (a restart in the same process)."""
    desk: _Desk | None = getattr(request.app.state, name, None)
    if desk is None or desk.responder is not responder:
        desk = kind(responder)
        setattr(request.app.state, name, desk)
    return desk


async def get_terms_desk(request: Request, responder: ResponderDep) -> TermsDesk:
    return _desk(request, responder, TermsDesk, "terms_desk")


TermsDeskDep = Annotated[TermsDesk, Depends(get_terms_desk)]


@router.get(
    TERMS_PATH.removeprefix(router.prefix),
    response_class=Response,
    responses={200: {"content": {JOSE: {}}, "description": "The signed terms (compact JWS)."}},
)
async def peer_terms(
    nonce: Annotated[
        str, Query(pattern=NONCE_PATTERN, description="the caller's nonce, echoed signed")
    ],
    desk: TermsDeskDep,
    country: PeerCountry,
    _own: OwnStanding,
) -> Response:
    """What the caller may ask this node now under its rules (purposes, modalities, each
    modality's daily quota used and left, hours of service), signed; a caller without rules
    here is answered signed terms-less (``unknown_peer``). Consumes no quota; logged."""
    token = await anyio.to_thread.run_sync(desk.answer, country, nonce)
    return Response(token, media_type=JOSE)


async def get_outcome_desk(request: Request, responder: ResponderDep) -> OutcomeDesk:
    return _desk(request, responder, OutcomeDesk, "outcome_desk")


OutcomeDeskDep = Annotated[OutcomeDesk, Depends(get_outcome_desk)]


@router.get(
    OUTCOME_PATH.removeprefix(router.prefix),
    response_class=Response,
    responses={200: {"content": {JOSE: {}}, "description": "The signed outcome (compact JWS)."}},
)
async def hit_outcome(
    reference: Annotated[str, Path(pattern=REFERENCE_PATTERN, description="the hit's reference")],
    nonce: Annotated[
        str, Query(pattern=NONCE_PATTERN, description="the caller's nonce, echoed signed")
    ],
    desk: OutcomeDeskDep,
    country: PeerCountry,
    _own: OwnStanding,
) -> Response:
    """The examiner's outcome of a hit this node gave the caller (pending, confirmed,
    not_confirmed, withdrawn) and when it was recorded, signed; a reference not given to the
    caller, or past its follow-up period, is answered signed unknown_reference. Logged."""
    token = await anyio.to_thread.run_sync(desk.answer, country, reference, nonce)
    return Response(token, media_type=JOSE)


async def get_witness(request: Request) -> WitnessService:
    witness: WitnessService | None = getattr(request.app.state, "witness", None)
    if witness is None:
        raise StoreUnavailableError("this node does not witness peers' logs (no exchange set up)")
    return witness


WitnessDep = Annotated[WitnessService, Depends(get_witness)]
_WITNESS = WITNESS_PATH.removeprefix(router.prefix)


class WitnessHead(BaseModel):
    origin: str
    size: int


class WitnessRequest(BaseModel):
    checkpoint: str = Field(max_length=8192, description="the signed checkpoint note")
    proof: list[str] = Field(
        default_factory=list, max_length=64, description="base64 consistency-proof hashes"
    )
    old_size: int | None = Field(
        None,
        ge=0,
        lt=2**63,
        description="the size the proof starts from (the witness's latest, from .../latest)",
    )


class CosignatureOut(BaseModel):
    witness: str
    key_id: str
    timestamp: int
    signature: str


#: Where the peer routes' own OpenAPI schema is served in the app; the peer listener answers
#: its ``GET /openapi.json`` from here (:class:`node.exchange.serving.PeerRoutesOnly`), so it
#: passes the app's middleware (security headers, access log) and the certificate checks
#: every peer route makes (trust list, CRL).
SCHEMA_PATH = "/openapi.json"


@router.get(SCHEMA_PATH, include_in_schema=False)
async def peer_schema(request: Request, country: PeerCountry) -> dict[str, Any]:
    """The OpenAPI schema of the peer routes (a member's certificate only)."""
    from node.api.app import port_schema  # here: node.api.app includes this router

    return port_schema(request.app, peer=True)


@router.get(_WITNESS + "/latest", response_model=WitnessHead)
async def witnessed_size(witness: WitnessDep, country: PeerCountry) -> WitnessHead:
    """The size of the caller's log that this node cosigned last (0: none yet)."""
    size = await anyio.to_thread.run_sync(witness.latest_size, country)
    return WitnessHead(origin=log_origin(country), size=size)


@router.post(_WITNESS, response_model=CosignatureOut)
async def cosign_checkpoint(
    body: WitnessRequest, witness: WitnessDep, country: PeerCountry, _own: OwnStanding
) -> CosignatureOut:
    """Cosign the caller's checkpoint if it extends what this node cosigned before."""
    cosig = await anyio.to_thread.run_sync(
        witness.cosign, country, body.checkpoint, body.proof, body.old_size
    )
    return CosignatureOut.model_validate(cosignature_json(cosig))


class WitnessView(BaseModel):
    checkpoint: str = Field(
        max_length=MAX_NOTE_CHARS,
        description="the signed checkpoint note of that log this node cosigned last",
    )


@router.get(VIEWS_PATH.removeprefix(router.prefix) + "/{country}", response_model=WitnessView)
async def witness_view(
    country: Annotated[str, Path(pattern=r"^[A-Z]{2}$")],
    witness: WitnessDep,
    caller: PeerCountry,
) -> WitnessView:
    """What this node cosigned last for ``country``'s log, so that other witnesses can check
    that the log showed them the same history (a split view is caught only so)."""
    view = await anyio.to_thread.run_sync(witness.view, country)
    if view is None:
        raise NotFoundError(f"this node cosigned nothing of {country}'s log", reason="unknown_log")
    return WitnessView(checkpoint=view.to_bytes().decode("utf-8"))


class ConsistencyProofOut(BaseModel):
    old_size: int
    new_size: int
    proof: list[str] = Field(description="base64 hashes (RFC 6962 consistency proof)")


async def get_exchange_log(request: Request) -> TransparencyLog:
    log_: TransparencyLog | None = getattr(request.app.state, "exchange_log", None)
    if log_ is None:
        raise StoreUnavailableError("this node has no exchange log (no exchange set up)")
    return log_


ExchangeLogDep = Annotated[TransparencyLog, Depends(get_exchange_log)]
TreeSize = Annotated[int, Query(ge=1, lt=2**63)]


@router.get(PROOF_PATH.removeprefix(router.prefix), response_model=ConsistencyProofOut)
async def log_consistency(
    old: TreeSize, new: TreeSize, exchange_log: ExchangeLogDep, caller: PeerCountry
) -> ConsistencyProofOut:
    """A consistency proof of this node's exchange log from size ``old`` to ``new``: a
    witness comparing its view with another witness's asks the log for it."""

    def prove() -> list[bytes]:
        size = exchange_log.size()
        if not old < new <= size:
            raise InvalidRequestError(
                f"a proof needs 1 <= old < new <= {size} (this log's size)", reason="bad_size"
            )
        return exchange_log.consistency_proof(old, new)

    proof = await anyio.to_thread.run_sync(prove)
    return ConsistencyProofOut(
        old_size=old, new_size=new, proof=[base64.b64encode(h).decode() for h in proof]
    )
