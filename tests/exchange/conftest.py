"""Three real country nodes (TH, ID, MY) answering peer queries over mutual TLS.

Each node has its own keys and certificates from a region built by the project's PKI, its own
SQLite database (replay nonces, hit references, quotas, exchange log), rules file and a small
gallery of synthetic fingerprint templates matched by the real matcher. Servers are uvicorn on
loopback ports.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from sqlalchemy import Engine, create_engine

from certs.pki.asgi import PeerCertH11Protocol
from certs.pki.bootstrap import Region, build_region, write_region
from certs.pki.tls import client_context, uvicorn_ssl_options
from certs.translog import SigningKey, TransparencyLog
from certs.translog import metadata as translog_metadata
from matcher.evaluation import threshold_at_fmr
from matcher.fingerprint import iso19794_2
from matcher.fingerprint.match import pack, prepare, score_many
from matcher.fingerprint.template import FingerprintTemplate
from matcher.synthetic import synthetic_templates
from node.api.errors import install_error_handlers
from node.exchange import references, replay
from node.exchange.eventlog import TranslogExchangeLog
from node.exchange.messages import TemplateItem
from node.exchange.params import REPLAY_WINDOW
from node.exchange.requester import Peer, Requester
from node.exchange.responder import Candidate, Probe, Responder
from node.exchange.router import router
from policy import quota
from policy.decision import PolicyEngine
from policy.restrictions import Restrictions, parse_restrictions
from policy.rules import parse_policy

COUNTRIES = ("TH", "ID", "MY")
FINGERS = 12


def rules(country: str, quota_per_day: int = 50) -> str:
    peers = [c for c in COUNTRIES if c != country]
    text = f'version = "test-1"\ncountry = "{country}"\n'
    for p in peers:
        purposes = '["asylum"]' if country == "MY" else '["border_control", "law_enforcement"]'
        text += (
            f'[peers.{p}]\npurposes = {purposes}\nmodalities = ["fingerprint"]\n'
            f"daily_quota = {{ fingerprint = {quota_per_day} }}\n"
            f'[outbound.{p}]\npurposes = ["border_control", "asylum"]\n'
        )
    return text


class GallerySearch:
    """An in-memory gallery matched with the real 1:N kernel (one block)."""

    def __init__(self, templates: Sequence[FingerprintTemplate], refs: Sequence[str]) -> None:
        self.refs = list(refs)
        self.packed = pack([prepare(t) for t in templates])
        block = self.packed
        scores = np.stack([score_many(prepare(t), block) for t in templates])
        impostor = scores[~np.eye(len(templates), dtype=bool)]
        self.impostor = impostor
        self.calls = 0

    def decode(self, modality: str, templates: Sequence[TemplateItem]) -> Probe:
        return Probe(modality, fingerprints=(iso19794_2.decode(templates[0].raw()),))

    def __call__(self, probe: Probe, max_candidates: int, fmr: float) -> list[Candidate]:
        self.calls += 1
        threshold = threshold_at_fmr(self.impostor, fmr)
        scores = score_many(prepare(probe.fingerprints[0]), self.packed)
        order = np.argsort(-scores)[:max_candidates]
        return [
            Candidate(self.refs[i], float(scores[i]), float(np.mean(self.impostor >= scores[i])))
            for i in order
            if scores[i] >= threshold
        ]


@dataclass
class NodeHandle:
    country: str
    url: str
    engine: Engine
    responder: Responder
    requester: Requester
    search: GallerySearch
    log: TransparencyLog
    restrictions: dict[str, list[str]]
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def tls_app(app: FastAPI, root: Path, country: str) -> Iterator[str]:
    """Serve ``app`` on a loopback port over TLS with ``country``'s certificate from the
    region written at ``root`` (a fake peer); yields its base URL."""
    folder = root / "nodes" / country.lower()
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            **uvicorn_ssl_options(folder / "tls.pem", folder / "tls.key", root / "root.pem"),
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "fake peer did not start"
        time.sleep(0.02)
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def start_node(
    region: Region, root: Path, country: str, gallery: GallerySearch, *, quota_per_day: int = 50
) -> NodeHandle:
    folder = root / "nodes" / country.lower()
    engine = create_engine(f"sqlite:///{folder / 'node.db'}", connect_args={"timeout": 30})
    for md in (replay.metadata, references.metadata, quota.metadata, translog_metadata):
        md.create_all(engine)
    log = TransparencyLog.open(
        engine,
        SigningKey(f"bdx.{country.lower()}/exchange-log", ec.generate_private_key(ec.SECP256R1())),
    )
    elog = TranslogExchangeLog(log)
    material = region.nodes[country]
    anchors = region.anchors()
    restrictions: dict[str, list[str]] = {}

    def lookup(refs: Sequence[str]) -> list[Restrictions]:
        return [parse_restrictions(restrictions.get(r, [])) for r in refs]

    responder = Responder(
        country=country,
        trust=anchors,
        signing_key=material.signing_key,
        signing_chain=[material.signing_cert],
        policy=PolicyEngine(parse_policy(rules(country, quota_per_day)), quota.QuotaLedger(engine)),
        replay=replay.ReplayGuard(engine, REPLAY_WINDOW),
        hits=references.HitReferences(engine, bytes(32)),
        search=gallery,
        restrictions=lookup,
        exchange_log=elog,
    )
    tls = client_context(folder / "tls.pem", folder / "tls.key", root / "root.pem")
    requester = Requester(
        country=country,
        trust=anchors,
        signing_key=material.signing_key,
        signing_chain=[material.signing_cert],
        tls=tls,
        exchange_log=elog,
        timeout=5.0,
    )
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    app.state.responder = responder
    port = _free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=PeerCertH11Protocol,
        log_level="warning",
        **uvicorn_ssl_options(folder / "tls.pem", folder / "tls.key", root / "root.pem"),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("node did not start")
        time.sleep(0.02)
    # FastAPI builds a route's parameter models on its first request, inside a
    # warnings.catch_warnings() block, which is not thread-safe: nodes that share this process
    # (and the router's routes) must not do that concurrently, so each is warmed up here, one by
    # one. (A deployed node is one process; its two servers share one event-loop thread.)
    with httpx.Client(verify=tls, timeout=10) as client:
        client.get(f"https://127.0.0.1:{port}/peer/v1/queries/{uuid.uuid4()}")
    return NodeHandle(
        country,
        f"https://127.0.0.1:{port}",
        engine,
        responder,
        requester,
        gallery,
        log,
        restrictions,
        server,
        thread,
    )


@pytest.fixture(scope="module")
def fingers() -> list[list[FingerprintTemplate]]:
    return synthetic_templates(FINGERS, 2, seed=7)


@pytest.fixture(scope="module")
def region_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Region, Path]:
    region = build_region(COUNTRIES)
    root = tmp_path_factory.mktemp("region")
    write_region(region, root)
    return region, root


@pytest.fixture(scope="module")
def nodes(
    region_dir: tuple[Region, Path], fingers: list[list[FingerprintTemplate]]
) -> Iterator[dict[str, NodeHandle]]:
    """ID and MY enrol the first impressions of half the fingers each; TH enrols none."""
    region, root = region_dir
    half = FINGERS // 2
    galleries = {
        "TH": GallerySearch([f[0] for f in fingers[-2:]], ["th-0", "th-1"]),
        "ID": GallerySearch([f[0] for f in fingers[:half]], [f"id-{i}" for i in range(half)]),
        "MY": GallerySearch(
            [f[0] for f in fingers[half:-2]], [f"my-{i}" for i in range(half, FINGERS - 2)]
        ),
    }
    handles = {cc: start_node(region, root, cc, galleries[cc]) for cc in COUNTRIES}
    yield handles
    for h in handles.values():
        h.stop()


def peers_of(nodes: dict[str, NodeHandle], *codes: str) -> list[Peer]:
    return [Peer(c, nodes[c].url) for c in codes]
