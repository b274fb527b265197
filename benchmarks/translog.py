"""Exchange-log benchmark: append latency, proof generation/verification, checkpoints.

    .venv/bin/python benchmarks/translog.py [--entries 100000] [--json]

SQLite file database (WAL, synchronous=NORMAL, as ``configure_sqlite`` sets it); also
PostgreSQL when BDX_TEST_DATABASE_URL is set (in a throw-away schema). Baselines run in
the same process: single appends vs batched appends, synchronous=NORMAL vs FULL, and
stored-subtree proofs vs recomputing the root from every stored leaf hash.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import Engine, create_engine, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from certs.merkle import (
    CompactRange,
    hash_leaf,
    verify_consistency,
    verify_inclusion,
)
from certs.translog import (
    Checkpoint,
    SignedCheckpoint,
    SigningKey,
    TransparencyLog,
    audit_store,
    export_json,
    metadata,
    verify_export,
)
from certs.translog import schema as tables
from certs.translog.sqlite import configure_sqlite

ORIGIN = "bench.example/exchange-log"
BATCH = 1000
PROOF_SAMPLES = 2000
SIGN_SAMPLES = 300
BASELINE_SAMPLES = 5
EXPORT_ENTRIES = 1000
console = Console(stderr=True)


def event(i: int) -> bytes:
    return (
        '{"decision":"answered","event":"query_received","peer":"fr",'
        f'"policy":"hit_no_hit","query_id":"q-{i:08d}","ts":"2026-11-23T03:00:00Z"}}'
    ).encode()


def ms(ns: float) -> float:
    return ns / 1e6


def pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextmanager
def database(kind: str, tmp: Path, name: str, synchronous: str = "NORMAL") -> Iterator[Engine]:
    if kind == "sqlite":
        engine = create_engine(f"sqlite:///{tmp / name}.db")
        configure_sqlite(engine, synchronous=synchronous)
        metadata.create_all(engine)
        yield engine
        engine.dispose()
        return
    url = os.environ["BDX_TEST_DATABASE_URL"]
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    base = create_engine(url)
    with base.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = base.execution_options(schema_translate_map={None: schema})
    metadata.create_all(engine)
    try:
        yield engine
    finally:
        with base.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        base.dispose()


def timed(fn: Callable[[], Any], n: int) -> list[int]:
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        fn()
        out.append(time.perf_counter_ns() - t)
    return out


def single_appends(log: TransparencyLog, n: int, label: str) -> list[int]:
    lat = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(label, total=n)
        for i in range(n):
            data = event(i)
            t = time.perf_counter_ns()
            log.append(data)
            lat.append(time.perf_counter_ns() - t)
            if i % 500 == 0:
                progress.update(task, completed=i)
    return lat


def run_backend(kind: str, n: int, tmp: Path) -> dict[str, Any]:
    key = SigningKey(ORIGIN, ec.generate_private_key(ec.SECP256R1()))
    res: dict[str, Any] = {"backend": kind, "entries": n}
    with database(kind, tmp, "single") as engine:
        log = TransparencyLog.open(engine, key)
        lat = single_appends(log, n, f"{kind}: {n} single appends")
        res["append_median_ms"] = ms(statistics.median(lat))
        res["append_p99_ms"] = ms(pct(lat, 0.99))
        res["append_total_s"] = sum(lat) / 1e9

        rng = random.Random(7)
        size = log.size()
        root = log.root()
        indices = [rng.randrange(size) for _ in range(PROOF_SAMPLES)]
        proofs = []
        gen = []
        for i in indices:
            t = time.perf_counter_ns()
            proofs.append(log.inclusion_proof(i, size))
            gen.append(time.perf_counter_ns() - t)
        leaves = {i: hash_leaf(event(i)) for i in indices}
        ver = []
        for i, p in zip(indices, proofs, strict=True):
            t = time.perf_counter_ns()
            verify_inclusion(leaves[i], i, size, p, root)
            ver.append(time.perf_counter_ns() - t)
        res["inclusion_gen_median_ms"] = ms(statistics.median(gen))
        res["inclusion_gen_p99_ms"] = ms(pct(gen, 0.99))
        res["inclusion_verify_median_ms"] = ms(statistics.median(ver))
        res["proof_hashes"] = len(proofs[0])

        pairs = [tuple(sorted(rng.sample(range(1, size + 1), 2))) for _ in range(PROOF_SAMPLES)]
        cgen, cver = [], []
        roots = {}
        for m, _ in pairs[:200]:
            roots[m] = log.root(m)
        for m, n2 in pairs[:200]:
            t = time.perf_counter_ns()
            p = log.consistency_proof(m, n2)
            cgen.append(time.perf_counter_ns() - t)
            r2 = roots.get(n2) or log.root(n2)
            t = time.perf_counter_ns()
            verify_consistency(m, n2, p, roots[m], r2)
            cver.append(time.perf_counter_ns() - t)
        res["consistency_gen_median_ms"] = ms(statistics.median(cgen))
        res["consistency_verify_median_ms"] = ms(statistics.median(cver))

        # Baseline: without stored subtrees, a proof means rehashing every leaf hash.
        def naive_root() -> None:
            with engine.connect() as conn:
                cr = CompactRange()
                for h in conn.execute(
                    select(tables.entries.c.leaf_hash).order_by(tables.entries.c.leaf_index)
                ).scalars():
                    cr.append(h)
                assert cr.root() == root

        base = timed(naive_root, BASELINE_SAMPLES)
        res["naive_root_median_ms"] = ms(statistics.median(base))

        res["checkpoint_issue_ecdsa_median_ms"] = ms(
            statistics.median(timed(log.issue_checkpoint, SIGN_SAMPLES))
        )
        cp = Checkpoint(ORIGIN, size, root, int(time.time() * 1000))
        for name, signer in (
            ("ecdsa", key),
            ("ed25519", SigningKey(ORIGIN, ed25519.Ed25519PrivateKey.generate())),
        ):
            sign = functools.partial(SignedCheckpoint.sign, cp, signer)
            res[f"checkpoint_sign_{name}_median_ms"] = ms(
                statistics.median(timed(sign, SIGN_SAMPLES))
            )
        latest = log.issue_checkpoint()
        t = time.perf_counter_ns()
        exported = export_json(log, start=size - EXPORT_ENTRIES, end=size, checkpoint=latest)
        res["export_1000_s"] = (time.perf_counter_ns() - t) / 1e9
        t = time.perf_counter_ns()
        verify_export(exported, log.verifying_key)
        res["verify_export_1000_s"] = (time.perf_counter_ns() - t) / 1e9
        t = time.perf_counter_ns()
        audit_store(log)
        res["audit_store_s"] = (time.perf_counter_ns() - t) / 1e9

    with database(kind, tmp, "batched") as engine:
        log = TransparencyLog.open(engine, key)
        batches = []
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"{kind}: batched appends", total=n)
            for start in range(0, n, BATCH):
                items = [event(i) for i in range(start, min(n, start + BATCH))]
                t = time.perf_counter_ns()
                log.append_many(items)
                batches.append((time.perf_counter_ns() - t) / len(items))
                progress.update(task, completed=start + len(items))
        res["batched_per_entry_median_ms"] = ms(statistics.median(batches))
        res["batched_speedup"] = res["append_median_ms"] / res["batched_per_entry_median_ms"]

    if kind == "sqlite":
        small = min(n, 2000)
        with database(kind, tmp, "full", synchronous="FULL") as engine:
            lat = single_appends(TransparencyLog.open(engine, key), small, "sqlite FULL")
            res["append_full_sync_median_ms"] = ms(statistics.median(lat))
            res["append_full_sync_entries"] = small
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    backends = ["sqlite"] + (["postgresql"] if os.environ.get("BDX_TEST_DATABASE_URL") else [])
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in backends:
            results.append(run_backend(kind, args.entries, Path(tmp)))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    table = Table(title=f"exchange log, {args.entries} entries")
    table.add_column("figure")
    for r in results:
        table.add_column(r["backend"], justify="right")
    for k in results[0]:
        if k in ("backend",):
            continue
        table.add_row(
            k,
            *(
                f"{r[k]:.4g}" if isinstance(r.get(k), float) else str(r.get(k, "-"))
                for r in results
            ),
        )
    Console().print(table)


if __name__ == "__main__":
    main()
