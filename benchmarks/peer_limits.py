"""One peer against the others, on real nodes: what a certified peer's heavy queries and
refusal floods cost another peer and the responder's exchange log.

Three countries of one region (``tests.exchange.service_support.serving()``: each node is
``create_app`` plus the mutual-TLS peer listener, as ``bdx serve`` runs them, with the project's
PKI, SQLite database, gallery files and exchange log; TH's gallery holds ``--gallery`` records).
ID is the heavy or misbehaving peer, MY an honest one, TH answers. The rules' daily quota is
raised to ``--quota`` so that every heavy query is answered (within quota), as a peer with a
large quota may. Every request is signed and sent over TLS with the peer's own certificates.

* **heavy queries**: MY's query latency (one view, ``asylum``, polled to its reply; median of
  ``--my-queries``) with TH idle, then while ID keeps ``--in-flight`` queries of 10 views of 255
  minutiae each (one quota unit each) in flight, one per connection, in a loop (from
  FLOOD_LEAD_S before MY's first query to MY's last); also ID's heavy queries answered a second
  over that span.
* **refusal flood**: ID posts ``--refusals`` 1-byte bodies to ``/peer/v1/queries`` over
  ``--connections`` connections: the entries TH's exchange log grew by, and the statuses.
* **witness refusals** (``--witness``, 0 to skip): ID has TH cosign its log checkpoint at size
  1000, then asks ``--witness`` times over 8 connections for a cosignature of size 999 (a
  rollback, refused), each note padded with 95 junk signature lines: TH's log entries and
  database bytes added.

Each round runs in a fresh process on fresh nodes. ``--baseline-rev REV`` runs the same
measurement against REV's source tree (``git archive`` into a temporary directory; this
script, on this venv, imports that tree's ``node``, ``certs``, ``matcher`` and ``tests``
instead of this one's), rounds alternating with this tree's; medians per tree. Each tree first
runs one tiny untimed round (its numba kernels compiled and cached). ``--baseline-tree DIR``:
the same with a checkout, e.g. ``git worktree add /tmp/base cebbcca``.

Run: ``.venv/bin/python benchmarks/peer_limits.py --baseline-rev cebbcca`` (cebbcca: the commit
before the per-peer limits); ``--help`` for the sizes, ``--json`` for a machine-readable summary.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures as cf
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: Environment variable naming the source tree a round imports (set for the child processes).
TREE_ENV = "BDX_PEER_LIMITS_TREE"
HERE = Path(__file__).resolve().parents[1]
TREE = Path(os.environ.get(TREE_ENV) or HERE)
sys.path.insert(0, str(TREE))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

import tests.exchange.service_support as support  # noqa: E402
from certs import jws  # noqa: E402
from certs.pki.bootstrap import Region, build_region, write_region  # noqa: E402
from certs.pki.tls import client_context  # noqa: E402
from certs.translog import Checkpoint, SignedCheckpoint, SigningKey  # noqa: E402
from certs.translog.note import Note, NoteSignature  # noqa: E402
from matcher.fingerprint import iso19794_2  # noqa: E402
from matcher.fingerprint.template import FingerprintTemplate  # noqa: E402
from matcher.synthetic import synthetic_templates  # noqa: E402
from node.exchange import params  # noqa: E402
from node.exchange.messages import QueryPayload, TemplateItem, b64url, new_nonce  # noqa: E402

COUNTRIES = ("TH", "ID", "MY")
HEAVY_VIEWS = 10
HEAVY_MINUTIAE = 255
#: Seconds ID's heavy queries run before MY's timed queries start (the threads fill up).
FLOOD_LEAD_S = 3.0
JOSE = {"content-type": "application/jose"}


def raise_quota(quota: int) -> None:
    """The nodes' rules as ``service_support.rules`` writes them, fingerprint quota ``quota``."""
    rules = support.rules

    def raised(country: str, peers: Sequence[str]) -> str:
        return rules(country, peers).replace("fingerprint = 100 ", f"fingerprint = {quota} ")

    support.rules = raised


