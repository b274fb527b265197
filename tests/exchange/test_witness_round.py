"""A witness round asks each peer in turn: one peer's odd answer costs only that peer.

TH's real log and credentials, MY's real witness service; only the wire is an
``httpx.MockTransport`` standing in for the peers' mutual-TLS listeners."""

from __future__ import annotations

import asyncio
import json
import json as _json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine

from certs.pki.bootstrap import build_region, write_region
from certs.pki.credentials import NodeCredentials, NodePaths
from certs.translog import SigningKey, TransparencyLog, metadata
from certs.translog.sqlite import configure_sqlite
from node.exchange.requester import Peer
from node.exchange.witnessing import WitnessService, cosignature_json, log_origin, witness_round
from tests.exchange.conftest import tls_app


def _streamed(status: int, *, content: bytes = b"", json: object = None, **kw: Any) -> Any:
    """A mock transport's answer streamed as off the network (the node reads bodies as a
    bounded stream, which a response built from bytes has already consumed)."""
    body = content if json is None else _json.dumps(json).encode()

    async def chunks() -> AsyncIterator[bytes]:
        yield body

    return httpx.Response(status, content=chunks(), **kw)


@pytest.mark.parametrize(
    ("peer", "latest", "cosign"),
    [
        ("ID", b'{"origin": "x", "size": null}', None),
        ("ID", b"[]", None),
        ("ID", b'{"size": 1e999}', None),
        ("ID", b'{"size": 0}', (409, b'["busy"]')),  # a refusal that is not an error body
        # a refusal whose code forges a log line (a newline, an ERROR, a terminal escape)
        ("ID", b'{"size": 0}', (409, b'{"error": "busy\\nERROR: forged\\u001b]0;x\\u0007"}')),
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
                return _streamed(200, content=latest, headers={"content-type": "application/json"})
            return _streamed(
                cosign[0], content=cosign[1], headers={"content-type": "application/json"}
            )
        if at_latest:
            return _streamed(200, json={"origin": log_origin("TH"), "size": my.latest_size("TH")})
        body = json.loads(request.content)
        return _streamed(
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
    assert out[peer].isprintable() and "forged" not in out[peer]


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


def _th_witnessing_my(tmp_path: Path) -> tuple[WitnessService, TransparencyLog, TransparencyLog]:
    """TH's witness service (recording into TH's own exchange log) and MY's log."""
    from node.exchange.eventlog import TranslogExchangeLog

    region = tmp_path / "region"
    write_region(build_region(["TH", "MY"]), region)
    creds = {cc: NodeCredentials(NodePaths.from_region(region, cc)) for cc in ("TH", "MY")}
    engines = {cc: create_engine(f"sqlite:///{tmp_path / cc}.db") for cc in ("th", "my")}
    for e in engines.values():
        configure_sqlite(e)
        metadata.create_all(e)
    th_log = TransparencyLog.open(
        engines["th"], SigningKey(log_origin("TH"), creds["TH"].signing_key)
    )
    th = WitnessService.create(engines["th"], creds["TH"], TranslogExchangeLog(th_log))
    my_log = TransparencyLog.open(
        engines["my"], SigningKey(log_origin("MY"), creds["MY"].signing_key)
    )
    return th, th_log, my_log


def test_a_refusal_that_is_evidence_is_kept_by_the_witness(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """MY shows TH a smaller tree than TH cosigned: TH refused with a 403 and kept nothing
    (only MY, the tampering node, logged the refusal). TH now logs it at ERROR and appends
    both signed notes to its own tamper-evident log."""
    from certs.translog import RollbackError

    th, th_log, my_log = _th_witnessing_my(tmp_path)
    my_log.append_many([b'{"type":"x"}', b'{"type":"y"}'])
    early = my_log.issue_checkpoint()
    my_log.append(b'{"type":"z"}')
    later = my_log.issue_checkpoint()
    th.cosign("MY", later.to_bytes().decode(), [])
    before = th_log.size()
    with pytest.raises(RollbackError):
        th.cosign("MY", early.to_bytes().decode(), [])
    events = [json.loads(e.data) for e in th_log.entries(before)]
    assert [(e["type"], e["peer"], e["reason"]) for e in events] == [
        ("witness_refusal", "MY", "checkpoint_rollback")
    ]
    assert events[0]["presented"] == early.to_bytes().decode()
    assert events[0]["held"] == later.to_bytes().decode()
    assert any(r.levelname == "ERROR" and "MY" in r.getMessage() for r in caplog.records)


def test_the_same_checkpoint_again_adds_no_row(tmp_path: Path) -> None:
    """Every housekeeping round asked again, and each cosignature of the same note added a
    row to the witness's history (five a checkpoint, per peer, for ever)."""
    th, _, my_log = _th_witnessing_my(tmp_path)
    my_log.append(b'{"type":"x"}')
    note = my_log.issue_checkpoint().to_bytes().decode()
    for _ in range(5):
        th.cosign("MY", note, [])
    assert len(th.witness.history(log_origin("MY"))) == 1


def test_a_round_does_not_ask_a_peer_whose_cosignature_is_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round runs every minute, a checkpoint at most every five: the peers that cosigned
    the latest checkpoint already are not asked again (each ask added a row at the peer)."""
    write_region(build_region(["TH", "MY"]), tmp_path / "region")
    creds = {
        cc: NodeCredentials(NodePaths.from_region(tmp_path / "region", cc)) for cc in ("TH", "MY")
    }
    engines = {cc: create_engine(f"sqlite:///{tmp_path / cc}.db") for cc in ("th", "my")}
    for e in engines.values():
        configure_sqlite(e)
        metadata.create_all(e)
    log = TransparencyLog.open(engines["th"], SigningKey(log_origin("TH"), creds["TH"].signing_key))
    log.append(b'{"type":"x"}')
    log.issue_checkpoint()
    my = WitnessService.create(engines["my"], creds["MY"])
    posts: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/latest"):
            return _streamed(200, json={"origin": log_origin("TH"), "size": my.latest_size("TH")})
        posts.append(1)
        body = json.loads(request.content)
        cosig = my.cosign("TH", body["checkpoint"], body["proof"], body["old_size"])
        return _streamed(200, json=cosignature_json(cosig))

    real = httpx.AsyncClient

    class Mocked(real):  # type: ignore[misc, valid-type]
        def __init__(self, **kwargs: object) -> None:
            kwargs["transport"] = httpx.MockTransport(handler)
            super().__init__(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx, "AsyncClient", Mocked)
    peers = [Peer("MY", "https://my.example")]
    for _ in range(3):
        assert asyncio.run(witness_round(log, creds["TH"], peers, 5.0)) == {"MY": "cosigned"}
    assert len(posts) == 1
    log.append(b'{"type":"y"}')
    log.issue_checkpoint()
    assert asyncio.run(witness_round(log, creds["TH"], peers, 5.0)) == {"MY": "cosigned"}
    assert len(posts) == 2


def _views_app(body: Callable[[], Any]) -> Any:
    """A fake "MY" answering every witness view request with ``body()``."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/peer/v1/witness/views/{cc}")
    async def view(cc: str) -> Any:
        return body()

    return app


async def _trickle() -> AsyncIterator[bytes]:
    yield b'{"checkpoint": "'
    for _ in range(120):  # a byte every half second: no single read ever times out
        await asyncio.sleep(0.5)
        yield b"x"


@pytest.mark.parametrize("answer", ["trickle", "huge"])
def test_a_peer_trickling_or_flooding_its_view_is_cut_off(tmp_path: Path, answer: str) -> None:
    """compare_views ran inside housekeeping and waited on a peer sending a byte every 2 s
    (CRL, rules and nonces were never seen to again); a 150 MB view was read whole."""
    from fastapi.responses import Response, StreamingResponse

    from node.exchange.witnessing import compare_views

    write_region(build_region(["TH", "ID", "MY"]), tmp_path / "region")
    root = tmp_path / "region"
    creds = {cc: NodeCredentials(NodePaths.from_region(root, cc)) for cc in ("TH", "ID")}
    engines = {}
    for name in ("th", "id"):
        engines[name] = create_engine(f"sqlite:///{tmp_path / name}.db")
        configure_sqlite(engines[name])
        metadata.create_all(engines[name])
    log = TransparencyLog.open(engines["th"], SigningKey(log_origin("TH"), creds["TH"].signing_key))
    log.append(b'{"type":"x"}')
    checkpoint = log.issue_checkpoint()
    idw = WitnessService.create(engines["id"], creds["ID"])
    idw.cosign("TH", checkpoint.to_bytes().decode(), [])
    huge = b'{"checkpoint": "' + b"x" * (2 << 20) + b'"}'
    body = (
        (lambda: StreamingResponse(_trickle(), media_type="application/json"))
        if answer == "trickle"
        else (lambda: Response(huge, media_type="application/json"))
    )
    with tls_app(_views_app(body), root, "MY") as url:
        peers = [Peer("TH", "https://127.0.0.1:9"), Peer("MY", url)]
        got = asyncio.run(asyncio.wait_for(compare_views(idw, creds["ID"], peers, 2.0), 30))
    assert got["TH/MY"] == {"trickle": "TimeoutError", "huge": "InvalidReplyError"}[answer], got
