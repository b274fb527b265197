"""Signing and PKI benchmark: JWS sign/verify of a typical query, mutual-TLS handshakes.

    .venv/bin/python benchmarks/signing.py [--repeat 300] [--handshakes 100] [--json]

Everything uses a fresh in-memory region (root CA, TH and ID nodes) from ``certs.pki``.
Baselines in the same process: raw ECDSA P-256 sign/verify of the same canonical bytes
(``cryptography``; the floor any JWS ES256 costs), and a server-authenticated-only TLS handshake
(no client certificate) against the mutual-TLS one.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from certs import jws
from certs.pki.bootstrap import build_region, write_region
from certs.pki.canonical import canonical_json
from certs.pki.tls import client_context, peer_identity, server_context

# A fingerprint query as node.exchange sends it: one ~1.5 KiB minutiae template.
QUERY: dict[str, Any] = {
    "v": 1,
    "kind": "query",
    "sender": "TH",
    "requester": "TH",
    "responder": "ID",
    "query_id": "0b7f6f7e-5d55-4b0e-9d53-7f3a5c1f2e11",
    "created": "2026-11-23T03:00:00.000000Z",
    "nonce": "q2v3J8s1k9d0f7a6b5c4x3",
    "purpose": "border_control",
    "modality": "fingerprint",
    "templates": [
        {
            "format": "iso19794-2",
            "format_version": 2005,
            "finger_position": 2,
            "data": base64.urlsafe_b64encode(os.urandom(1536)).rstrip(b"=").decode(),
        }
    ],
}


def median_us(fn: Callable[[], object], repeat: int) -> float:
    for _ in range(min(20, repeat)):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def handshake_ms(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, count: int) -> float:
    """Median wall time of TCP connect + TLS handshake on loopback (ms)."""
    listener = socket.create_server(("127.0.0.1", 0))
    address = listener.getsockname()[:2]

    def serve() -> None:
        for _ in range(count + 5):
            raw, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(raw, server_side=True) as conn:
                    conn.recv(1)
            except (ssl.SSLError, OSError):
                raw.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    times = []
    for i in range(count + 5):
        start = time.perf_counter()
        with (
            socket.create_connection(address) as raw,
            client_ctx.wrap_socket(raw, server_hostname="localhost") as conn,
        ):
            # TLS 1.3: the server verifies the client certificate when it reads the client's
            # Finished; one byte round trip makes the measured time include that.
            conn.sendall(b"x")
            if i >= 5:
                times.append(time.perf_counter() - start)
    thread.join(timeout=10)
    listener.close()
    return statistics.median(times) * 1e3


def run(repeat: int, handshakes: int) -> dict[str, float]:
    region = build_region(["TH", "ID"])
    anchors = region.anchors()
    th = region.nodes["TH"]
    chain = [th.signing_cert]
    token = jws.sign(QUERY, th.signing_key, chain)
    body = canonical_json(QUERY)
    raw_sig = th.signing_key.sign(body, ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg]
    public = th.signing_cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)

    def verify_cold() -> None:
        anchors.clear_cache()
        jws.verify(token, anchors, expected_country="TH")

    results = {
        "payload_bytes": float(len(body)),
        "token_bytes": float(len(token)),
        "sign_us": median_us(lambda: jws.sign(QUERY, th.signing_key, chain), repeat),
        "raw_ecdsa_sign_us": median_us(
            lambda: th.signing_key.sign(body, ec.ECDSA(hashes.SHA256())),  # type: ignore[call-arg]
            repeat,
        ),
        "verify_cached_chain_us": median_us(lambda: jws.verify(token, anchors), repeat),
        "verify_full_chain_us": median_us(verify_cold, repeat),
        "raw_ecdsa_verify_us": median_us(
            lambda: public.verify(raw_sig, body, ec.ECDSA(hashes.SHA256())), repeat
        ),
        "canonical_json_us": median_us(lambda: canonical_json(QUERY), repeat),
    }
    der = region.nodes["ID"].tls_cert.public_bytes(ssl_encoding())
    anchors.clear_cache()
    results["peer_identity_cached_us"] = median_us(lambda: peer_identity(der, anchors), repeat)
    with tempfile.TemporaryDirectory(prefix="bdx-bench-") as tmp:
        out = Path(tmp)
        write_region(region, out)
        root = out / "root.pem"
        th_dir, id_dir = out / "nodes" / "th", out / "nodes" / "id"
        server = server_context(th_dir / "tls.pem", th_dir / "tls.key", root)
        client = client_context(id_dir / "tls.pem", id_dir / "tls.key", root)
        results["mtls_handshake_ms"] = handshake_ms(server, client, handshakes)
        one_way = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        one_way.load_cert_chain(th_dir / "tls.pem", th_dir / "tls.key")
        plain_client = ssl.create_default_context(cafile=str(root))
        results["server_auth_handshake_ms"] = handshake_ms(one_way, plain_client, handshakes)
    return results


def ssl_encoding() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=300, help="timed calls per figure")
    parser.add_argument("--handshakes", type=int, default=100, help="timed TLS handshakes")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    r = run(args.repeat, args.handshakes)
    if args.json:
        print(json.dumps(r, indent=2))
        return
    table = Table(
        title=f"Signing and PKI (medians; {args.repeat} calls, {args.handshakes} handshakes)"
    )
    for col in ("operation", "median", "baseline", "ratio"):
        table.add_column(col)
    rows = [
        (
            "JWS sign (ES256, canonical JSON)",
            r["sign_us"],
            "raw ECDSA sign",
            r["raw_ecdsa_sign_us"],
            "µs",
        ),
        (
            "JWS verify, full chain validation",
            r["verify_full_chain_us"],
            "raw ECDSA verify",
            r["raw_ecdsa_verify_us"],
            "µs",
        ),
        (
            "JWS verify, cached chain",
            r["verify_cached_chain_us"],
            "raw ECDSA verify",
            r["raw_ecdsa_verify_us"],
            "µs",
        ),
        (
            "mTLS handshake (TLS 1.3, loopback)",
            r["mtls_handshake_ms"],
            "server-auth only",
            r["server_auth_handshake_ms"],
            "ms",
        ),
    ]
    for name, value, base_name, base, unit in rows:
        table.add_row(
            name, f"{value:.1f} {unit}", f"{base_name} {base:.1f} {unit}", f"{value / base:.2f}x"
        )
    table.add_row(
        "peer identity from TLS cert (cached)", f"{r['peer_identity_cached_us']:.1f} µs", "", ""
    )
    table.add_row("canonical JSON of the query", f"{r['canonical_json_us']:.1f} µs", "", "")
    Console().print(table)
    print(f"payload {int(r['payload_bytes'])} B, token {int(r['token_bytes'])} B")


if __name__ == "__main__":
    main()
