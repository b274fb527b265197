"""Peer exchange speed with the responder served as deployed: a signed query round trip over
mutual TLS, and sustained peer queries per second against a fingerprint gallery.

Two countries of one region (certificates from ``certs.pki.bootstrap``): **ID answers**, run as
``bdx serve --config ID.toml`` in its own process (API port + mutual-TLS peer port, SQLite
database, gallery files, exchange log, exactly as a node is deployed); **TH asks**: this
process is TH's requester (``node.exchange.setup.build_exchange`` on TH's settings), so every
query is built, signed with TH's signing key (fresh query id and nonce), sent over TH's pooled
mutual-TLS keep-alive connections, logged in TH's exchange log, and every reply's JWS and
certificate chain are verified, exactly as ``bdx query`` does.

* **round trip**: ID's gallery is empty (nothing to match): mutual TLS, JWS signing and
  verification on both sides, policy, quota, replay guard and the exchange logs of both nodes.
  Baseline in the same run: a plain GET over the same kind of mutual-TLS keep-alive connection
  (``/peer/v1/queries/none``, answered 404).
* **throughput**: ID's gallery then holds ``--gallery`` fingerprint records enrolled through its
  record service (``--distinct`` synthetic fingers, repeated) and ID is restarted on it;
  ``--clients`` queries are kept in flight (one finger each, the second impression of an
  enrolled finger) until ``--queries`` are answered; ``--rounds`` such rounds after a warm-up.
  CPU per query is read for each side separately: ID's from ``/proc/PID/stat`` of its process
  and every process under it (all threads; its search processes when it has them), TH's (this
  process) from ``time.process_time``, both over the round. This tree's ID runs with
  ``--search-processes`` and ``--peer-threads`` (as ``BDX_SEARCH_PROCESSES`` /
  ``BDX_PEER_THREADS``; a ``--baseline-tree`` older than these settings ignores them).
* **search alone** (baseline, same run, same gallery files): ``search_fingerprint`` with its
  default penetration, prepared probes, one call at a time, in this process while ID is idle.

Run: ``.venv/bin/python benchmarks/exchange.py`` (``--help`` for the sizes; ``--json`` for a
machine-readable summary). Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from certs.pki.bootstrap import build_region, write_region
from matcher.fingerprint import iso19794_2, match
from matcher.fingerprint.template import FingerprintTemplate
from matcher.search.fingerprint import fingerprint_records, fingerprint_schema, search_fingerprint
from matcher.synthetic import synthetic_templates
from matcher.workers import usable_cpus
from node.db.models import Modality, TemplateRecord
from node.db.setup import open_database
from node.demo.region import BDX, free_port
from node.exchange.messages import TemplateItem, b64url
from node.exchange.requester import Peer, Requester
from node.exchange.setup import Exchange, build_exchange
from node.services.galleries import GallerySet, subject_key
from node.services.records import NewRecord, RecordService
from node.settings import Settings, load_settings

ENROL_BATCH = 1000
START_TIMEOUT_S = 120.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class NodeFiles:
    country: str
    root: Path
    api_port: int
    peer_port: int

    @property
    def config(self) -> Path:
        return self.root / "bdx.toml"

    @property
    def peer_url(self) -> str:
        return f"https://127.0.0.1:{self.peer_port}"

    def settings(self) -> Settings:
        return load_settings(self.config)


def write_node(root: Path, region: Path, cc: str, peer: NodeFiles | None) -> NodeFiles:
    """Rules and a settings file for ``cc`` under ``root/cc`` (answers and asks the other)."""
    other = "TH" if cc == "ID" else "ID"
    node = NodeFiles(cc, root / cc.lower(), free_port(), free_port())
    node.root.mkdir(mode=0o700)
    rules = node.root / "rules.toml"
    rules.write_text(
        f'version = "bench"\ncountry = "{cc}"\n[peers.{other}]\npurposes = ["border_control"]\n'
        f'modalities = ["fingerprint"]\ndaily_quota = {{ fingerprint = 10000000 }}\n'
        f'[outbound.{other}]\npurposes = ["border_control"]\n'
    )
    peers = f'{other} = "{peer.peer_url}"\n' if peer else ""
    node.config.write_text(
        f'environment = "development"\ncountry = "{cc}"\ndata_dir = "{node.root}"\n'
        f'host = "127.0.0.1"\nport = {node.api_port}\npeer_port = {node.peer_port}\n'
        f'pki_dir = "{region}"\npolicy_file = "{rules}"\n\n[peers]\n{peers}'
    )
    return node


def enrol(node: NodeFiles, templates: Sequence[FingerprintTemplate], n: int) -> None:
    """Enrol ``n`` right-thumb records through the node's record service (node not serving)."""
    settings = node.settings()
    engine, sessions = open_database(settings)
    try:
        with sessions() as session, GallerySet.open(settings.gallery_path) as galleries:
            records = RecordService(session, galleries)
            for lo in range(0, n, ENROL_BATCH):
                m = min(ENROL_BATCH, n - lo)
                chunk = [templates[(lo + i) % len(templates)] for i in range(m)]
                new = [
                    NewRecord(f"p{lo + i}", Modality.FINGERPRINT, "iso19794-2:2005", 20, 1)
                    for i in range(m)
                ]

                def write(
                    rows: Sequence[TemplateRecord], chunk: list[FingerprintTemplate] = chunk
                ) -> None:
                    batch = fingerprint_records(
                        [r.reference for r in rows],
                        [subject_key(r.subject_id) for r in rows],
                        chunk,
                        [1] * len(rows),
                    )
                    galleries.append(fingerprint_schema(), batch)

                records.enrol(new, write, actor="bench")
    finally:
        engine.dispose()


