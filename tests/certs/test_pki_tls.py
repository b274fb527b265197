"""Mutual TLS for real: TLS servers on 127.0.0.1 with certificates from the region's PKI."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from certs.pki import PkiError, TrustAnchors
from certs.pki.asgi import PeerCertH11Protocol, peer_der
from certs.pki.bootstrap import build_region, make_node, write_region
from certs.pki.keys import certificate_pem, write_private_key, write_public
from certs.pki.revocation import crl_pem
from certs.pki.tls import (
    client_context,
    peer_country,
    peer_identity,
    server_context,
    uvicorn_ssl_options,
)


@dataclass
class Files:
    out: Path

    def node(self, cc: str, kind: str = "tls") -> tuple[Path, Path]:
        folder = self.out / "nodes" / cc.lower()
        return folder / f"{kind}.pem", folder / f"{kind}.key"

    @property
    def root(self) -> Path:
        return self.out / "root.pem"

    def anchors(self) -> TrustAnchors:
        return TrustAnchors.load(
            self.out / "root.pem", self.out / "trust-list.jws", self.out / "crl.pem"
        )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    out = tmp_path_factory.mktemp("region")
    region = build_region(["TH", "ID", "MY"])
    write_region(region, out)
    # MY's TLS certificate is revoked on a second CRL (crl-revoked.pem)
    region.ca.revoke(region.nodes["MY"].tls_cert)
    write_public(out / "crl-revoked.pem", crl_pem(region.ca.crl()))
    # a certificate for ID from a different CA, and an ID certificate not in the trust list
    foreign = build_region(["ID"])
    write_region(foreign, out / "foreign")
    unlisted = make_node(region.ca, "ID")
    write_public(out / "unlisted.pem", certificate_pem(unlisted.tls_cert))
    write_private_key(out / "unlisted.key", unlisted.tls_key)
    return Files(out)


@dataclass
class Server:
    """A one-line TLS server: replies "OK <country>" or "REFUSED <reason>" per connection."""

    ctx: ssl.SSLContext
    anchors: TrustAnchors
    sock: socket.socket = field(init=False)
    events: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(10)
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.ctx.wrap_socket(raw, server_side=True) as conn:
                    try:
                        reply = (
                            f"OK {peer_country(conn.getpeercert(binary_form=True), self.anchors)}"
                        )
                    except PkiError as exc:
                        reply = f"REFUSED {exc.reason}"
                    self.events.append(reply)
                    conn.sendall(reply.encode() + b"\n")
            except (ssl.SSLError, OSError) as exc:
                self.events.append(f"HANDSHAKE {type(exc).__name__}")
                raw.close()


@pytest.fixture
def server(files: Files) -> Iterator[Server]:
    cert, key = files.node("TH")
    srv = Server(server_context(cert, key, files.root), files.anchors())
    yield srv
    srv.sock.close()


def talk(address: tuple[str, int], ctx: ssl.SSLContext, host: str = "localhost") -> str:
    with (
        socket.create_connection(address, timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as conn,
    ):
        return conn.recv(100).decode().strip()


def wait_for(events: list[str], count: int) -> list[str]:
    deadline = time.monotonic() + 10
    while len(events) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return events


def test_mutual_tls_gives_each_side_the_peer_country(files: Files, server: Server) -> None:
    cert, key = files.node("ID")
    ctx = client_context(cert, key, files.root)
    with (
        socket.create_connection(server.address, timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as conn,
    ):
        assert conn.version() == "TLSv1.3"
        assert peer_identity(conn.getpeercert(binary_form=True), files.anchors()).country == "TH"
        assert conn.recv(100) == b"OK ID\n"


def test_client_certificate_from_another_ca_is_refused(files: Files, server: Server) -> None:
    foreign = files.out / "foreign" / "nodes" / "id"
    ctx = client_context(foreign / "tls.pem", foreign / "tls.key", files.root)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        talk(server.address, ctx)
    assert wait_for(server.events, 1) == ["HANDSHAKE SSLCertVerificationError"]


def test_client_without_certificate_is_refused(files: Files, server: Server) -> None:
    ctx = ssl.create_default_context(cafile=files.root)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        talk(server.address, ctx)
    assert wait_for(server.events, 1)[0].startswith("HANDSHAKE")


def test_signing_certificate_is_refused_as_tls_client(files: Files, server: Server) -> None:
    cert, key = files.node("ID", "signing")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        talk(server.address, client_context(cert, key, files.root))
    assert wait_for(server.events, 1) == ["HANDSHAKE SSLCertVerificationError"]


def test_no_peer_certificate_is_a_typed_refusal(files: Files) -> None:
    for der in (None, b""):
        with pytest.raises(PkiError) as err:
            peer_identity(der, files.anchors())
        assert err.value.reason == "no_certificate"


def test_client_not_in_trust_list_is_refused_by_the_application(
    files: Files, server: Server
) -> None:
    ctx = client_context(files.out / "unlisted.pem", files.out / "unlisted.key", files.root)
    assert talk(server.address, ctx) == "REFUSED not_in_trust_list"


def test_revoked_client_is_refused(files: Files) -> None:
    cert, key = files.node("TH")
    my_cert, my_key = files.node("MY")
    client = client_context(my_cert, my_key, files.root)
    # (a) the handshake itself, when the server context is given the CRL file
    crl_file = files.out / "crl-revoked.pem"
    strict = Server(server_context(cert, key, files.root, crl_file=crl_file), files.anchors())
    with pytest.raises((ssl.SSLError, ConnectionError)):
        talk(strict.address, client)
    assert wait_for(strict.events, 1) == ["HANDSHAKE SSLCertVerificationError"]
    id_cert, id_key = files.node("ID")  # the same CRL-checking server accepts a valid client
    assert talk(strict.address, client_context(id_cert, id_key, files.root)) == "OK ID"
    strict.sock.close()
    # (b) the application check, after the node refreshed its CRL
    anchors = files.anchors()
    anchors.refresh_crl(crl_file.read_bytes())
    lenient = Server(server_context(cert, key, files.root), anchors)
    assert talk(lenient.address, client) == "REFUSED revoked"
    lenient.sock.close()


def test_client_refuses_a_server_from_another_ca(files: Files) -> None:
    foreign = files.out / "foreign" / "nodes" / "id"
    srv = Server(
        server_context(foreign / "tls.pem", foreign / "tls.key", files.root), files.anchors()
    )
    cert, key = files.node("ID")
    with pytest.raises(ssl.SSLCertVerificationError):
        talk(srv.address, client_context(cert, key, files.root))
    srv.sock.close()


def test_client_checks_the_server_host_name(files: Files, server: Server) -> None:
    cert, key = files.node("ID")
    with pytest.raises(ssl.SSLCertVerificationError):
        talk(server.address, client_context(cert, key, files.root), host="node-id")
    assert talk(server.address, client_context(cert, key, files.root), host="node-th") == "OK ID"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_1_is_refused(files: Files, server: Server) -> None:
    cert, key = files.node("ID")
    ctx = client_context(cert, key, files.root)
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionError)):
        talk(server.address, ctx)


def country_app(anchors: TrustAnchors) -> Any:
    """A minimal ASGI app answering the validated peer country (or 403 and the reason)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        try:
            status, body = 200, peer_identity(peer_der(scope), anchors).country.encode()
        except PkiError as exc:
            status, body = 403, exc.reason.encode()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


def test_uvicorn_and_httpx_mutual_tls(files: Files) -> None:
    cert, key = files.node("TH")
    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(
        country_app(files.anchors()),
        http=PeerCertH11Protocol,
        lifespan="off",
        log_level="error",
        **uvicorn_ssl_options(cert, key, files.root),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        url = f"https://localhost:{sock.getsockname()[1]}/"
        id_cert, id_key = files.node("ID")
        with httpx.Client(verify=client_context(id_cert, id_key, files.root)) as client:
            response = client.get(url)
        assert (response.status_code, response.text) == (200, "ID")
        unlisted = client_context(
            files.out / "unlisted.pem", files.out / "unlisted.key", files.root
        )
        with httpx.Client(verify=unlisted) as client:
            response = client.get(url)
        assert (response.status_code, response.text) == (403, "not_in_trust_list")
        foreign = files.out / "foreign" / "nodes" / "id"
        with (
            httpx.Client(
                verify=client_context(foreign / "tls.pem", foreign / "tls.key", files.root)
            ) as client,
            pytest.raises(httpx.TransportError),
        ):
            client.get(url)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
