"""Node service overheads: request latency through a real uvicorn server, and start-up
reconciliation of the database with the gallery store.

    .venv/bin/python benchmarks/node_api.py [--repeat 300] [--subjects 1000] [--records 100000]
        [--database-url URL] [--json]

Latency: keep-alive httpx client against uvicorn on loopback (one process, server in a thread),
SQLite file by default. Baseline in the same process: ``GET /health`` (no token, one
``SELECT 1``). Reconciliation: ``--records`` active rows and gallery entries; baseline: listing
the gallery's live references alone.
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import uvicorn
from sqlalchemy import insert

from matcher.gallery import FieldSpec, GallerySchema, RecordBatch
from node.api.app import create_app
from node.db.engine import create_db_engine, session_factory
from node.db.migrate import upgrade
from node.db.models import Modality, RecordState, Role, Subject, TemplateRecord
from node.services.galleries import GallerySet, subject_key
from node.services.records import RecordService
from node.services.users import UserService
from node.settings import Settings

SCHEMA = GallerySchema("face", "bench-embedding", 1, {"embedding": FieldSpec("float32", (8,))})


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def interleaved(ops: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median milliseconds of each op, timed round-robin so load drifts hit all alike."""
    samples: dict[str, list[float]] = {name: [] for name in ops}
    for _ in range(repeat):
        for name, op in ops.items():
            start = time.perf_counter()
            op()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) * 1e3 for name, v in samples.items()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def latency(url: str, root: Path, repeat: int, n_subjects: int) -> list[dict[str, object]]:
    engine = create_db_engine(url)
    upgrade(engine)
    with session_factory(engine)() as s:
        users = UserService(s)
        users.add_user("bench-op", Role.OPERATOR, actor="bench")
        token = users.issue_token("bench-op", expires_days=1, actor="bench").token
        s.execute(insert(Subject), [{"external_id": f"p-{i}"} for i in range(n_subjects)])
        s.commit()
    settings = Settings(data_dir=root, database_url=url, country="XA")
    with GallerySet.open(root / "galleries") as galleries:
        app = create_app(settings, engine=engine, gallery=galleries)
        config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{config.port}") as http:
            for _ in range(20):  # warm-up
                http.get("/health")
                http.get("/users/me", headers=headers)
            ops: dict[str, Callable[[], object]] = {
                "GET /health": lambda: http.get("/health"),
                "GET /users/me (token check)": lambda: http.get("/users/me", headers=headers),
                f"GET /subjects?limit=100 ({n_subjects} subjects)": lambda: http.get(
                    "/subjects?limit=100", headers=headers
                ),
                "GET /subjects without a token (401)": lambda: http.get("/subjects"),
            }
            times = interleaved(ops, repeat)
            base = times.pop("GET /health")
            rows = [
                {"operation": name, "median_ms": ms, "baseline_ms": base}
                for name, ms in times.items()
            ]
        server.should_exit = True
        thread.join()
    engine.dispose()
    return rows


def reconcile(url: str, root: Path, n: int) -> dict[str, object]:
    engine = create_db_engine(url)
    upgrade(engine)
    refs = [secrets.token_hex(16) for _ in range(n)]
    with session_factory(engine)() as s:
        s.execute(insert(Subject), [{"external_id": "bulk"}])
        s.execute(
            insert(TemplateRecord),
            [
                {
                    "reference": r,
                    "subject_id": 1,
                    "modality": Modality.FACE,
                    "format": SCHEMA.format,
                    "format_version": SCHEMA.format_version,
                    "restrictions": {},
                    "state": RecordState.ACTIVE,
                }
                for r in refs
            ],
        )
        s.commit()
    with GallerySet.open(root / "galleries") as galleries:
        emb = np.random.default_rng(0).standard_normal((n, 8)).astype(np.float32)
        batch = RecordBatch.build(
            refs,
            [subject_key(1)] * n,
            np.full(n, -1),
            {"embedding": emb},
            format=SCHEMA.format,
            format_version=SCHEMA.format_version,
        )
        galleries.append(SCHEMA, batch)
        base = median_ms(galleries.references, 5)
        with session_factory(engine)() as s:
            ms = median_ms(lambda: RecordService(s, galleries).reconcile(), 5)
    engine.dispose()
    return {"operation": f"start-up reconcile, {n} records", "median_ms": ms, "baseline_ms": base}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--subjects", type=int, default=1000)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = latency(
            args.database_url or f"sqlite:///{root / 'a.sqlite3'}",
            root / "a",
            args.repeat,
            args.subjects,
        )
        if args.database_url is None:
            rows.append(reconcile(f"sqlite:///{root / 'b.sqlite3'}", root / "b", args.records))
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        return
    print("| operation | median | baseline (same process) | ratio |")
    print("|---|---|---|---|")
    for row in rows:
        ms, base = float(row["median_ms"]), float(row["baseline_ms"])  # type: ignore[arg-type]
        print(f"| {row['operation']} | {ms:.2f} ms | {base:.2f} ms | {ms / base:.1f}x |")


if __name__ == "__main__":
    main()
