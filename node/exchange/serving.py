"""Serving a node with its peer listener: two uvicorn servers, one app, one process.

Officers and operators call the node API on ``port`` with bearer tokens (server-only TLS, as
before); peer nodes call ``peer_port`` with **mutual TLS** (``ssl_cert_reqs=CERT_REQUIRED``, the
region's root as the client CA, :class:`~certs.pki.asgi.PeerCertH11Protocol` so the router
sees the client certificate). A separate listener keeps officers' clients free of
certificates while no peer request is ever accepted without one; the peer routes also refuse
any request that arrives without a validated client certificate, so the API port cannot be
used to reach them. The peer listener serves the peer routes only, and their own OpenAPI
schema at ``/openapi.json`` (the API port's lists the other routes; 404 for any other path):
it is the port opened to the whole region, and the officers', operators' and auditors' API
must not be reachable through it with a leaked token. Only the API server runs the app's
lifespan (start-up builds the exchange); both stop, in order, on the first SIGINT/SIGTERM
(:class:`ServerPair`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import threading
from collections.abc import Generator
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from certs.pki.asgi import PeerCertH11Protocol
from certs.pki.credentials import NodeCredentials
from node.api.access import AccessLog
from node.api.app import SecurityHeaders
from node.api.errors import error_response
from node.exchange.admission import NODE_STOPPING, PeerWork
from node.exchange.responder import Responder
from node.exchange.router import SCHEMA_PATH as PEER_SCHEMA_PATH
from node.exchange.router import router as peer_router
from node.settings import Settings

log = logging.getLogger(__name__)

#: Longest wait at shutdown for requests in progress, on both listeners (a search answers
#: within the peers' 30 s deadline; an idle or stalled connection must not hold the node up).
GRACEFUL_SHUTDOWN_S = 10
#: Where each port serves the OpenAPI schema of its own routes.
SCHEMA_PATH = "/openapi.json"


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
    """The peer listener's ASGI app: ``app`` for paths under the peer routes' prefix, and its
    own OpenAPI schema at ``/openapi.json`` (the peer routes only:
    :func:`node.api.app.port_schema`), the app's peer route
    :data:`node.exchange.router.SCHEMA_PATH` under the prefix, so it passes the same
    middleware and certificate checks as the others; 404 for any other path (the API's
    routes and docs)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.prefix = peer_router.prefix + "/"
        detail = "not a peer route; the node's API listens on its own port"
        hsts = app.state.settings.environment == "production"
        # Answered here, outside the app: wrapped in the app's own headers and access log.
        self.not_found: ASGIApp = AccessLog(
            SecurityHeaders(error_response(404, "not_found", detail), hsts=hsts)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == SCHEMA_PATH and scope["method"] == "GET":
            # The peer routes' own schema route: the app's middleware and the certificate
            # checks of every peer route (a revoked or untrusted member is refused it).
            path = peer_router.prefix + PEER_SCHEMA_PATH
            scope = {**scope, "path": path, "raw_path": path.encode("ascii")}
        if scope["type"] == "http" and not scope["path"].startswith(self.prefix):
            await self.not_found(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)


class _QuietServer(uvicorn.Server):
    """A server that leaves signal handling to its :class:`ServerPair`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _abort_connections(server: uvicorn.Server) -> None:
    """Close the connections ``server`` still holds after its graceful shutdown: uvicorn asks
    each to close and waits ``GRACEFUL_SHUTDOWN_S`` for them, then goes on and leaves a TLS
    connection whose peer never answered the close open (its transport outlived the loop)."""
    for connection in list(server.server_state.connections):
        transport = getattr(connection, "transport", None)
        if transport is not None:
            transport.abort()


#: How often :meth:`ServerPair.serve` looks whether the API has started, or a stop was asked
#: for: a start takes seconds, so a 50 ms look costs nothing.
STARTED_POLL_S = 0.05
#: Signals that stop a node: the first stops it in order (below), a second forces it.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ServerPair:
    """The API and peer servers of one node; :meth:`serve` runs both until either stops, a
    signal or :meth:`stop` stops them.

    A stop goes in order: the peer listener stops taking connections and finishes the
    requests it holds, then the peer threads finish the queries they run, then the API server
    does the same and runs the app's shutdown (which tears the exchange and the search pool
    down). uvicorn handled the signals on the API server alone: its shutdown tore the exchange
    down under the peer listener's queries (unreachable or search_unavailable at the peers,
    a quota unit charged without its events), and it then re-raised the signal, so SIGTERM
    killed the process before the peer listener's graceful wait and the galleries' close."""

    def __init__(self, api: uvicorn.Config, peer: uvicorn.Config) -> None:
        self.peer = _QuietServer(peer)
        self.api = _QuietServer(api)
        self._stop_asked = False

    @property
    def started(self) -> bool:
        return bool(self.api.started and self.peer.started)

    def stop(self) -> None:
        """Ask for the orderly stop (any thread)."""
        self._stop_asked = True

    def _signalled(self) -> None:
        if self._stop_asked:  # the second signal: stop now, waiting for nothing
            for server in (self.api, self.peer):
                server.force_exit = server.should_exit = True
        self._stop_asked = True

    async def serve(self) -> None:
        """Serve both; the peer listener opens once the API has started, i.e. once the app's
        start-up (its exchange, galleries and search pool) is done. Opened at once, it
        answered every peer 503 "no exchange set up" with an ERROR line each during a start
        that can take tens of seconds; not listening yet, it is a peer that is not up yet."""
        with self._signals():
            state = getattr(getattr(self.peer.config, "node", None), "state", None)
            work: PeerWork | None = getattr(state, "peer_work", None)
            if work is not None and work.closed:  # an earlier serve's: this one takes peers
                state.peer_work = None  # type: ignore[union-attr]
            api = asyncio.create_task(self.api.serve())
            while not self.api.started and not api.done():
                if self._stop_asked:
                    self.api.should_exit = True  # after its start-up, which cannot be cut
                await asyncio.sleep(STARTED_POLL_S)
            if api.done() or self._stop_asked:
                self.api.should_exit = True
                await api
                return
            peer = asyncio.create_task(self.peer.serve())
            while not (api.done() or peer.done() or self._stop_asked):
                await asyncio.sleep(STARTED_POLL_S)
            self.peer.should_exit = True
            await asyncio.wait([peer])  # its requests answered (GRACEFUL_SHUTDOWN_S at most)
            _abort_connections(self.peer)
            await self._finish_peer_work()
            self.api.should_exit = True
            await asyncio.wait([api])
            _abort_connections(self.api)
            await asyncio.gather(api, peer)

    async def _finish_peer_work(self) -> None:
        """Wait (``GRACEFUL_SHUTDOWN_S`` at most) for the queries the peer threads run, the
        ones answered 202 included, so each ends with its log events before the exchange is
        torn down. The closed :class:`PeerWork` stays in the app's state: a request that still
        reaches the peer route is answered 503 ``node_stopping`` (cleared, it made a new pool
        that nothing shut down); the next start makes a new one.

        The queries still waiting for their peer's share of the threads are not run: the
        listener is closed, their replies could never be delivered. They are dropped on
        record (:meth:`_report_dropped`); handed to the executor shut down, each was lost
        without a word."""
        node = getattr(self.peer.config, "node", None)
        state = getattr(node, "state", None)
        executor = getattr(state, "peer_executor", None)
        if executor is None:
            return
        work: PeerWork | None = getattr(state, "peer_work", None)
        dropped = work.close() if work is not None else {}
        state.peer_executor = None  # type: ignore[union-attr]
        if dropped:
            await self._report_dropped(state, dropped)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.to_thread(executor.shutdown), GRACEFUL_SHUTDOWN_S)

    @staticmethod
    async def _report_dropped(state: Any, dropped: dict[str, int]) -> None:
        """A WARNING and one ``queries_dropped`` event per peer (reason ``node_stopping``) in
        the exchange log for the queries :meth:`PeerWork.close` dropped, ``dropped`` by peer."""
        counts = ", ".join(f"{peer}: {count}" for peer, count in sorted(dropped.items()))
        log.warning(
            "node stopping: %d peer queries dropped unanswered, still waiting for a peer "
            "thread (%s)",
            sum(dropped.values()),
            counts,
        )
        responder: Responder | None = getattr(state, "responder", None)
        if responder is None:
            log.error("queries_dropped not logged: no exchange set up (%s)", counts)
            return
        try:
            await asyncio.to_thread(responder.record_dropped, dropped, NODE_STOPPING)
        except Exception:  # the node stops all the same; the WARNING above stays
            log.exception("queries_dropped not logged (%s)", counts)

    @contextlib.contextmanager
    def _signals(self) -> Generator[None, None, None]:
        """SIGINT and SIGTERM stop the pair (:meth:`_signalled`) while it serves, in the main
        thread (tests serve pairs in other threads and stop them with :meth:`stop`)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._signalled)
        try:
            yield
        finally:
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)


async def serve_pair(api: uvicorn.Config, peer: uvicorn.Config) -> None:
    """Run the API and the peer servers until either stops (or a signal stops both)."""
    await ServerPair(api, peer).serve()
