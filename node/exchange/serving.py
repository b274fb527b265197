"""Serving a node with its peer listener: two uvicorn servers, one app, one process.

Officers and operators call the node API on ``port`` with bearer tokens (server-only TLS, as
before); peer nodes call ``peer_port`` with **mutual TLS** (``ssl_cert_reqs=CERT_REQUIRED``, the
region's root as the client CA, :class:`~certs.pki.asgi.PeerCertH11Protocol` so the router
sees the client certificate). A separate listener keeps officers' clients free of
certificates while no peer request is ever accepted without one; the peer routes also refuse
any request that arrives without a validated client certificate, so the API port cannot be
used to reach them. The peer listener serves the peer routes only (404 for any other path):
it is the port opened to the whole region, and the officers', operators' and auditors' API
must not be reachable through it with a leaked token. Only the API server runs the app's
lifespan (start-up builds the exchange); both stop on the first SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Generator
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from certs.pki.asgi import PeerCertH11Protocol
from certs.pki.credentials import NodeCredentials
from node.api.errors import error_response
from node.exchange.router import router as peer_router
from node.settings import Settings

#: Longest wait at shutdown for requests in progress, on both listeners (a search answers
#: within the peers' 30 s deadline; an idle or stalled connection must not hold the node up).
GRACEFUL_SHUTDOWN_S = 10


def peer_config(
    app: FastAPI, settings: Settings, creds: NodeCredentials, **extra: Any
) -> uvicorn.Config:
    """The mutual-TLS peer listener's config (no lifespan: the API server runs it). Each
    handshake presents the certificate the running exchange holds (:class:`_PeerConfig`)."""
    options: dict[str, Any] = {
        "host": settings.peer_host or settings.host,
        "port": settings.peer_port,
        "http": PeerCertH11Protocol,
        "lifespan": "off",
        "server_header": False,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
        **creds.uvicorn_options(),
        **extra,
    }
    return _PeerConfig(app, PeerRoutesOnly(app), **options)


class _PeerConfig(uvicorn.Config):
    """The peer listener's config. uvicorn builds its TLS context once, from the files, as
    the listener starts; its ``sni_callback`` (called at every handshake, SNI or not) hands
    each new connection the server context of the pair ``app``'s exchange holds now, so a
    renewed certificate is presented from the next handshake on, without a restart
    (:mod:`node.exchange.renewal`). Before the exchange is built, the files' context serves."""

    def __init__(self, node: FastAPI, app: ASGIApp, **options: Any) -> None:
        super().__init__(app, **options)
        self.node = node

    def load(self) -> None:
        super().load()
        if self.ssl is not None:
            self.ssl.sni_callback = self._held_pair

    def _held_pair(
        self, conn: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, ctx: ssl.SSLContext
    ) -> None:
        exchange = getattr(self.node.state, "exchange", None)
        held = exchange.credentials.server_context() if exchange is not None else ctx
        if held is not ctx:
            conn.context = held


class PeerRoutesOnly:
    """The peer listener's ASGI app: ``app`` for paths under the peer routes' prefix, 404
    for any other (the API's routes, its docs and schema included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.prefix = peer_router.prefix + "/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(self.prefix):
            detail = "not a peer route; the node's API listens on its own port"
            await error_response(404, "not_found", detail)(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)


class _QuietServer(uvicorn.Server):
    """A server that leaves signal handling to its partner."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class _LinkedServer(uvicorn.Server):
    """A server whose exit also stops ``partner``."""

    def __init__(self, config: uvicorn.Config, partner: uvicorn.Server) -> None:
        super().__init__(config)
        self.partner = partner

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.partner.should_exit = True
        super().handle_exit(sig, frame)


#: How often :meth:`ServerPair.serve` looks whether the API has started: a start takes
#: seconds, so a 50 ms look costs nothing and delays the peer listener by at most that.
STARTED_POLL_S = 0.05


class ServerPair:
    """The API and peer servers of one node; :meth:`serve` runs both until either stops."""

    def __init__(self, api: uvicorn.Config, peer: uvicorn.Config) -> None:
        self.peer = _QuietServer(peer)
        self.api = _LinkedServer(api, self.peer)

    @property
    def started(self) -> bool:
        return bool(self.api.started and self.peer.started)

    def stop(self) -> None:
        self.api.should_exit = self.peer.should_exit = True

    async def serve(self) -> None:
        """Serve both; the peer listener opens once the API has started, i.e. once the app's
        start-up (its exchange, galleries and search pool) is done. Opened at once, it
        answered every peer 503 "no exchange set up" with an ERROR line each during a start
        that can take tens of seconds; not listening yet, it is a peer that is not up yet."""
        api = asyncio.create_task(self.api.serve())
        while not self.api.started and not api.done():
            await asyncio.sleep(STARTED_POLL_S)
        tasks = [api]
        if not api.done():
            tasks.append(asyncio.create_task(self.peer.serve()))
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        self.stop()
        await asyncio.gather(*tasks)


async def serve_pair(api: uvicorn.Config, peer: uvicorn.Config) -> None:
    """Run the API and the peer servers until either stops (or a signal stops both)."""
    await ServerPair(api, peer).serve()
