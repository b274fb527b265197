"""Sending one probe to several peers at once over mutual TLS.

Each peer gets its own signed query (its own id and nonce, addressed to it). Queries run
concurrently; each has a deadline covering the POST and the polling of a 202 status URL (with
exponential backoff). Every reply's signature is verified against the trust anchors and must
come from the peer it was sent to, answer the query that was sent, and be addressed to this
node; the signed reply is kept in the result and in the exchange log. A peer that is down,
stalls, answers with an HTTP error or with an invalid reply yields a result marked as such, so
the caller sees partial results clearly. A reply body is read up to ``MAX_REPLY_BYTES`` only, and
a 202's status URL is followed only on the peer's own origin (the client certificate goes to
the peer that was asked, nowhere else). The server's TLS certificate is validated against the
trust anchors as the connection opens, before a byte of the query is sent: in the trust list,
unrevoked (the CRL), a TLS certificate, of the country asked (``untrusted_peer`` otherwise);
OpenSSL alone checks only the chain to the root and the host name, which a revoked key or
another member's certificate for the same host passes. Pooled connections are dropped when
the trust list or CRL changes, or this node's own certificate is renewed (once the exchanges in
flight on them are done). Each peer has its own connection pool. Whatever else goes wrong with
one peer ("failed", the error's type logged here) never costs the other peers' results. Replies
are logged once all are in, or, when the node stops first, those that are in and the others as
``cancelled``.

A peer that answered 202 keeps the reply at its status URL for a while (its
``PENDING_TTL_SECONDS``). When this node stops waiting first (``timeout``), loses the peer
while polling (``unreachable``) or is stopped (``cancelled``), the result keeps that URL
(``status_url``, logged with the reply event: the protocol's own URL for the query, so
nothing the peer chose); an officer may fetch the reply later with
:meth:`Requester.poll_reply` (``POST /queries/{id}/poll``), verified as any reply and logged as
a ``late`` ``reply_received`` event: ``answered``, ``pending`` (still searching; the URL is
kept) or ``expired`` (the peer no longer holds it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import time
import uuid
import weakref
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import anyio.to_thread
import httpx
from cryptography import x509
from pydantic import ValidationError

from certs import jws
from certs.errors import CertsError
from certs.pki import reasons
from certs.pki.keys import PrivateKey
from certs.pki.profiles import Usage
from certs.pki.validate import TrustAnchors
from node.exchange import params
from node.exchange.messages import QueryPayload, ReplyPayload, TemplateItem, new_nonce
from node.exchange.responder import ExchangeLog

log = logging.getLogger(__name__)

Status = Literal[
    "answered",
    "timeout",
    "unreachable",
    "untrusted_peer",
    "http_error",
    "invalid_reply",
    "failed",
    "cancelled",  # the node stopped (or the caller went away) first: in the exchange log only
    "pending",  # a late poll: the peer is still searching (its status URL is kept)
    "expired",  # a late poll: the peer no longer holds the reply (past its TTL, or restarted)
]
#: Results after which the peer may still hold the reply at its status URL: the URL is kept
#: with them, and the query can be polled (:meth:`Requester.poll_reply`).
POLLABLE: frozenset[str] = frozenset({"timeout", "pending", "unreachable", "cancelled"})
QUERY_PATH = "/peer/v1/queries"
JOSE = "application/jose"


@dataclass(frozen=True)
class Peer:
    """A peer node: its country and base URL (``https://host:port``)."""

    country: str
    url: str


@dataclass(frozen=True)
class PeerResult:
    """What one peer answered. ``reply``/``token`` are set only when ``status`` is answered."""

    country: str
    query_id: str
    status: Status
    elapsed_ms: float
    reply: ReplyPayload | None = None
    token: str | None = None
    detail: str | None = None
    #: The peer's status URL, kept when the peer answered 202 and the result is one of
    #: :data:`POLLABLE` (the reply may still be fetched); logged, never in :meth:`summary`.
    status_url: str | None = None
    #: Fetched by a late poll (:meth:`Requester.poll_reply`), not within the exchange.
    late: bool = False

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "peer": self.country,
            "query_id": self.query_id,
            "status": self.status,
            "elapsed_ms": round(self.elapsed_ms, 1),
        }
        if self.reply is not None:
            out |= {
                "outcome": self.reply.outcome.value,
                "reason": self.reply.reason,
                "reference": self.reply.reference,
                "strength": self.reply.strength.value if self.reply.strength else None,
            }
        if self.detail:
            out["detail"] = self.detail
        return out


