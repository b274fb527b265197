"""Country nodes started the way ``bdx serve`` starts them: ``create_app`` on the API port and
the mutual-TLS peer listener (:mod:`node.exchange.serving`) on the peer port, with settings
pointing at a region written by the project's PKI, a rules file and a gallery enrolled through
the node's record service."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from certs.pki.bootstrap import Region, make_node
from certs.pki.ca import CertificateAuthority
from certs.pki.revocation import crl_pem
from matcher.fingerprint.template import FingerprintTemplate
from matcher.search.fingerprint import fingerprint_records, fingerprint_schema
from node.api.app import create_app
from node.db.models import Modality, Role, TemplateRecord
from node.exchange.serving import GRACEFUL_SHUTDOWN_S, ServerPair, peer_config
from node.exchange.setup import Exchange, load_credentials
from node.restrictions import SharingRestrictions
from node.services.galleries import subject_key
from node.services.records import NewRecord, RecordService
from node.services.users import UserService
from node.settings import Settings

ISO = "iso19794-2:2005"


#: Seconds a node may take to start: 20 was seen exceeded on the 2-core machine at load ~5.
START_TIMEOUT_S = 60


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rules(country: str, peers: Sequence[str]) -> str:
    """MY answers asylum queries only; everyone sends border_control and asylum queries."""
    text = f'version = "svc-1"\ncountry = "{country}"\n'
    for p in peers:
        purposes = '["asylum"]' if country == "MY" else '["border_control", "asylum"]'
        text += (
            f'[peers.{p}]\npurposes = {purposes}\nmodalities = ["fingerprint"]\n'
            f"daily_quota = {{ fingerprint = 100 }}\n"
            f'[outbound.{p}]\npurposes = ["border_control", "asylum"]\n'
        )
    return text


@dataclass
class ServiceNode:
    country: str
    app: FastAPI
    api_url: str
    peer_url: str
    pair: ServerPair
    thread: threading.Thread
    token: str

    @property
    def exchange(self) -> Exchange:
        exchange: Exchange = self.app.state.exchange
        return exchange

    def enrol(
        self,
        subjects: Sequence[str],
        templates: Sequence[FingerprintTemplate],
        restrictions: SharingRestrictions | None = None,
    ) -> None:
        """Enrol one right-thumb record per subject through the node's record service."""
        galleries = self.app.state.gallery
        new = [
            NewRecord(
                s,
                Modality.FINGERPRINT,
                ISO,
                20,
                finger_position=1,
                restrictions=restrictions or SharingRestrictions(),
            )
            for s in subjects
        ]

        def write(rows: Sequence[TemplateRecord]) -> None:
            batch = fingerprint_records(
                [r.reference for r in rows],
                [subject_key(r.subject_id) for r in rows],
                list(templates),
                [1] * len(rows),
            )
            galleries.append(fingerprint_schema(), batch)

        with self.app.state.sessions() as session:
            RecordService(session, galleries).enrol(new, write, actor="test")

    def stop(self) -> None:
        self.pair.stop()
        self.thread.join(timeout=15)


def start_service_node(
    root: Path,
    region_dir: Path,
    country: str,
    api_port: int,
    peer_port: int,
    peers: dict[str, str],
    *,
    graceful_s: float = GRACEFUL_SHUTDOWN_S,
    **settings: Any,
) -> ServiceNode:
    data = root / country.lower()
    data.mkdir(parents=True, exist_ok=True)
    policy = data / "rules.toml"
    policy.write_text(rules(country, list(peers)))
    config = Settings(
        country=country,
        data_dir=data,
        pki_dir=region_dir,
        policy_file=policy,
        peers=peers,
        port=api_port,
        peer_port=peer_port,
        peer_timeout_s=5.0,
        **settings,
    )
    app = create_app(config)
    api = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=api_port,
        log_level="warning",
        timeout_graceful_shutdown=graceful_s,  # as `bdx serve` (its requests' longest wait)
        access_log=False,  # as `bdx serve`: uvicorn's would log query strings, subject ids
    )
    creds = load_credentials(config, check=False)
    peer = peer_config(app, config, creds, log_level="warning", access_log=False)
    pair = ServerPair(api, peer)
    thread = threading.Thread(target=lambda: asyncio.run(pair.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (pair.started and getattr(app.state, "exchange", None) is not None):
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"node {country} did not start")
        time.sleep(0.02)
    with app.state.sessions() as session:
        users = UserService(session)
        users.add_user("officer", Role.OFFICER, actor="test")
        token = users.issue_token("officer", expires_days=1, actor="test").token
    return ServiceNode(
        country,
        app,
        f"http://127.0.0.1:{api_port}",
        f"https://127.0.0.1:{peer_port}",
        pair,
        thread,
        token,
    )


@contextmanager
def serving(
    data: Path,
    region_dir: Path,
    countries: Sequence[str],
    *,
    graceful_s: float = GRACEFUL_SHUTDOWN_S,
    **settings: Any,
) -> Iterator[dict[str, ServiceNode]]:
    """A node of each of ``countries`` (region in ``region_dir``, data under ``data``), each a
    peer of the others, served as ``bdx serve`` serves them; stopped together (each holds
    keep-alive connections to the others). ``graceful_s``: the API's longest wait for its
    requests at a stop."""
    ports = {cc: (free_port(), free_port()) for cc in countries}
    nodes: dict[str, ServiceNode] = {}
    try:
        for cc in countries:
            peers = {p: f"https://127.0.0.1:{ports[p][1]}" for p in countries if p != cc}
            nodes[cc] = start_service_node(
                data, region_dir, cc, *ports[cc], peers, graceful_s=graceful_s, **settings
            )
        yield nodes
    finally:
        for n in nodes.values():
            n.pair.stop()
        for n in nodes.values():
            n.stop()


def dated_region(
    countries: Sequence[str],
    *,
    crl_issued: datetime | None = None,
    ends: Mapping[str, datetime] | None = None,
) -> Region:
    """A region as ``build_region`` makes it (with the project's CA), but its CRL issued at
    ``crl_issued`` (stale from the start when that is over CRL_VALIDITY + grace ago) and the
    TLS and signing certificates of the countries in ``ends`` ending then (in the past: expired
    from the start), valid from two days before now or then, whichever is earlier."""
    ca = CertificateAuthority.create(countries[0])
    ends = ends or {}
    nodes = {cc: make_node(ca, cc) for cc in countries if cc not in ends}
    for cc, end in ends.items():
        start = min(datetime.now(UTC), end) - timedelta(days=2)
        nodes[cc] = make_node(ca, cc, not_before=start, validity=end - start)
    token = ca.trust_list([(n.country, n.tls_cert, n.signing_cert) for n in nodes.values()])
    return Region(ca, nodes, token, crl_pem(ca.crl(now=crl_issued)))
