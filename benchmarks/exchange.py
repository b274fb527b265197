"""Peer exchange speed: a signed query round trip over mutual TLS, and sustained peer
queries per second against a fingerprint gallery.

Two nodes (TH asks, ID answers) are built by ``create_app`` from settings and served as
``bdx serve`` serves them (API port + mutual-TLS peer port, ``node.exchange.serving``), with
certificates from ``certs.pki.bootstrap``, both in this process (so they share its cores).

* **round trip**: TH's requester (pooled keep-alive client) sends a query to ID, whose gallery
  is empty: mutual TLS, JWS signing and verification on both sides, policy, replay guard and
  four exchange-log appends, no matching. Baseline in the same run: a plain GET over the same
  kind of mutual-TLS keep-alive connection (``/peer/v1/queries/none``, answered 404).
* **throughput**: ID enrols ``--gallery`` fingerprint records through its record service
  (``--distinct`` synthetic fingers, repeated); ``--clients`` concurrent officers' queries
  (one finger each, the second impression of an enrolled finger) until ``--queries`` are done.

Run: ``.venv/bin/python benchmarks/exchange.py`` (``--help`` for the sizes).
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI
from rich.progress import track

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from certs.pki.bootstrap import build_region, write_region
from matcher.fingerprint import iso19794_2, match
from matcher.fingerprint.template import FingerprintTemplate
from matcher.search.fingerprint import fingerprint_records, fingerprint_schema, search_fingerprint
from matcher.synthetic import synthetic_templates
from node.api.app import create_app
from node.db.models import Modality, TemplateRecord
from node.exchange.messages import TemplateItem, b64url
from node.exchange.requester import Peer, Requester
from node.exchange.serving import ServerPair, peer_config
from node.exchange.setup import load_credentials
from node.services.galleries import subject_key
from node.services.records import NewRecord, RecordService
from node.settings import Settings

ENROL_BATCH = 1000


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(
    root: Path, region: Path, cc: str, peer: str, ports: dict[str, tuple[int, int]]
) -> tuple[FastAPI, ServerPair]:
    data = root / cc.lower()
    data.mkdir()
    rules = data / "rules.toml"
    rules.write_text(
        f'version = "bench"\ncountry = "{cc}"\n[peers.{peer}]\npurposes = ["border_control"]\n'
        f'modalities = ["fingerprint"]\ndaily_quota = {{ fingerprint = 1000000 }}\n'
        f'[outbound.{peer}]\npurposes = ["border_control"]\n'
    )
    settings = Settings(
        country=cc,
        data_dir=data,
        pki_dir=region,
        policy_file=rules,
        peers={peer: f"https://127.0.0.1:{ports[peer][1]}"},
        port=ports[cc][0],
        peer_port=ports[cc][1],
    )
    app = create_app(settings)
    api = uvicorn.Config(app, host="127.0.0.1", port=ports[cc][0], log_level="warning")
    pair = ServerPair(
        api, peer_config(app, settings, load_credentials(settings), log_level="warning")
    )
    threading.Thread(target=lambda: asyncio.run(pair.serve()), daemon=True).start()
    while not (pair.started and getattr(app.state, "exchange", None) is not None):
        time.sleep(0.02)
    return app, pair


def enrol(app: FastAPI, templates: Sequence[FingerprintTemplate], n: int) -> None:
    galleries = app.state.gallery
    for lo in track(range(0, n, ENROL_BATCH), description=f"enrol {n} records"):
        m = min(ENROL_BATCH, n - lo)
        chunk = [templates[(lo + i) % len(templates)] for i in range(m)]
        new = [
            NewRecord(f"p{lo + i}", Modality.FINGERPRINT, "iso19794-2:2005", 20, 1)
            for i in range(m)
        ]

        def write(rows: Sequence[TemplateRecord], chunk: list[FingerprintTemplate] = chunk) -> None:
            batch = fingerprint_records(
                [r.reference for r in rows],
                [subject_key(r.subject_id) for r in rows],
                chunk,
                [1] * len(rows),
            )
            galleries.append(fingerprint_schema(), batch)

        with app.state.sessions() as session:
            RecordService(session, galleries).enrol(new, write, actor="bench")


def item(t: FingerprintTemplate) -> list[TemplateItem]:
    return [
        TemplateItem(
            format="iso19794-2:2005",
            format_version=20,
            finger_position=1,
            data=b64url(iso19794_2.encode(t)),
        )
    ]


async def round_trips(
    req: Requester, peer: Peer, probe: list[TemplateItem], n: int, tls: ssl.SSLContext
) -> tuple[float, float]:
    times: list[float] = []
    for _ in range(n + 5):
        t = time.perf_counter()
        (r,) = await req.query_peers([peer], "border_control", "fingerprint", probe)
        assert r.status == "answered" and r.reply is not None, r.summary()
        times.append((time.perf_counter() - t) * 1000)
    base: list[float] = []
    async with httpx.AsyncClient(verify=tls) as client:
        for _ in range(n + 5):
            t = time.perf_counter()
            await client.get(peer.url + "/peer/v1/queries/none")
            base.append((time.perf_counter() - t) * 1000)
    await req.aclose()
    return statistics.median(times[5:]), statistics.median(base[5:])


async def throughput(
    req: Requester, peer: Peer, probes: list[list[TemplateItem]], total: int, clients: int
) -> tuple[float, float, float, float]:
    """(queries/s, hit rate, median latency ms, CPU ms of this process per query)."""
    done, hits, lat = 0, 0, list[float]()

    async def worker() -> None:
        nonlocal done, hits
        while done < total:
            i = done
            done += 1
            t = time.perf_counter()
            (r,) = await req.query_peers(
                [peer], "border_control", "fingerprint", probes[i % len(probes)]
            )
            lat.append((time.perf_counter() - t) * 1000)
            assert r.status == "answered" and r.reply is not None, r.summary()
            hits += r.reply.outcome.value == "hit"

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    await req.aclose()
    return total / elapsed, hits / total, statistics.median(lat), cpu / total * 1000


def search_cpu_ms(app: FastAPI, probes: Sequence[FingerprintTemplate]) -> float:
    """Median CPU ms of the responder's search alone (``search_fingerprint`` with its default
    penetration on the same gallery, prepared probes, one call at a time)."""
    times = []
    with app.state.gallery.reading(fingerprint_schema()) as gallery:
        for t in [match.prepare(p) for p in probes]:
            c0 = time.process_time()
            search_fingerprint(gallery, t, k=10)
            times.append((time.process_time() - c0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--round-trips", type=int, default=200)
    ap.add_argument("--gallery", type=int, default=10_000)
    ap.add_argument("--distinct", type=int, default=2_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_region(build_region(("TH", "ID")), root / "region")
        ports = {cc: (_port(), _port()) for cc in ("TH", "ID")}
        id_app, id_pair = start(root, root / "region", "ID", "TH", ports)
        th_app, th_pair = start(root, root / "region", "TH", "ID", ports)
        req: Requester = th_app.state.requester
        peer = th_app.state.exchange.peers["ID"]
        fingers = synthetic_templates(args.distinct, 2, seed=2027)
        tls = th_app.state.exchange.credentials.client_context()
        rt, base = asyncio.run(round_trips(req, peer, item(fingers[0][1]), args.round_trips, tls))
        print(
            f"round trip (empty gallery): median {rt:.1f} ms; "
            f"mTLS GET baseline {base:.1f} ms; ratio {rt / base:.1f}x"
        )
        enrol(id_app, [f[0] for f in fingers], args.gallery)
        probes = [item(f[1]) for f in fingers[: min(200, len(fingers))]]
        qps, hit_rate, med, cpu = asyncio.run(
            throughput(req, peer, probes, args.queries, args.clients)
        )
        alone = search_cpu_ms(id_app, [f[1] for f in fingers[:50]])
        print(
            f"throughput ({args.gallery} records, {args.clients} clients, {args.queries} queries): "
            f"{qps:.1f} queries/s, median latency {med:.1f} ms, hit rate {hit_rate:.3f}; "
            f"CPU per query, both nodes: {cpu:.1f} ms; the search alone: {alone:.1f} ms"
        )
        for pair in (th_pair, id_pair):
            pair.stop()


if __name__ == "__main__":
    main()