class InvalidReplyError(Exception):
    """A reply that does not answer the query that was sent (internal to this module)."""


class _StillPending(Exception):
    """A late poll found the peer still searching (its status URL answered 202)."""


class _Forgotten(Exception):
    """A late poll found no reply at the status URL (404 ``unknown_query``)."""


class Asked(Protocol):
    """What a reply is checked against: the query's id and creation time (a
    :class:`QueryPayload`, or a logged query's for a late reply)."""

    @property
    def query_id(self) -> uuid.UUID: ...

    @property
    def created(self) -> datetime: ...


@dataclass(frozen=True)
class LoggedQuery:
    """A query this node sent, as its ``query_sent`` event names it (for a late reply)."""

    query_id: uuid.UUID
    created: datetime


def status_url_of(peer: Peer, query_id: str) -> str:
    """The status URL the protocol gives a query answered 202 at ``peer`` (the peer's
    ``Location``, resolved under its base URL as :meth:`Requester._post_and_poll` does)."""
    return str(httpx.URL(peer.url.rstrip("/") + QUERY_PATH + "/" + query_id))


@dataclass
class _Accepted:
    """The status URL of one exchange: ``url`` is set once the peer answers 202 with the
    protocol's own URL for the query (``expected``); another one is followed while the
    exchange lasts, as before, but not kept (a peer's free text would go into the log)."""

    expected: str
    url: str | None = None

    def offered(self, url: httpx.URL) -> None:
        if str(url) == self.expected:
            self.url = self.expected