def peer_client(region_dir: Path, country: str) -> httpx.Client:
    """A client with ``country``'s TLS certificate, as that country's node connects."""
    files = region_dir / "nodes" / country.lower()
    ctx = client_context(files / "tls.pem", files / "tls.key", region_dir / "root.pem")
    return httpx.Client(verify=ctx, timeout=120)


def signed_query(region: Region, frm: str, to: str, items: list[TemplateItem], purpose: str) -> str:
    q = QueryPayload(
        query_id=uuid.uuid4(),
        requester=frm,
        responder=to,
        created=datetime.now(UTC),
        nonce=new_nonce(),
        purpose=purpose,
        modality="fingerprint",
        templates=items,
        case_ref=None,
    )
    m = region.nodes[frm]
    return jws.sign(q.wire(), m.signing_key, [m.signing_cert], typ=params.QUERY_TYP)


def ask(client: httpx.Client, peer_url: str, token: str) -> tuple[str, float]:
    """Post a query and poll its reply; (final status and the reply's outcome, seconds)."""
    t0 = time.perf_counter()
    r = client.post(peer_url + "/peer/v1/queries", content=token, headers=JOSE)
    while r.status_code == 202:
        time.sleep(0.05)
        r = client.get(peer_url + r.headers["location"])
    dt = time.perf_counter() - t0
    if r.status_code != 200:
        return str(r.status_code), dt
    payload = r.text.split(".")[1]
    reply = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"200 {reply.get('outcome')}", dt


def item(t: FingerprintTemplate, pos: int = 1) -> TemplateItem:
    return TemplateItem(
        format="iso19794-2:2005",
        format_version=20,
        finger_position=pos,
        data=b64url(iso19794_2.encode(t)),
    )


def heavy(t: FingerprintTemplate, pos: int, rng: np.random.Generator) -> FingerprintTemplate:
    """``t`` padded with random minutiae up to HEAVY_MINUTIAE, as finger ``pos``."""
    k = HEAVY_MINUTIAE - t.count
    return FingerprintTemplate(
        np.concatenate([t.x, rng.uniform(0, t.width - 1, k)]),
        np.concatenate([t.y, rng.uniform(0, t.height - 1, k)]),
        np.concatenate([t.angle, rng.uniform(0, 2 * np.pi, k)]),
        np.concatenate([t.kind, np.ones(k, np.uint8)]),
        np.concatenate([t.quality, np.full(k, 60, np.uint8)]),
        t.width,
        t.height,
        finger_position=pos,
        orientation=t.orientation,
    )