@contextmanager
def serving(
    node: NodeFiles, source: Path | None = None, settings: dict[str, str] | None = None
) -> Iterator[int]:
    """``bdx serve`` for ``node`` in its own process until the block ends; yields its pid.
    ``source``: serve the node code of another source tree (a baseline), on this venv;
    ``settings``: environment variables for it (``BDX_...``)."""
    log = (node.root / "serve.log").open("ab")
    env = dict(os.environ) | (settings or {})
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(source), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [*BDX, "serve", "--config", str(node.config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=source,
    )
    log.close()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                sys.exit(f"{node.country} exited with {proc.returncode}: see {node.root}/serve.log")
            try:
                url = f"http://127.0.0.1:{node.api_port}/health"
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                sys.exit(f"{node.country} did not start: see {node.root}/serve.log")
            time.sleep(0.2)
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def machine_cpu_s() -> float:
    """Busy CPU seconds of the whole machine so far, all cores (``/proc/stat``: every field but
    idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / CLK_TCK


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live process under it (``/proc/*/stat`` parent ids)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):  # a process that ended meanwhile
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    tree, grew = {pid}, True
    while grew:
        below = {p for p, parent in parents.items() if parent in tree} - tree
        tree |= below
        grew = bool(below)
    return sorted(tree)


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds so far of process ``pid`` and the processes under it (all their
    threads)."""
    total = 0
    for p in process_tree(pid):
        with suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def proc_switches(pid: int) -> int:
    """Context switches so far of every live thread of process ``pid`` and the processes under
    it (``/proc/PID/task``)."""
    total = 0
    for p in process_tree(pid):
        with suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                with suppress(OSError):  # a thread that ended meanwhile
                    for line in (task / "status").read_text().splitlines():
                        if "ctxt_switches:" in line:
                            total += int(line.split(":")[1])
    return total


@contextmanager
def requester_of(node: NodeFiles) -> Iterator[Exchange]:
    """TH's exchange parts as its node builds them (own database, exchange log, keys)."""
    settings = node.settings()
    engine, _ = open_database(settings)
    try:
        with GallerySet.open(settings.gallery_path) as galleries:
            yield build_exchange(settings, engine, galleries)
    finally:
        engine.dispose()


def item(t: FingerprintTemplate) -> list[TemplateItem]:
    return [
        TemplateItem(
            format="iso19794-2:2005",
            format_version=20,
            finger_position=1,
            data=b64url(iso19794_2.encode(t)),
        )
    ]


async def ask(req: Requester, peer: Peer, probe: list[TemplateItem]) -> str:
    (r,) = await req.query_peers([peer], "border_control", "fingerprint", probe)
    assert r.status == "answered" and r.reply is not None, r.summary()
    assert r.reply.outcome.value in ("hit", "no_hit"), r.summary()
    return r.reply.outcome.value


async def round_trips(
    ex: Exchange, peer: Peer, probe: list[TemplateItem], n: int, pid: int
) -> tuple[float, float, float, float]:
    """Median ms of a peer query and of a plain mTLS GET, one at a time, after 5 warm-ups;
    CPU ms per query of the responder and of the requester over the queries."""
    times: list[float] = []
    for i in range(n + 5):
        if i == 5:
            r0, c0 = proc_cpu_s(pid), time.process_time()
        t = time.perf_counter()
        await ask(ex.requester, peer, probe)
        times.append((time.perf_counter() - t) * 1000)
    cpu_resp, cpu_req = proc_cpu_s(pid) - r0, time.process_time() - c0
    base: list[float] = []
    async with httpx.AsyncClient(verify=ex.credentials.client_context()) as client:
        for _ in range(n + 5):
            t = time.perf_counter()
            await client.get(peer.url + "/peer/v1/queries/none")
            base.append((time.perf_counter() - t) * 1000)
    await ex.requester.aclose()
    return (
        statistics.median(times[5:]),
        statistics.median(base[5:]),
        cpu_resp / n * 1000,
        cpu_req / n * 1000,
    )


@dataclass(frozen=True)
class Round:
    queries: int
    seconds: float
    qps: float
    hit_rate: float
    latency_median_ms: float
    latency_p95_ms: float
    responder_cpu_ms: float
    requester_cpu_ms: float
    #: CPU seconds per second of both processes together (2.0 = both cores of this machine).
    cores_used: float
    #: CPU seconds per second of every other process of the machine during the round: other
    #: work competes for the cores whatever its nice value (autogroup scheduling gives each
    #: session an equal share), so a round with other_cores_used near 1 had one core, not two.
    other_cores_used: float
    #: The machine's 1-minute load average at the end of the round (other users included).
    load_average: float
    #: Context switches of the responder's threads per query (voluntary + involuntary): more
    #: runnable threads than cores show here first (2026-12-05, 2 cores: 393 with 4 peer
    #: threads x 2-shard searches, 101 with one peer thread per core).
    responder_switches_per_query: float


async def load(
    req: Requester,
    peer: Peer,
    probes: list[list[TemplateItem]],
    total: int,
    clients: int,
    pid: int,
    offset: int,
) -> Round:
    """``total`` queries with ``clients`` in flight at once; CPU of both processes."""
    next_i, hits, lat = 0, 0, list[float]()

    async def worker() -> None:
        nonlocal next_i, hits
        while next_i < total:
            i = next_i
            next_i += 1
            t = time.perf_counter()
            outcome = await ask(req, peer, probes[(offset + i) % len(probes)])
            lat.append((time.perf_counter() - t) * 1000)
            hits += outcome == "hit"

    m0, r0, c0, t0 = machine_cpu_s(), proc_cpu_s(pid), time.process_time(), time.perf_counter()
    s0 = proc_switches(pid)
    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = time.perf_counter() - t0
    cpu_req, cpu_resp = time.process_time() - c0, proc_cpu_s(pid) - r0
    switches = proc_switches(pid) - s0
    others = machine_cpu_s() - m0 - cpu_req - cpu_resp
    lat.sort()
    return Round(
        queries=total,
        seconds=round(elapsed, 3),
        qps=round(total / elapsed, 1),
        hit_rate=round(hits / total, 3),
        latency_median_ms=round(statistics.median(lat), 1),
        latency_p95_ms=round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 1),
        responder_cpu_ms=round(cpu_resp / total * 1000, 2),
        requester_cpu_ms=round(cpu_req / total * 1000, 2),
        cores_used=round((cpu_resp + cpu_req) / elapsed, 2),
        other_cores_used=round(max(others, 0.0) / elapsed, 2),
        load_average=round(os.getloadavg()[0], 2),
        responder_switches_per_query=round(switches / total, 1),
    )