class UntrustedPeerError(Exception):
    """The peer's TLS server certificate was refused; ``reason`` says why (nothing sent)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


#: Refusals of a peer's certificate that are this node's fault: its own list is stale.
_OWN_STALE = {reasons.STALE_CRL: "CRL", reasons.STALE_TRUST_LIST: "trust list"}


def refused_certificate(reason: str) -> str:
    """Why a peer's certificate was refused, in words: its own fault, or this node's own
    stale trust list or CRL (then every peer's is refused, and the peer is not at fault)."""
    if reason in _OWN_STALE:
        return f"this node's own {_OWN_STALE[reason]} is stale, so no peer validates ({reason})"
    return f"its TLS certificate was refused ({reason})"


Trace = Callable[[str, dict[str, Any]], Awaitable[None]]
#: The HTTP client to reach a peer through, held for one exchange.
Lease = Callable[[Peer], AbstractAsyncContextManager[httpx.AsyncClient]]


@dataclass
class _Pooled:
    """A pooled client of one peer: the anchors it was made under, the exchanges using it."""

    client: httpx.AsyncClient
    version: tuple[int, int, int]
    users: int = 0
    retired: bool = False  # replaced after a trust list, CRL or own certificate change


def server_check(trust: TrustAnchors, country: str) -> Trace:
    """An httpcore trace hook that validates the server's certificate as the TLS handshake
    completes, before the request is written; raising aborts the connection."""

    async def trace(event: str, info: dict[str, Any]) -> None:
        if event != "connection.start_tls.complete":
            return
        stream = info["return_value"]
        ssl_object = stream.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        try:
            if der is None:
                raise UntrustedPeerError("no_certificate")
            try:
                trust.validate(
                    x509.load_der_x509_certificate(der), Usage.TLS, expected_country=country
                )
            except CertsError as exc:
                raise UntrustedPeerError(exc.reason) from None
        except UntrustedPeerError:
            await stream.aclose()  # httpcore drops a failed connection without closing it
            raise

    return trace


class Requester:
    """Builds, signs and sends queries for one node's officers."""

    def __init__(
        self,
        *,
        country: str,
        trust: TrustAnchors,
        signing_key: PrivateKey,
        signing_chain: Sequence[x509.Certificate],
        tls: ssl.SSLContext,
        exchange_log: ExchangeLog,
        timeout: float = params.PEER_TIMEOUT_SECONDS,
        pooled: bool = False,
        clock_window: timedelta = params.REPLAY_WINDOW,
    ) -> None:
        self.country = country
        self.trust = trust
        # (generation, signing key, its chain, client TLS context): swapped as one
        self._own: tuple[int, PrivateKey, list[x509.Certificate], ssl.SSLContext] = (
            0,
            signing_key,
            list(signing_chain),
            tls,
        )
        self.log = exchange_log
        self.timeout = timeout
        self.pooled = pooled
        #: Accepted clock difference to a peer (the node's ``replay_window_s``, as its
        #: responder accepts queries): a reply dated outside it is invalid.
        self.clock_window = clock_window
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Pooled]] = (
            weakref.WeakKeyDictionary()
        )
        # One lock per query id polled late (:meth:`poll_lock`), kept while someone holds or
        # waits for it: two polls of one query would fetch and log its reply twice.
        self._poll_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    @property
    def signing_key(self) -> PrivateKey:
        return self._own[1]

    @property
    def signing_chain(self) -> list[x509.Certificate]:
        return self._own[2]

    @property
    def tls(self) -> ssl.SSLContext:
        return self._own[3]

    def use_credentials(
        self,
        signing_key: PrivateKey,
        signing_chain: Sequence[x509.Certificate],
        tls: ssl.SSLContext,
    ) -> None:
        """Sign the queries from now on with ``signing_key`` and ``signing_chain``, and open
        new connections with ``tls`` (a renewed certificate): pooled clients are replaced as
        for a new trust list, the exchanges in flight finish on theirs."""
        self._own = (self._own[0] + 1, signing_key, list(signing_chain), tls)

    def _anchors_version(self) -> tuple[int, int, int]:
        return self.trust.trust_list.sequence, self.trust.crl.number, self._own[0]

    @contextlib.asynccontextmanager
    async def _lease(self, peer: Peer) -> AsyncIterator[httpx.AsyncClient]:
        """With ``pooled``: the running event loop's client for ``peer`` (created on first use,
        kept for keep-alive connections; close them with :meth:`aclose`). One client, and so
        one connection limit, per peer: a peer that stalls holds its own connections only. A
        new client once the trust list or CRL changed (a connection is validated only as it
        opens), or this node's own certificate; the old one is closed when the exchanges
        using it are done, not under them."""
        clients = self._clients.setdefault(asyncio.get_running_loop(), {})
        version = self._anchors_version()
        held = clients.get(peer.country)
        if held is None or held.client.is_closed or held.version != version:
            # Swap first, close after: closing yields, and another exchange to this peer must
            # find the new client then, not make one of its own that nothing would close.
            old, held = held, _Pooled(self._new_client(params.MAX_CONNECTIONS_PER_PEER), version)
            clients[peer.country] = held
            if old is not None:
                old.retired = True
                if old.users == 0:
                    await old.client.aclose()
        held.users += 1
        try:
            yield held.client
        finally:
            held.users -= 1
            if held.retired and held.users == 0:
                await held.client.aclose()

    def _new_client(self, connections: int) -> httpx.AsyncClient:
        limits = httpx.Limits(
            max_connections=connections, keepalive_expiry=params.KEEPALIVE_EXPIRY_SECONDS
        )
        return httpx.AsyncClient(verify=self.tls, timeout=self.timeout, limits=limits)

    async def aclose(self) -> None:
        """Close the running loop's pooled clients (at shutdown)."""
        for held in self._clients.pop(asyncio.get_running_loop(), {}).values():
            await held.client.aclose()

    def sign_query(self, query: QueryPayload) -> str:
        _, key, chain, _ = self._own
        return jws.sign(query.wire(), key, chain, typ=params.QUERY_TYP)

    def build_query(
        self,
        to: str,
        purpose: str,
        modality: str,
        templates: Sequence[TemplateItem],
        case_ref: str | None = None,
    ) -> QueryPayload:
        return QueryPayload.model_validate(
            {
                "query_id": uuid.uuid4(),
                "requester": self.country,
                "responder": to,
                "created": datetime.now(UTC),
                "nonce": new_nonce(),
                "purpose": purpose,
                "modality": modality,
                "templates": list(templates),
                "case_ref": case_ref,
            }
        )

    @contextlib.asynccontextmanager
    async def _leases(self, connections: int) -> AsyncIterator[Lease]:
        """How to reach a peer: the pooled clients (``pooled``), else one client of
        ``connections`` connections, closed at the end."""
        if self.pooled:
            yield self._lease
            return
        async with self._new_client(connections) as client:

            @contextlib.asynccontextmanager
            async def shared(peer: Peer) -> AsyncIterator[httpx.AsyncClient]:
                yield client

            yield shared

    async def query_peers(
        self,
        peers: Sequence[Peer],
        purpose: str,
        modality: str,
        templates: Sequence[TemplateItem],
        *,
        case_ref: str | None = None,
        officer: str | None = None,
    ) -> list[PeerResult]:
        """Send the probe to every peer concurrently; one result per peer, in order."""
        async with self._leases(len(peers)) as lease:
            return await self._query_peers(
                lease, peers, purpose, modality, templates, case_ref, officer
            )

    def poll_lock(self, query_id: str) -> asyncio.Lock:
        """The lock the late polls of query ``query_id`` take in turn (one process, one event
        loop: the API's): the first fetches and logs the reply, the next ones must read the
        query's state again once they hold it, and find it answered. Askings for the outcome
        of the query's hit take it too (:mod:`node.services.hit_outcomes`), so they are
        logged one at a time."""
        lock = self._poll_locks.get(query_id)
        if lock is None:
            lock = asyncio.Lock()
            self._poll_locks[query_id] = lock
        return lock

    async def poll_reply(
        self, peer: Peer, query_id: str, status_url: str, sent_at: datetime
    ) -> PeerResult:
        """Fetch once the reply ``peer`` keeps at ``status_url`` for query ``query_id``
        (sent at ``sent_at``), which this node stopped waiting for; verified as every reply
        is (:meth:`_check_reply`) and logged as a ``late`` ``reply_received`` event. The
        result is ``answered``, ``pending`` (the peer still searches; the URL is kept),
        ``expired`` (the peer holds no reply for it now), or a failure as in an exchange.
        ``status_url`` must be the protocol's URL of the query at ``peer``
        (:func:`status_url_of`): the client certificate goes to the peer asked, nowhere else.
        """
        accepted = _Accepted(status_url_of(peer, query_id))
        if status_url != accepted.expected:
            raise ValueError("not the status URL of this query at this peer")
        accepted.url = status_url
        asked = LoggedQuery(uuid.UUID(query_id), sent_at)
        async with self._leases(1) as lease:
            result = await self._fetch_reply(
                lease,
                peer,
                asked,
                accepted,
                lambda client: self._poll_once(client, peer, status_url),
                late=True,
            )
        await anyio.to_thread.run_sync(self._record_replies, [result])
        return result

    async def _query_peers(
        self,
        lease: Lease,
        peers: Sequence[Peer],
        purpose: str,
        modality: str,
        templates: Sequence[TemplateItem],
        case_ref: str | None,
        officer: str | None,
    ) -> list[PeerResult]:
        # Every query is logged before any is sent, every reply once all are in: one log
        # append (one transaction) each, whatever the number of peers.
        queries = [
            self.build_query(peer.country, purpose, modality, templates, case_ref) for peer in peers
        ]
        sent_at = datetime.now(UTC).isoformat()
        await anyio.to_thread.run_sync(  # off the loop: the append may wait for the log's lock
            self.log.record_many,
            [
                {
                    "type": "query_sent",
                    "node": self.country,
                    "peer": peer.country,
                    "query_id": str(query.query_id),
                    "purpose": purpose,
                    "modality": modality,
                    "templates": len(templates),
                    "case_ref": case_ref,
                    "officer": officer,
                    "at": sent_at,
                }
                for peer, query in zip(peers, queries, strict=True)
            ],
        )
        start = time.perf_counter()
        accepted = [
            _Accepted(status_url_of(peer, str(q.query_id)))
            for peer, q in zip(peers, queries, strict=True)
        ]
        jobs = [
            asyncio.ensure_future(self._exchange(lease, peer, query, kept))
            for peer, query, kept in zip(peers, queries, accepted, strict=True)
        ]
        try:
            results = list(await asyncio.gather(*jobs))
        except asyncio.CancelledError:
            # The node is stopping (or the caller went away): the replies already in, and the
            # queries still out, are logged all the same; a peer may have answered a hit. A
            # query the peer accepted (202) keeps its status URL: the reply can be fetched
            # later, as after a timeout.
            elapsed = (time.perf_counter() - start) * 1000
            self._record_replies(
                [
                    job.result()
                    if job.done() and not job.cancelled()
                    else _cancelled(peer, str(q.query_id), elapsed, kept.url)
                    for job, peer, q, kept in zip(jobs, peers, queries, accepted, strict=True)
                ]
            )
            raise
        await anyio.to_thread.run_sync(self._record_replies, results)
        return results

    def _record_replies(self, results: Sequence[PeerResult]) -> None:
        received_at = datetime.now(UTC).isoformat()
        self.log.record_many(
            [
                {
                    "type": "reply_received",
                    "node": self.country,
                    **r.summary(),
                    "reply_jws": r.token,
                    "at": received_at,
                    **({"status_url": r.status_url} if r.status_url else {}),
                    **({"late": True} if r.late else {}),
                }
                for r in results
            ]
        )

    async def _exchange(
        self, lease: Lease, peer: Peer, query: QueryPayload, accepted: _Accepted
    ) -> PeerResult:
        return await self._fetch_reply(
            lease,
            peer,
            query,
            accepted,
            lambda client: self._post_and_poll(client, peer, self.sign_query(query), accepted),
        )

    async def _fetch_reply(
        self,
        lease: Lease,
        peer: Peer,
        query: Asked,
        accepted: _Accepted,
        fetch: Callable[[httpx.AsyncClient], Awaitable[str]],
        *,
        late: bool = False,
    ) -> PeerResult:
        """The result of ``fetch`` (the exchange, or a late poll), its reply verified."""
        start = time.perf_counter()
        qid = str(query.query_id)

        def result(status: Status, **fields: Any) -> PeerResult:
            elapsed = (time.perf_counter() - start) * 1000
            kept = accepted.url if status in POLLABLE else None
            if kept is not None and status != "pending":
                fields["detail"] = f"{fields.get('detail')}; {_POLL_LATER}"
            return PeerResult(
                peer.country, qid, status, elapsed, status_url=kept, late=late, **fields
            )

        # httpx's own timeouts fire first and close the connection cleanly (a stalled TLS
        # handshake included); the outer deadline bounds the polling of a 202 as a whole.
        try:
            async with (
                lease(peer) as client,
                asyncio.timeout(self.timeout + params.DEADLINE_GRACE_SECONDS),
            ):
                token = await fetch(client)
        except _StillPending:
            return result("pending", detail="the peer is still searching")
        except _Forgotten:
            return result(
                "expired",
                detail="the peer holds no reply for it (kept for a limited time, and in memory "
                "only): it cannot be fetched any more",
            )
        except UntrustedPeerError as exc:
            return result(
                "untrusted_peer", detail=f"{refused_certificate(exc.reason)}; nothing was sent"
            )
        except httpx.PoolTimeout:
            detail = (
                f"no connection to it free within {self.timeout:g} s: "
                f"{params.MAX_CONNECTIONS_PER_PEER} queries to it are still out"
            )
            return result("timeout", detail=detail)
        except (TimeoutError, httpx.TimeoutException):
            return result("timeout", detail=f"no answer within {self.timeout:g} s")
        except (httpx.ConnectError, ssl.SSLError) as exc:
            return result("unreachable", detail=f"{type(exc).__name__}: {exc}"[:200])
        except httpx.HTTPStatusError as exc:
            return result("http_error", detail=_error_detail(exc.response))
        # From here on a message may quote what the peer sent (a protocol error its bytes, an
        # invalid URL its Location): the detail, which reaches the officer and the exchange
        # log, names the error only.
        except httpx.HTTPError as exc:
            return result("unreachable", detail=type(exc).__name__)
        except httpx.InvalidURL as exc:
            return result("invalid_reply", detail=type(exc).__name__)
        except InvalidReplyError as exc:  # the peer's 202 or body; messages of our own
            return result("invalid_reply", detail=f"InvalidReplyError: {exc}")
        except Exception as exc:  # one peer's failure must not sink the others
            log.error("exchange with %s failed: %s", peer.country, type(exc).__name__)
            return result("failed", detail=f"exchange failed on this node ({type(exc).__name__})")
        try:
            reply = self._check_reply(token, peer, query)
        except InvalidReplyError as exc:
            return result("invalid_reply", detail=f"InvalidReplyError: {exc}")
        except (CertsError, ValidationError, ValueError) as exc:  # their messages may quote
            # the token (a certificate's subject before it is validated, a payload value)
            reason = getattr(exc, "reason", None) or type(exc).__name__
            return result("invalid_reply", detail=str(reason))
        except Exception as exc:  # as above
            log.error("reply of %s failed to verify: %s", peer.country, type(exc).__name__)
            return result("invalid_reply", detail=f"reply not verifiable ({type(exc).__name__})")
        return result("answered", reply=reply, token=token)

    async def _post_and_poll(
        self,
        client: httpx.AsyncClient,
        peer: Peer,
        token: str,
        accepted: _Accepted | None = None,
    ) -> str:
        root = peer.url.rstrip("/")
        base = httpx.URL(root)
        check = {"trace": server_check(self.trust, peer.country)}
        response = await bounded_request(
            client,
            "POST",
            httpx.URL(root + QUERY_PATH),
            content=token,
            headers={"Content-Type": JOSE, "Accept": JOSE},
            extensions=check,
        )
        delay = params.POLL_FIRST_DELAY
        while response.status_code == 202:
            location = response.headers.get("Location")
            if not location:
                raise httpx.HTTPStatusError(
                    "202 without Location", request=response.request, response=response
                )
            # A path is under the peer's base URL (which may carry a proxy's path prefix).
            status_url = httpx.URL(root + location if location.startswith("/") else location)
            if (status_url.scheme, status_url.host, status_url.port) != (
                base.scheme,
                base.host,
                base.port,
            ):
                raise InvalidReplyError("202 points to another origin")
            if accepted is not None:
                accepted.offered(status_url)
            await asyncio.sleep(delay)
            delay = min(delay * params.POLL_BACKOFF, params.POLL_MAX_DELAY)
            response = await bounded_request(
                client, "GET", status_url, headers={"Accept": JOSE}, extensions=check
            )
        response.raise_for_status()
        return response.text

    async def _poll_once(self, client: httpx.AsyncClient, peer: Peer, status_url: str) -> str:
        """The reply at ``status_url``, asked once (a late poll)."""
        check = {"trace": server_check(self.trust, peer.country)}
        response = await bounded_request(
            client, "GET", httpx.URL(status_url), headers={"Accept": JOSE}, extensions=check
        )
        if response.status_code == 202:
            raise _StillPending
        if response.status_code == 404 and _error_code(response) == "unknown_query":
            raise _Forgotten
        response.raise_for_status()
        return response.text

    def _check_reply(self, token: str, peer: Peer, query: Asked) -> ReplyPayload:
        verified = jws.verify(
            token, self.trust, expected_country=peer.country, typ=params.REPLY_TYP
        )
        reply = ReplyPayload.from_wire(verified.payload)
        if reply.query_id != query.query_id:
            raise InvalidReplyError("the reply answers another query")
        if reply.requester != self.country or reply.responder != peer.country:
            raise InvalidReplyError("the reply is addressed to another node")
        # Made after the query and before now, give or take the clocks' accepted difference:
        # the reply's time goes into the exchange log as the peer's answer time.
        earliest = query.created - self.clock_window
        if not earliest <= reply.created <= datetime.now(UTC) + self.clock_window:
            raise InvalidReplyError("the reply's time is outside the accepted clock difference")
        return reply


