"""What a peer signs on request, apart from a query's reply: the pieces its kinds share.

A node asks a peer on its peer port (mutual TLS) ``GET /peer/v1/...?nonce=N`` for something
the peer signs for it: its terms (:mod:`node.exchange.terms`), the outcome of a hit it gave
(:mod:`node.exchange.outcomes`). Each kind is a compact JWS with a ``typ`` of its own (no
kind passes for another, nor for a query or a reply) over the canonical JSON of a versioned
payload naming the responder, the requester, the requester's nonce echoed and when it was
issued. :func:`get_signed` fetches one (the server's certificate validated against the trust
list and CRL as the connection opens, as for queries); :func:`verify_signed` verifies it as
replies are verified (trust list, CRL, the peer's country), parses its payload strictly
(a refusal never repeats the peer's text: pydantic's first line only, the count of errors),
and checks that it is addressed to this node by that peer, echoes the nonce sent and was
issued within the accepted clock difference (``replay_window_s``). Their errors: a refused
signature, the certificate's :class:`~certs.errors.CertsError`; a payload that is not of the
kind, :class:`~certs.pki.errors.MessageRefused` (``malformed``, ``wrong_recipient``); a nonce
not echoed or a stale answer, :class:`~node.exchange.replay.ReplayError`
(``nonce_mismatch``, ``stale_message``); a peer that cannot be asked, :class:`PeerError` with
the requester's status words as reason (``unreachable``, ``timeout``, ``untrusted_peer``,
``http_error``, ``invalid_reply``).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import ValidationError

from certs import jws
from certs.pki import reasons
from certs.pki.errors import MessageRefused
from certs.pki.validate import TrustAnchors
from node.errors import PeerError
from node.exchange.replay import ReplayError
from node.exchange.requester import (
    JOSE,
    Peer,
    Requester,
    UntrustedPeerError,
    _error_detail,
    bounded_request,
    refused_certificate,
    server_check,
)
from node.exchange.requester import InvalidReplyError as _InvalidBody

#: A requester's nonce: as a query's (16 random bytes in base64url by ``new_nonce``).
NONCE_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"
#: Times in a signed payload: UTC, microseconds, ``Z`` (canonical JSON has no floats).
WIRE_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def utc(value: datetime) -> datetime:
    """``value`` in UTC; a time without a zone, or out of range once in UTC, is refused."""
    if value.tzinfo is None:
        raise ValueError("times must carry a time zone (UTC)")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("time out of range") from None


class SignedAnswer(Protocol):
    """What every signed answer's payload names."""

    @property
    def responder(self) -> str: ...

    @property
    def requester(self) -> str: ...

    @property
    def nonce(self) -> str: ...

    @property
    def issued_at(self) -> datetime: ...


A = TypeVar("A", bound=SignedAnswer)


def verify_signed(
    token: str,
    trust: TrustAnchors,
    *,
    typ: str,
    parse: Callable[[dict[str, Any]], A],
    kind: str,
    peer: str,
    own: str,
    nonce: str,
    window: timedelta,
    now: datetime | None = None,
) -> A:
    """Verify ``peer``'s answer of ``typ`` to this node (``own``) for ``nonce``, its payload
    parsed by ``parse`` (``kind`` names it in the errors; module docstring)."""
    verified = jws.verify(token, trust, expected_country=peer, typ=typ)
    try:
        payload = parse(verified.payload)
    except (ValidationError, ValueError) as exc:
        detail = str(exc).splitlines()[0]
        raise MessageRefused(
            f"the signed payload is not {kind}: {detail}", reason=reasons.MALFORMED
        ) from None
    if payload.responder != peer or payload.requester != own:
        raise MessageRefused(f"the {kind} is addressed to another node", reason="wrong_recipient")
    if payload.nonce != nonce:
        raise ReplayError(f"the {kind} does not echo the nonce sent", reason="nonce_mismatch")
    at = now or datetime.now(UTC)
    if abs(at - payload.issued_at) > window:
        raise ReplayError(
            f"the {kind} issued {payload.issued_at.isoformat()} is outside the accepted clock "
            f"difference of {int(window.total_seconds())} s",
            reason="stale_message",
        )
    return payload


async def get_signed(requester: Requester, peer: Peer, path: str, nonce: str) -> str:
    """The body of ``peer``'s answer at ``path`` (under its base URL) for ``nonce``, or
    :class:`PeerError` with the requester's status words."""
    url = httpx.URL(peer.url.rstrip("/") + path, params={"nonce": nonce})
    check = {"trace": server_check(requester.trust, peer.country)}
    try:
        async with httpx.AsyncClient(verify=requester.tls, timeout=requester.timeout) as client:
            response = await bounded_request(
                client, "GET", url, headers={"Accept": JOSE}, extensions=check
            )
    except UntrustedPeerError as exc:
        raise PeerError(
            f"{peer.country}: {refused_certificate(exc.reason)}; nothing was sent",
            reason="untrusted_peer",
        ) from None
    except httpx.TimeoutException:
        raise PeerError(
            f"{peer.country} did not answer within {requester.timeout:g} s", reason="timeout"
        ) from None
    except (httpx.HTTPError, ssl.SSLError) as exc:
        raise PeerError(
            f"cannot reach {peer.country}: {type(exc).__name__}", reason="unreachable"
        ) from None
    except _InvalidBody as exc:
        raise PeerError(f"{peer.country} answered badly: {exc}", reason="invalid_reply") from None
    if response.status_code != 200:
        # The status and the peer's error code only: its free text is not repeated.
        raise PeerError(f"{peer.country} answered {_error_detail(response)}", reason="http_error")
    try:
        return response.content.decode("ascii").strip()
    except UnicodeDecodeError:
        raise PeerError(
            f"{peer.country} answered something other than a JWS", reason="invalid_reply"
        ) from None