def heavy_phase(args: argparse.Namespace, region: Region, region_dir: Path, th: Any) -> dict:
    fingers = synthetic_templates(200, 2, seed=9)
    for rep in range(max(1, args.gallery // len(fingers))):
        th.enrol([f"s{rep}-{i}" for i in range(len(fingers))], [f[0] for f in fingers])
    rng = np.random.default_rng(1)
    heavy_items = [item(heavy(fingers[150 + i][1], i + 1, rng), i + 1) for i in range(HEAVY_VIEWS)]
    my_item = [item(fingers[3][1])]
    url = th.peer_url
    my = peer_client(region_dir, "MY")

    def my_latency() -> list[float]:
        times = []
        for _ in range(args.my_queries):
            status, dt = ask(my, url, signed_query(region, "MY", "TH", my_item, "asylum"))
            if status not in ("200 hit", "200 no_hit"):
                raise SystemExit(f"MY's query answered {status}")
            times.append(dt * 1000)
        return times

    with peer_client(region_dir, "ID") as c:  # warm up both peers' paths
        ask(c, url, signed_query(region, "ID", "TH", heavy_items, "border_control"))
    my_latency()
    alone = my_latency()
    stop = threading.Event()
    statuses: Counter[str] = Counter()
    lock = threading.Lock()

    def flood() -> None:
        with peer_client(region_dir, "ID") as c:
            while not stop.is_set():
                tok = signed_query(region, "ID", "TH", heavy_items, "border_control")
                status, _ = ask(c, url, tok)
                with lock:
                    statuses[status] += 1

    threads = [threading.Thread(target=flood) for _ in range(args.in_flight)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(FLOOD_LEAD_S)
    during = my_latency()
    stop.set()
    for t in threads:
        t.join()
    span = time.perf_counter() - t0
    answered = dict(statuses)
    my.close()
    return {
        "my_alone_ms": round(statistics.median(alone), 1),
        "my_during_ms": round(statistics.median(during), 1),
        "id_heavy_statuses": dict(sorted(answered.items())),
        "id_heavy_per_s": round(
            sum(v for k, v in answered.items() if k.startswith("200")) / span, 2
        ),
    }


def refusal_phase(args: argparse.Namespace, region_dir: Path, th: Any) -> dict:
    log = th.app.state.exchange_log
    url = th.peer_url + "/peer/v1/queries"
    per = args.refusals // args.connections

    def junk(_: int) -> Counter[int]:
        codes: Counter[int] = Counter()
        with peer_client(region_dir, "ID") as c:
            for _ in range(per):
                codes[c.post(url, content=b"x", headers=JOSE).status_code] += 1
        return codes

    s0, t0 = log.size(), time.perf_counter()
    with cf.ThreadPoolExecutor(args.connections) as ex:
        codes = sum(ex.map(junk, range(args.connections)), Counter())
    dt = time.perf_counter() - t0
    return {
        "sent": per * args.connections,
        "log_entries": log.size() - s0,
        "statuses": {str(k): v for k, v in sorted(codes.items())},
        "seconds": round(dt, 1),
    }


def witness_phase(args: argparse.Namespace, region: Region, region_dir: Path, th: Any) -> dict:
    log = th.app.state.exchange_log
    db_dir = args.work / "data" / "th"
    url = th.peer_url + "/peer/v1/witness"
    origin = "bdx.id/exchange-log"
    key = SigningKey(origin, region.nodes["ID"].signing_key)
    now_ms = int(time.time() * 1000)
    padding = tuple(NoteSignature(f"x{i}", b"\0\0\0\0", os.urandom(40)) for i in range(95))

    def note(size: int) -> str:
        signed = SignedCheckpoint.sign(Checkpoint(origin, size, os.urandom(32), now_ms), key)
        return Note(signed.note.text, signed.note.signatures + padding).encode().decode()

    def db_bytes() -> int:
        return sum(f.stat().st_size for f in db_dir.glob("*.sqlite3*"))

    with peer_client(region_dir, "ID") as c:
        first = c.post(url, json={"checkpoint": note(1000), "old_size": 0}).status_code
    per = args.witness // 8

    def spam(_: int) -> Counter[int]:
        codes: Counter[int] = Counter()
        with peer_client(region_dir, "ID") as c:
            for _ in range(per):
                r = c.post(url, json={"checkpoint": note(999), "old_size": 1000})
                codes[r.status_code] += 1
        return codes

    s0, b0, t0 = log.size(), db_bytes(), time.perf_counter()
    with cf.ThreadPoolExecutor(8) as ex:
        codes = sum(ex.map(spam, range(8)), Counter())
    return {
        "first_cosign_status": first,
        "sent": per * 8,
        "log_entries": log.size() - s0,
        "db_kib": round((db_bytes() - b0) / 1024),
        "statuses": {str(k): v for k, v in sorted(codes.items())},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def measure(args: argparse.Namespace) -> dict:
    """One round on fresh nodes of the tree this process imports."""
    raise_quota(args.quota)
    with tempfile.TemporaryDirectory() as tmp:
        args.work = Path(tmp)
        region = build_region(COUNTRIES)
        region_dir = args.work / "region"
        write_region(region, region_dir)
        with support.serving(args.work / "data", region_dir, COUNTRIES) as nodes:
            th = nodes["TH"]
            out = {"heavy": heavy_phase(args, region, region_dir, th)}
            out["refusals"] = refusal_phase(args, region_dir, th)
            if args.witness:
                out["witness"] = witness_phase(args, region, region_dir, th)
    return out


def run_round(argv: list[str], tree: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {TREE_ENV: str(tree)}
    argv = [sys.executable, __file__, "--one-round", *argv]
    return subprocess.run(argv, env=env, capture_output=True, text=True, cwd=tree)


#: A tiny round, untimed, before the measured ones: a fresh tree (``git archive``, a new
#: worktree) compiles its numba kernels at its nodes' first start, which under load can take
#: longer than ``serving()`` waits for a node (20 s); the compiled kernels are cached in the tree.
WARM_UP = ["--gallery", "200", "--my-queries", "1", "--in-flight", "1", "--refusals", "8"]
WARM_UP_TRIES = 3


def warm_up(tree: Path) -> None:
    for _ in range(WARM_UP_TRIES):
        if run_round([*WARM_UP, "--connections", "1", "--witness", "0"], tree).returncode == 0:
            return


def child(args: argparse.Namespace, tree: Path) -> dict:
    """One round in a fresh process importing ``tree``."""
    done = run_round(child_args(args), tree)
    if done.returncode != 0:
        sys.exit(f"round on {tree} failed:\n{done.stderr[-3000:]}")
    result: dict = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def child_args(args: argparse.Namespace) -> list[str]:
    names = ("gallery", "quota", "in_flight", "my_queries", "refusals", "connections", "witness")
    return [a for n in names for a in (f"--{n.replace('_', '-')}", str(getattr(args, n)))]


def export(rev: str, into: Path) -> Path:
    """REV's tracked files under ``into`` (``git archive``; the repository is not written)."""
    tree = into / rev
    tree.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(HERE), "archive", "--format=tar", rev],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def median_of(rows: list[dict], *path: str) -> float | None:
    values = []
    for row in rows:
        v: Any = row
        for p in path:
            v = v.get(p) if isinstance(v, dict) else None
        if isinstance(v, int | float):
            values.append(v)
    return round(statistics.median(values), 1) if values else None


SUMMARY = {
    "my_alone_ms": ("heavy", "my_alone_ms"),
    "my_during_heavy_ms": ("heavy", "my_during_ms"),
    "id_heavy_answered_per_s": ("heavy", "id_heavy_per_s"),
    "refusal_log_entries": ("refusals", "log_entries"),
    "refusal_429": ("refusals", "statuses", "429"),
    "witness_log_entries": ("witness", "log_entries"),
    "witness_db_kib": ("witness", "db_kib"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gallery", type=int, default=1000, help="TH's fingerprint records")
    ap.add_argument("--quota", type=int, default=100_000, help="daily fingerprint quota")
    ap.add_argument("--in-flight", type=int, default=8, help="ID's heavy queries in flight")
    ap.add_argument("--my-queries", type=int, default=7, help="MY's timed queries per median")
    ap.add_argument("--refusals", type=int, default=2000, help="ID's 1-byte bodies")
    ap.add_argument("--connections", type=int, default=8, help="ID's connections, refusals")
    ap.add_argument("--witness", type=int, default=400, help="rollback requests (0: skip)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per tree, alternating")
    ap.add_argument("--baseline-rev", help="git revision to measure too (e.g. cebbcca)")
    ap.add_argument("--baseline-tree", type=Path, help="or a source tree to measure too")
    ap.add_argument("--json", action="store_true", help="print a JSON summary")
    ap.add_argument("--one-round", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one_round:
        print(json.dumps(measure(args)), flush=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this tree": HERE}
        if args.baseline_rev:
            trees[f"baseline {args.baseline_rev}"] = export(args.baseline_rev, Path(tmp))
        elif args.baseline_tree:
            trees[f"baseline {args.baseline_tree}"] = args.baseline_tree.resolve()
        for tree in trees.values():
            warm_up(tree)
        rows: dict[str, list[dict]] = {name: [] for name in trees}
        for k in range(args.rounds):
            order = list(trees.items()) if k % 2 == 0 else list(reversed(trees.items()))
            for name, tree in order:
                row = child(args, tree)
                rows[name].append(row)
                if not args.json:
                    print(f"round {k + 1} [{name}]: {json.dumps(row)}", flush=True)
    summary = {
        name: {key: median_of(r, *path) for key, path in SUMMARY.items()}
        for name, r in rows.items()
    }
    if args.json:
        print(
            json.dumps(
                {"args": vars(args), "median": summary, "rounds": rows},
                default=str,
            )
        )
        return
    for name, s in summary.items():
        print(f"median [{name}]: " + ", ".join(f"{k} {v}" for k, v in s.items()))


if __name__ == "__main__":
    main()