def _cancelled(peer: Peer, query_id: str, elapsed_ms: float, status_url: str | None) -> PeerResult:
    """The result of a query still out when this node stopped waiting (it is stopping, or the
    caller went away); with the peer's status URL when it had accepted the query (202)."""
    detail = "this node stopped waiting before the peer answered"
    if status_url is not None:
        detail = f"{detail}; {_POLL_LATER}"
    return PeerResult(
        peer.country, query_id, "cancelled", elapsed_ms, detail=detail, status_url=status_url
    )


async def bounded_request(
    client: httpx.AsyncClient, method: str, url: httpx.URL, **kwargs: Any
) -> httpx.Response:
    """The response to one request with its body read up to ``params.MAX_REPLY_BYTES``
    (a reply is a few kilobytes; a peer sending more is refused, not buffered). The body is
    asked for uncompressed and read raw; a peer (or a proxy before it) that compresses it
    anyway may use one gzip or deflate layer, inflated here under the same bound, so a few
    kilobytes that inflate to gigabytes are refused at the bound, not inflated in memory on
    the event loop. The rebuilt response holds no content encoding to undo a second time."""
    headers = {**kwargs.pop("headers", {}), "Accept-Encoding": "identity"}
    async with client.stream(method, url, headers=headers, **kwargs) as streamed:
        body = _Body(streamed.headers.get("Content-Encoding", ""))
        async for chunk in streamed.aiter_raw():
            body.feed(chunk)
        content = body.finish()
    kept = {k: v for k, v in streamed.headers.items() if k.lower() != "content-encoding"}
    return httpx.Response(
        streamed.status_code,
        headers=kept,
        content=content,
        request=streamed.request,
    )


