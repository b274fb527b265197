"""Expose the peer's TLS certificate to ASGI apps served by uvicorn.

uvicorn does not fill the ASGI TLS extension, so an app cannot see which client certificate a
mutual-TLS connection presented. :class:`PeerCertH11Protocol` (pass ``http=PeerCertH11Protocol``
to ``uvicorn.Config``/``uvicorn.run``) adds, per the ASGI TLS extension,
``scope["extensions"]["tls"] = {"client_cert_chain": [<PEM>], "client_cert_der": <bytes>,
"tls_version": ..., "cipher_suite": ...}``; :func:`peer_der` reads it back for
:func:`certs.pki.tls.peer_identity`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


def _tls_extension(ssl_object: ssl.SSLObject | None) -> dict[str, Any]:
    if ssl_object is None:
        return {}
    der = ssl_object.getpeercert(binary_form=True)
    cipher = ssl_object.cipher()
    return {
        "client_cert_der": der,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "tls_version": ssl_object.version(),
        "cipher_suite": cipher[0] if cipher else None,
    }


class PeerCertH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, adding the peer certificate to every request's scope."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        tls = _tls_extension(transport.get_extra_info("ssl_object"))
        inner: ASGIApp = self.app

        async def with_tls(scope: Scope, receive: Any, send: Any) -> None:
            scope.setdefault("extensions", {})["tls"] = tls
            await inner(scope, receive, send)

        self.app = with_tls


def peer_der(scope: Scope) -> bytes | None:
    """The DER client certificate of the request's connection, or ``None``."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    der = tls.get("client_cert_der")
    return der if isinstance(der, bytes) else None
