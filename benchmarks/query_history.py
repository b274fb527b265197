"""Officers' query history (``GET /queries``, ``GET /queries/{id}``) on a large exchange log.

    .venv/bin/python benchmarks/query_history.py [--entries 25000 100000]

A migrated SQLite file database and its exchange log, filled with ``--entries`` entries
(half ``query_sent``, half ``reply_received`` with a 1.5 kB signed reply, as the requester
logs them; one officer's two queries among another's). For each size, in one process:

* ``scan``: the history as it was read before the index, every entry of the log decoded at
  each request (:func:`node.audit.query.iter_events`);
* ``first``: the first catch-up of the index (:mod:`node.repositories.sent_queries`) after
  the entries were appended, to the end, as housekeeping's after an upgrade to 0011 (a reading
  that far behind answers 503 ``history_indexing``), then a first reading;
* ``later``: the readings after it (best of five): an officer's listing, one query shown, an
  admin's first page;
* ``+1000``: a reading after 1,000 more entries were appended (its catch-up reads those).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from certs.translog import SigningKey, TransparencyLog
from node.audit.query import AuditFilter, iter_events
from node.db.engine import create_db_engine, session_factory
from node.db.migrate import upgrade
from node.db.models import Role
from node.exchange.eventlog import TranslogExchangeLog
from node.services.queries import QueryHistory, Viewer, _assemble

OFFICER = Viewer("user:officer", Role.OFFICER)
ADMIN = Viewer("user:admin", Role.ADMIN)


def _pair(officer: str, case_ref: str) -> list[dict[str, Any]]:
    qid = str(uuid.uuid4())
    at = datetime.now(UTC).isoformat()
    sent = {"type": "query_sent", "node": "TH", "peer": "ID", "query_id": qid}
    sent |= {"purpose": "asylum", "modality": "fingerprint", "templates": 1, "at": at}
    reply = {"type": "reply_received", "node": "TH", "peer": "ID", "query_id": qid}
    reply |= {"status": "answered", "outcome": "no_hit", "reply_jws": "x" * 1500, "at": at}
    return [sent | {"case_ref": case_ref, "officer": officer}, reply]


def _fill(log: TranslogExchangeLog, entries: int) -> None:
    batch: list[dict[str, Any]] = []
    for i in range(entries // 2):
        batch += _pair("user:officer2", f"bulk-{i}")
        if len(batch) >= 1000:
            log.record_many(batch)
            batch = []
    log.record_many(batch)


def _ms(f: Callable[[], object], reps: int = 1) -> float:
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best * 1000


def _timings(history: QueryHistory, qid: str) -> tuple[float, float, float, float]:
    """The first catch-up and reading, then the best of five of each later one."""
    with history.session:
        return (
            _ms(lambda: (history.index.catch_up(), history.page(OFFICER, limit=10))),
            _ms(lambda: history.page(OFFICER, limit=10), 5),
            _ms(lambda: history.show(OFFICER, qid), 5),
            _ms(lambda: history.page(ADMIN, limit=100), 5),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, nargs="+", default=[25000, 100000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_db_engine(f"sqlite:///{Path(tmp) / 'node.sqlite3'}")
        upgrade(engine)
        log = TransparencyLog.open(
            engine, SigningKey("bench", ed25519.Ed25519PrivateKey.generate())
        )
        appended = TranslogExchangeLog(log)
        sessions = session_factory(engine)
        appended.record_many(_pair("user:officer", "mine") + _pair("user:officer", "mine"))
        mine = next(iter(iter_events(log, AuditFilter())))
        qid = mine.event["query_id"]
        print("entries | scan (before) | first (catch-up) | later: own / show / admin | +1000")
        for size in args.entries:
            _fill(appended, size - log.size())
            scan = _ms(lambda: _assemble(iter_events(log, AuditFilter())))
            first, own, show, admin = _timings(QueryHistory(log, sessions()), qid)
            indexed = log.size()
            _fill(appended, 1000)
            with sessions() as session:
                more = _ms(lambda s=session: QueryHistory(log, s).page(OFFICER, limit=10))
            print(
                f"{indexed:>7} | {scan:>10.0f} ms | {first:>13.0f} ms | "
                f"{own:.1f} / {show:.1f} / {admin:.1f} ms | {more:.0f} ms"
            )
        engine.dispose()


if __name__ == "__main__":
    main()
