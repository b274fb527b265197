"""``bdx serve``: run the node's HTTP API under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Annotated, Any

import typer
import uvicorn

from matcher.gallery.files import WriterLock
from node.api import access
from node.api.app import create_app
from node.cli._common import ConfigOption
from node.errors import ConfigError
from node.exchange.serving import GRACEFUL_SHUTDOWN_S, peer_config, serve_pair
from node.exchange.setup import load_credentials
from node.hardening import no_core_dumps
from node.settings import Settings, load_settings


def serve(
    host: Annotated[str | None, typer.Option(help="address to bind (default: settings)")] = None,
    port: Annotated[int | None, typer.Option(help="port to bind (default: settings)")] = None,
    config: ConfigOption = None,
) -> None:
    """Serve the node API (TLS when tls_cert_file/tls_key_file are set; required in production)
    and, when pki_dir and policy_file are set, the mutual-TLS peer listener on peer_port."""
    no_core_dumps()  # before any probe, image or key is in memory (node.hardening)
    overrides: dict[str, Any] = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = load_settings(config, **overrides)
    # Every configuration error is one line (exit 2) here, before anything listens: uvicorn
    # reports its own as tracebacks, and the peer listener took connections meanwhile.
    _check_free(settings)
    if settings.gallery_path.is_dir():  # another node serving this data_dir: one line, exit 7
        WriterLock(settings.gallery_path).release()  # (uvicorn's start-up failure: tracebacks)
    app = create_app(settings)
    log_level = "debug" if settings.debug else "info"
    access.to_stderr()
    if not settings.exchange_enabled:
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            ssl_certfile=settings.tls_cert_file,
            ssl_keyfile=settings.tls_key_file,
            log_level=log_level,
            server_header=False,
            access_log=False,  # node.api.access logs route templates, not subject ids
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        return
    # With PKI: the API on `port` and the mutual-TLS peer listener on `peer_port`
    # (node.exchange.serving explains why two listeners).
    api = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ssl_certfile=settings.tls_cert_file,
        ssl_keyfile=settings.tls_key_file,
        log_level=log_level,
        server_header=False,
        access_log=False,  # node.api.access logs route templates, not subject ids
        # a client stalled mid-request must not keep SIGTERM from stopping the node
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    peer = peer_config(
        app, settings, load_credentials(settings), log_level=log_level, access_log=False
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_pair(api, peer))


def _check_free(settings: Settings) -> None:
    """Refuse, with one line, a port this node cannot listen on (taken, privileged, an address
    not of this host, the API's own), before start-up work; uvicorn would print tracebacks."""
    with _bound(settings.host, settings.port):  # held while the peer listener's is tried
        if settings.exchange_enabled:
            _bound(settings.peer_host or settings.host, settings.peer_port).close()


def _bound(host: str, port: int) -> contextlib.ExitStack:
    """Sockets listening on every address of ``host:port``, as uvicorn (asyncio) will bind
    them; raises ConfigError when one cannot."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}", reason="port_unavailable"
        ) from None
    held = contextlib.ExitStack()
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):  # as asyncio: distinct
            probe = held.enter_context(socket.socket(family, kind, proto))
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio binds
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind(address)
            probe.listen()  # so that a second bind of the address fails, as uvicorn's would
    except OSError as exc:
        held.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}", reason="port_unavailable"
        ) from None
    return held
