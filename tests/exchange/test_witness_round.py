"""A witness round asks each peer in turn: one peer's odd answer costs only that peer.

TH's real log and credentials, MY's real witness service; only the wire is an
``httpx.MockTransport`` standing in for the peers' mutual-TLS listeners."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine

from certs.pki.bootstrap import build_region, write_region
from certs.pki.credentials import NodeCredentials, NodePaths
from certs.translog import SigningKey, TransparencyLog, metadata
from certs.translog.sqlite import configure_sqlite
from node.exchange.requester import Peer
from node.exchange.witnessing import WitnessService, cosignature_json, log_origin, witness_round


@pytest.mark.parametrize(
    ("peer", "latest", "cosign"),
    [
        ("ID", b'{"origin": "x", "size": null}', None),
        ("ID", b"[]", None),
        ("ID", b'{"size": 1e999}', None),
        ("ID", b'{"size": 0}', (409, b'["busy"]')),  # a refusal that is not an error body
        (
            "VN",
            b'{"size": 0}',
            (200, b'{"witness": "w", "key_id": "", "timestamp": 1, "signature": ""}'),
        ),
    ],
)
def test_an_odd_peer_does_not_stop_the_round(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    peer: str,
    latest: bytes,
    cosign: tuple[int, bytes] | None,
) -> None:
    write_region(build_region(["TH", "ID", "MY"]), tmp_path / "region")
    creds = {
        cc: NodeCredentials(NodePaths.from_region(tmp_path / "region", cc)) for cc in ("TH", "MY")
    }

    def engine(name: str):  # type: ignore[no-untyped-def]
        e = create_engine(f"sqlite:///{tmp_path / name}.db")
        configure_sqlite(e)
        metadata.create_all(e)
        return e

    log = TransparencyLog.open(engine("th"), SigningKey(log_origin("TH"), creds["TH"].signing_key))
    log.append(b'{"type":"x"}')
    log.issue_checkpoint()
    my = WitnessService.create(engine("my"), creds["MY"])

    def handler(request: httpx.Request) -> httpx.Response:
        at_latest = request.url.path.endswith("/latest")
        if request.url.host == "odd.example":
            if at_latest or cosign is None:
                return httpx.Response(
                    200, content=latest, headers={"content-type": "application/json"}
                )
            return httpx.Response(
                cosign[0], content=cosign[1], headers={"content-type": "application/json"}
            )
        if at_latest:
            return httpx.Response(
                200, json={"origin": log_origin("TH"), "size": my.latest_size("TH")}
            )
        body = json.loads(request.content)
        return httpx.Response(
            200, json=cosignature_json(my.cosign("TH", body["checkpoint"], body["proof"]))
        )

    real = httpx.AsyncClient

    class Mocked(real):  # type: ignore[misc, valid-type]
        def __init__(self, **kwargs: object) -> None:
            kwargs["transport"] = httpx.MockTransport(handler)
            super().__init__(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx, "AsyncClient", Mocked)
    peers = [Peer(peer, "https://odd.example"), Peer("MY", "https://my.example")]
    out = asyncio.run(witness_round(log, creds["TH"], peers, 5.0))
    assert out["MY"] == "cosigned" and out[peer] != "cosigned"


def test_a_revoked_signing_key_is_neither_cosigned_nor_counted(tmp_path: Path) -> None:
    """MY's signing certificate is revoked: TH refuses to cosign checkpoints it signed, and
    would not count cosignatures made with it (the trust list alone still named it)."""
    from certs.errors import CertsError
    from certs.pki.ca import CertificateAuthority
    from certs.pki.keys import load_certificate, write_public
    from certs.pki.revocation import crl_pem
    from node.exchange.witnessing import peer_log_key, peer_witness_key

    region = tmp_path / "region"
    write_region(build_region(["TH", "ID", "MY"]), region)
    creds = {cc: NodeCredentials(NodePaths.from_region(region, cc)) for cc in ("TH", "MY")}
    engines = {cc: create_engine(f"sqlite:///{tmp_path / cc}.db") for cc in ("th", "my")}
    for e in engines.values():
        configure_sqlite(e)
        metadata.create_all(e)
    th = WitnessService.create(engines["th"], creds["TH"])
    my_log = TransparencyLog.open(
        engines["my"], SigningKey(log_origin("MY"), creds["MY"].signing_key)
    )
    my_log.append(b'{"type":"x"}')
    checkpoint = my_log.issue_checkpoint().to_bytes().decode()
    ca = CertificateAuthority.open(region / "ca")
    ca.revoke(load_certificate(NodePaths.from_region(region, "MY").signing_cert))
    write_public(region / "crl.pem", crl_pem(ca.crl()))
    creds["TH"].reload()
    for refused in (
        lambda: th.cosign("MY", checkpoint, []),
        lambda: peer_log_key(creds["TH"].anchors, "MY"),
        lambda: peer_witness_key(creds["TH"].anchors, "MY"),
    ):
        with pytest.raises(CertsError) as err:
            refused()
        assert err.value.reason == "revoked"