class _Body:
    """A reply body read raw, decoded (one gzip or deflate layer at most) and bounded."""

    def __init__(self, encoding: str) -> None:
        coding = encoding.strip().lower()
        if coding not in _CODINGS:
            raise InvalidReplyError("reply in a content encoding that was not asked for")
        self.inflate = zlib.decompressobj(_CODINGS[coding]) if _CODINGS[coding] else None
        self.raw = 0
        self.out = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.raw += len(chunk)
        if self.inflate is None:
            self.out += chunk
        else:
            room = params.MAX_REPLY_BYTES + 1 - len(self.out)
            try:  # at most ``room`` bytes out: what is left stays in unconsumed_tail
                self.out += self.inflate.decompress(self.inflate.unconsumed_tail + chunk, room)
            except zlib.error:
                raise InvalidReplyError("reply body does not decode") from None
        if max(self.raw, len(self.out)) > params.MAX_REPLY_BYTES:
            raise InvalidReplyError(f"reply larger than {params.MAX_REPLY_BYTES} bytes")

    def finish(self) -> bytes:
        if self.inflate is not None and not (self.inflate.eof and not self.inflate.unused_data):
            raise InvalidReplyError("reply body does not decode")
        return bytes(self.out)


#: Content-Encoding -> zlib ``wbits`` (0: none). 15 + 32 reads a zlib or a gzip header; HTTP's
#: "deflate" is zlib-wrapped (RFC 9110 8.4.1.2). Anything else, layers included, is refused.
_CODINGS = {"": 0, "identity": 0, "gzip": 15 + 16, "x-gzip": 15 + 16, "deflate": 15 + 32}


def _error_detail(response: httpx.Response) -> str:
    """The status and the peer's error code: not its free text, which would reach the officer
    and the append-only exchange log whatever it holds (a peer may echo the probe)."""
    error = _error_code(response)
    return f"HTTP {response.status_code} {error}" if error else f"HTTP {response.status_code}"


def _error_code(response: httpx.Response) -> str | None:
    """The error code of a peer's JSON error body, when it is one (a short snake_case word)."""
    try:
        body = response.json()
    except (ValueError, RecursionError):  # not JSON; nested past the parser's depth
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str) and _ERROR_CODE.fullmatch(error):
        return error
    return None


#: Said with a result that keeps the peer's status URL.
_POLL_LATER = (
    "the peer accepted the query and keeps its reply for a while: fetch it later "
    "(bdx queries poll, POST /queries/{query_id}/poll)"
)


_ERROR_CODE = re.compile(r"[a-z_]{1,64}")
