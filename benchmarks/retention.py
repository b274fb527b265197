"""Retention of the exchange log (``bdx audit prune``) on a large log.

    .venv/bin/python benchmarks/retention.py [--entries 25000 100000]

A migrated SQLite file database and its exchange log, filled with ``--entries`` entries as
``benchmarks/query_history.py`` fills it (half ``query_sent``, half ``reply_received`` with a
1.5 kB signed reply), all of them aged past ``exchange_log_days`` (their store times moved
back, as two years cannot pass in a run), then a checkpoint signed over them (it covers them
all, so it proves none of them recent). For each size, in one process:

* ``dry run``: :func:`node.audit.retention.prune` counting what it would delete;
* ``prune``: the same pruning every entry (batches of ``PRUNE_BATCH``, the history index
  forgetting its queries in the same transactions), in entries per second;
* ``audit``: :func:`certs.translog.audit_store` over the whole log before and after (the
  pruned entries are checked by their leaf hashes, not re-hashed from their bytes), and the
  ratio after / before;
* the database file before and after, each measured after a ``VACUUM`` (which the node does
  not run: SQLite reuses the freed pages for later entries).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import text, update

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.query_history import _fill
from certs.translog import SigningKey, TransparencyLog, audit_store
from certs.translog import schema as log_schema
from node.audit import retention
from node.db.engine import create_db_engine
from node.db.migrate import upgrade
from node.exchange.eventlog import TranslogExchangeLog
from node.settings import Settings

#: How far back the entries' store times are moved: past the horizon.
AGED = timedelta(days=int(Settings.model_fields["exchange_log_days"].default) + 1)


def _s(f: object) -> float:
    t = time.perf_counter()
    f()  # type: ignore[operator]
    return time.perf_counter() - t


def run(size: int, tmp: Path) -> str:
    path = tmp / f"node-{size}.sqlite3"
    engine = create_db_engine(f"sqlite:///{path}")
    upgrade(engine)
    log = TransparencyLog.open(engine, SigningKey("bench", ed25519.Ed25519PrivateKey.generate()))
    _fill(TranslogExchangeLog(log), size)
    t = log_schema.entries
    with engine.begin() as conn:  # aged: appended longer ago than exchange_log_days
        conn.execute(update(t).values(created_at=datetime.now(UTC) - AGED))
    log.issue_checkpoint()  # signed now: it proves none of them recent (all below its size)
    with engine.connect() as conn:
        conn.execute(text("VACUUM"))
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))  # WAL mode: into the file
    full = path.stat().st_size
    days = int(Settings.model_fields["exchange_log_days"].default)
    before = _s(lambda: audit_store(log))
    dry = _s(lambda: retention.prune(log, engine, days, dry_run=True))
    reports: list[retention.RetentionReport] = []
    pruned = _s(lambda: reports.append(retention.prune(log, engine, days)))
    log.issue_checkpoint()  # over the log_pruned events
    after = _s(lambda: audit_store(log))
    with engine.connect() as conn:
        conn.execute(text("VACUUM"))
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))  # WAL mode: into the file
    vacuumed = path.stat().st_size
    engine.dispose()
    report = reports[0]
    return (
        f"{size:>7} | {dry * 1000:>6.0f} ms | {report.entries_pruned:>7} in {pruned:.1f} s "
        f"({report.entries_pruned / pruned:,.0f}/s) | {before:.2f} -> {after:.2f} s "
        f"({after / before:.2f}x) | {full / 1e6:.1f} -> {vacuumed / 1e6:.1f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, nargs="+", default=[25000, 100000])
    args = parser.parse_args()
    print("entries | dry run | pruned (rate) | audit before -> after (ratio) | file size")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.entries:
            print(run(size, Path(tmp)), flush=True)


if __name__ == "__main__":
    main()
