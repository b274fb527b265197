"""``bdx serve``: run the node's HTTP API under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import ssl
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI

from certs.pki.credentials import NodeCredentials
from certs.pki.params import MAX_PEM_FILE_BYTES
from matcher.gallery.files import WriterLock
from matcher.readfile import FileTooLargeError, read_bounded
from matcher.workers import PARENT_IGNORES_CTRL_C
from node.api import access
from node.api.app import check_stores, create_app
from node.cli._client import TOKEN_ENV, TOKEN_FILE_ENV
from node.cli._common import ConfigOption
from node.errors import ConfigError
from node.exchange.serving import GRACEFUL_SHUTDOWN_S, peer_config, serve_pair
from node.exchange.setup import check_exchange, load_credentials
from node.hardening import no_core_dumps
from node.logtext import LogFormatter
from node.services.galleries import GallerySet
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
    _check_api_tls(settings)
    _check_free(settings)
    if settings.gallery_path.is_dir():  # another node serving this data_dir: one line, exit 7
        WriterLock(settings.gallery_path).release()  # (uvicorn's start-up failure: tracebacks)
    # Stale PKI documents or an expired certificate of this node's do not stop the API: the
    # peer exchange refuses meanwhile, and says why (ERROR at start, /health, officers' results).
    creds = load_credentials(settings, check=False) if settings.exchange_enabled else None
    if creds is not None:
        check_exchange(settings, creds)
    app = create_app(settings, open_gallery=False)  # the galleries: opened below
    _warn_if_exposed(settings)
    _warn_unknown_variables()
    # The galleries are opened and every file's checksum verified before anything listens: a
    # damaged gallery is one line (exit 7); opened in the app's lifespan, it was uvicorn's
    # traceback (75-98 lines, exit 3) while `bdx gallery load` said it in one line.
    with GallerySet.open(settings.gallery_path) as galleries:
        app.state.gallery = galleries
        check_stores(app)  # a gallery missing for the database's records: one line too
        _run(app, settings, creds)


def _run(app: FastAPI, settings: Settings, creds: NodeCredentials | None) -> None:
    """Serve ``app`` under uvicorn until a signal stops it."""
    log_level = "debug" if settings.debug else "info"
    access.to_stderr()
    _node_log_to_stderr(logging.DEBUG if settings.debug else logging.INFO)
    if creds is None:
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
    peer = peer_config(app, settings, creds, log_level=log_level, access_log=False)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_pair(api, peer))


def _node_log_to_stderr(level: int) -> None:
    """The node's own lines from ``level`` (INFO, DEBUG with ``debug``) on stderr with their
    level, as uvicorn writes its own (``ERROR:    ...``): Python's last-resort handler printed
    WARNING and ERROR lines as the message alone, so an ERROR such as "this node's CRL ... is
    stale" read like any other line, and dropped the INFO lines that say it is over ("...
    in order again", "renewed certificates in use")."""
    node = logging.getLogger("node")
    node.setLevel(level)
    if not any(getattr(h, "_bdx_node", False) for h in node.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(LogFormatter("%(levelprefix)s %(message)s", use_colors=False))
        handler._bdx_node = True  # type: ignore[attr-defined]
        node.addHandler(handler)


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


def _check_api_tls(settings: Settings) -> None:
    """Load the API's certificate and key as uvicorn will: a missing, unreadable or unparsable
    file, an encrypted key or another certificate's key is one line (exit 2); uvicorn printed
    some 60 lines of traceback (exit 1). The settings set both files or neither."""
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if cert is None or key is None:
        return
    problem = _pem_problem(_read("tls_cert_file", cert), _read("tls_key_file", key))
    if problem is None:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            mismatch = exc.reason == "KEY_VALUES_MISMATCH"
            problem = (
                "tls_key_file is not the key of tls_cert_file"
                if mismatch
                else f"OpenSSL refused them ({exc.reason or exc.strerror})"
            )
    if problem is not None:
        raise ConfigError(f"cannot serve TLS with {cert} and {key}: {problem}", reason="bad_tls")


def _read(name: str, path: Path) -> bytes:
    """``path``'s bytes, read as the PKI reads a certificate or key (a FIFO refused at once,
    not waited on; at most ``MAX_PEM_FILE_BYTES``, ``file_too_large`` beyond: /dev/zero)."""
    try:
        return read_bounded(path, MAX_PEM_FILE_BYTES)
    except FileTooLargeError as exc:
        raise ConfigError(
            f"cannot read {name} {path}: {exc.strerror}", reason="file_too_large"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read {name} {path}: {exc.strerror or type(exc).__name__}", reason="bad_tls"
        ) from None


def _pem_problem(cert_pem: bytes, key_pem: bytes) -> str | None:
    """What is wrong with a PEM certificate (chain) and private key, or ``None``."""
    try:
        x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        return "tls_cert_file is not a PEM certificate"
    try:
        serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        return "tls_key_file is encrypted (bdx serve has no passphrase for it)"
    except (ValueError, UnsupportedAlgorithm):
        return "tls_key_file is not a PEM private key"
    return None


def _warn_if_exposed(settings: Settings) -> None:
    """One line on stderr when a development node's API is plain HTTP beyond loopback: tokens
    and probes would cross the network in clear (production refuses it)."""
    if settings.tls_cert_file is not None or _loopback(settings.host):
        return
    print(
        f"bdx: warning: the API listens on {settings.host} without TLS: tokens and images "
        "cross the network in clear (set tls_cert_file and tls_key_file)",
        file=sys.stderr,
    )


#: BDX_* variables that are not settings but are read elsewhere (the CLI clients' token and
#: token file, the config file, the test database, the load's worker signal). Not
#: BDX_POLICY: ``bdx policy`` reads the ``policy_file`` setting's BDX_POLICY_FILE, that old
#: name only in its absence, and the node never read it, so a node's environment holding it
#: is named like a misspelt setting.
OTHER_VARIABLES = frozenset(
    {"BDX_CONFIG", TOKEN_ENV, TOKEN_FILE_ENV, "BDX_TEST_DATABASE_URL", PARENT_IGNORES_CTRL_C}
)


def _warn_unknown_variables() -> None:
    """One line on stderr naming BDX_* variables that no setting reads (a misspelt
    ``BDX_ENVIRONMNET=production`` would otherwise start a development node without a word);
    names only, never values."""
    known = {f"BDX_{name.upper()}" for name in Settings.model_fields} | OTHER_VARIABLES
    names = [k for k in os.environ if k.upper().startswith("BDX_")]
    unknown = sorted(k for k in names if k.upper() not in known)
    if unknown:
        print(f"bdx: warning: no setting reads {', '.join(unknown)}", file=sys.stderr)


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False