async def one_round(
    ex: Exchange,
    peer: Peer,
    probes: list[list[TemplateItem]],
    args: argparse.Namespace,
    pid: int,
    offset: int,
) -> Round:
    """A warm-up, then one measured round (new connections to a freshly started node)."""
    await load(ex.requester, peer, probes, args.warmup, args.clients, pid, offset)
    result = await load(
        ex.requester, peer, probes, args.queries, args.clients, pid, offset + args.warmup
    )
    await ex.requester.aclose()
    return result


def search_alone(node: NodeFiles, probes: Sequence[FingerprintTemplate]) -> tuple[float, float]:
    """Median CPU and wall ms of ``search_fingerprint`` on ``node``'s gallery, one at a time."""
    cpu, wall = [], []
    galleries = GallerySet.open(node.settings().gallery_path)
    with galleries, galleries.reading(fingerprint_schema()) as gallery:
        assert gallery is not None
        for t in [match.prepare(p) for p in probes]:
            c0, w0 = time.process_time(), time.perf_counter()
            search_fingerprint(gallery, t, k=10)
            cpu.append((time.process_time() - c0) * 1000)
            wall.append((time.perf_counter() - w0) * 1000)
    return statistics.median(cpu), statistics.median(wall)


def medians(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in rows), 2) for k in rows[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--round-trips", type=int, default=200)
    ap.add_argument("--gallery", type=int, default=10_000)
    ap.add_argument("--distinct", type=int, default=2_000)
    ap.add_argument("--queries", type=int, default=300, help="queries per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--clients", type=int, default=8, help="queries in flight at once")
    ap.add_argument(
        "--baseline-tree",
        type=Path,
        help="also serve ID from this source tree (e.g. an older commit's files), its round "
        "trips and rounds alternating with this tree's, for a before/after under one load",
    )
    ap.add_argument(
        "--search-processes",
        type=int,
        default=usable_cpus(),
        help="this tree's ID: search_processes (default: the usable CPUs; 0 = in its threads)",
    )
    ap.add_argument(
        "--peer-threads", type=int, help="this tree's ID: peer_threads (default: the node's)"
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--round-trips-only", action="store_true", help="skip the gallery phase")
    args = ap.parse_args()
    variants: list[tuple[str, Path | None]] = [("this tree", None)]
    settings = {"BDX_SEARCH_PROCESSES": str(args.search_processes)}
    if args.peer_threads:
        settings["BDX_PEER_THREADS"] = str(args.peer_threads)
    if args.baseline_tree:
        variants.append(("baseline", args.baseline_tree.resolve()))
    out: dict[str, dict[str, object]] = {name: {} for name, _ in variants}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        region = root / "region"
        write_region(build_region(("TH", "ID")), region)
        responder = write_node(root, region, "ID", None)
        asker = write_node(root, region, "TH", responder)
        fingers = synthetic_templates(args.distinct, 2, seed=2027)
        peer = Peer("ID", responder.peer_url)
        with requester_of(asker) as ex:
            for name, source in variants if args.round_trips else []:
                with serving(responder, source, None if source else settings) as pid:
                    rt, base, rt_resp, rt_req = asyncio.run(
                        round_trips(ex, peer, item(fingers[0][1]), args.round_trips, pid)
                    )
                out[name]["round_trip"] = {
                    "median_ms": round(rt, 2),
                    "mtls_get_ms": round(base, 2),
                    "responder_cpu_ms": round(rt_resp, 2),
                    "requester_cpu_ms": round(rt_req, 2),
                }
                print(
                    f"[{name}] round trip (empty gallery): median {rt:.1f} ms; mTLS GET "
                    f"baseline {base:.1f} ms; ratio {rt / base:.1f}x; CPU per query: "
                    f"responder {rt_resp:.2f} ms, requester {rt_req:.2f} ms",
                    flush=True,
                )
            if not args.round_trips_only:
                enrol(responder, [f[0] for f in fingers], args.gallery)
                probes = [item(f[1]) for f in fingers[: min(500, len(fingers))]]
                rows: dict[str, list[dict[str, float]]] = {name: [] for name, _ in variants}
                for k in range(args.rounds):
                    for name, source in variants:
                        with serving(responder, source, None if source else settings) as pid:
                            offset = k * (args.warmup + args.queries)
                            r = asyncio.run(one_round(ex, peer, probes, args, pid, offset))
                        # the search alone on the same files, right after (ID stopped)
                        cpu, wall = search_alone(responder, [f[1] for f in fingers[:50]])
                        row = asdict(r) | {
                            "search_alone_cpu_ms": round(cpu, 2),
                            "search_alone_wall_ms": round(wall, 2),
                            "responder_over_search": round(r.responder_cpu_ms / cpu, 2),
                        }
                        rows[name].append(row)
                        print(f"  [{name}] round {k + 1}: {row}", flush=True)
                for name, _ in variants:
                    med = medians(rows[name])
                    out[name] |= {"rounds": rows[name], "median": med}
                    print(
                        f"[{name}] throughput ({args.gallery} records, {args.clients} in "
                        f"flight, {args.rounds} x {args.queries} queries, medians): "
                        f"{med['qps']:.1f} queries/s, latency median "
                        f"{med['latency_median_ms']:.1f} ms / p95 {med['latency_p95_ms']:.1f} ms,"
                        f" hit rate {med['hit_rate']:.3f}; CPU per query: responder "
                        f"{med['responder_cpu_ms']:.1f} ms ({med['responder_over_search']:.2f}x "
                        f"the search alone, {med['search_alone_cpu_ms']:.1f} ms), requester "
                        f"{med['requester_cpu_ms']:.1f} ms; cores used {med['cores_used']:.2f} "
                        f"of {os.cpu_count()} (other processes: {med['other_cores_used']:.2f}), "
                        f"load average {med['load_average']:.1f}"
                    )
    if args.json:
        print(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **out}))


if __name__ == "__main__":
    main()
