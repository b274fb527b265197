"""The index of sent queries derived from the exchange log (migration 0011,
:mod:`node.repositories.sent_queries`), on SQLite and PostgreSQL: it catches up with the
entries appended since it last read the log, two readers catching up at once index each entry
once, and emptied it is rebuilt the same from the log. (Served between real nodes, through the
API and the CLI: tests/exchange/test_query_history.py.)"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import Engine, delete, func, inspect, select
from sqlalchemy.orm import sessionmaker

from certs.translog import SigningKey, TransparencyLog
from node.db.engine import session_factory
from node.db.models import Role
from node.exchange import params
from node.exchange.eventlog import TranslogExchangeLog
from node.repositories.sent_queries import (
    SentQueryIndex,
    sent_queries,
    sent_query_events,
    sent_query_index_state,
)
from node.services.queries import QueryHistory, Viewer

OFFICER = "user:officer"


def _log(engine: Engine) -> TransparencyLog:
    return TransparencyLog.open(
        engine, SigningKey("test-log", ed25519.Ed25519PrivateKey.generate())
    )


def _query(
    officer: str = OFFICER, case_ref: str = "case-1", peer: str = "ID"
) -> list[dict[str, Any]]:
    """A query sent and its result, as the requester logs them, and an event of another kind."""
    qid = str(uuid.uuid4())
    at = datetime.now(UTC).isoformat()
    return [
        {
            "type": "query_sent",
            "node": "TH",
            "peer": peer,
            "query_id": qid,
            "purpose": "asylum",
            "modality": "fingerprint",
            "templates": 1,
            "case_ref": case_ref,
            "officer": officer,
            "at": at,
        },
        {"type": "query_received", "node": "TH", "peer": "MY", "query_id": str(uuid.uuid4())},
        {
            "type": "reply_received",
            "node": "TH",
            "peer": peer,
            "query_id": qid,
            "status": "answered",
            "outcome": "no_hit",
            "elapsed_ms": 12.0,
            "reply_jws": "x.y.z",
            "at": at,
        },
    ]


def _rows(engine: Engine) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int | None]:
    with engine.connect() as conn:
        queries = conn.execute(
            select(sent_queries.c.query_id, sent_queries.c.sent_index).order_by("sent_index")
        ).all()
        events = conn.execute(
            select(sent_query_events.c.leaf_index, sent_query_events.c.query_id).order_by(
                "leaf_index"
            )
        ).all()
        size = conn.execute(select(sent_query_index_state.c.indexed_size)).scalar()
    return [tuple(r) for r in queries], [tuple(r) for r in events], size


def test_0011_creates_the_index_tables(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert {"sent_queries", "sent_query_events", "sent_query_index_state"} <= tables


def test_the_index_catches_up_with_what_was_appended_since(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _log(engine)
    appended = TranslogExchangeLog(log)
    sessions = session_factory(engine)
    appended.record_many(_query() + _query(case_ref="case-2"))
    with sessions() as session:
        index = SentQueryIndex(log, session)
        index.catch_up()
        rows, total = index.page(
            officer=OFFICER, peer=None, case_ref=None, since=None, limit=10, offset=0
        )
    assert total == 2 and [q.indices for q in rows] == [(0, 2), (3, 5)]
    assert _rows(engine)[2] == 6
    # Appended since: only those entries are read.
    appended.record_many(_query(officer="user:other"))
    read: list[tuple[int, int | None]] = []
    original = log.entries

    def counted(start: int = 0, end: int | None = None) -> Any:
        read.append((start, end))
        return original(start, end)

    monkeypatch.setattr(log, "entries", counted)
    with sessions() as session:
        index = SentQueryIndex(log, session)
        index.catch_up()
        index.catch_up()  # nothing new: nothing read
        assert read == [(6, 9)]
        rows, total = index.page(
            officer=None, peer="ID", case_ref=None, since=None, limit=1, offset=2
        )
        assert total == 3 and [q.indices for q in rows] == [(6, 8)]
        assert [e.index for e in index.entries(rows)] == [6, 8]


def test_the_history_reads_the_queries_through_the_index(engine: Engine) -> None:
    log = _log(engine)
    events = _query() + _query(case_ref="case-2") + _query(officer="user:other")
    TranslogExchangeLog(log).record_many(events)
    with session_factory(engine)() as session:
        history = QueryHistory(log, session)
        page = history.page(Viewer(OFFICER, Role.OFFICER), case_ref="case-2", limit=10)
        assert [q.query_id for q in page.items] == [events[3]["query_id"]]
        assert page.total == 1 and page.items[0].status == "answered"
        shown = history.show(Viewer(OFFICER, Role.OFFICER), events[0]["query_id"])
        assert (shown.case_ref, [r.outcome for r in shown.replies]) == ("case-1", ["no_hit"])


def test_readers_catching_up_at_once_index_each_entry_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(params, "QUERY_INDEX_CHUNK", 8)  # they race for every chunk
    log = _log(engine)
    appended = TranslogExchangeLog(log)
    for _ in range(40):
        appended.record_many(_query())
    sessions: sessionmaker[Any] = session_factory(engine)
    start = threading.Barrier(4)
    failed: list[BaseException] = []

    def reader() -> None:
        start.wait()
        try:
            with sessions() as session:
                SentQueryIndex(log, session).catch_up()
        except BaseException as exc:  # reported below
            failed.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failed == []
    queries, events, size = _rows(engine)
    assert size == 120 and len(queries) == 40 and len(events) == 40
    assert len({q[0] for q in queries}) == 40


def test_an_emptied_index_is_rebuilt_the_same(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(params, "QUERY_INDEX_CHUNK", 4)  # several chunks, one at a time
    log = _log(engine)
    for _ in range(5):
        TranslogExchangeLog(log).record_many(_query())
    with session_factory(engine)() as session:
        SentQueryIndex(log, session).catch_up()
    before = _rows(engine)
    with engine.begin() as conn:
        for table in (sent_query_events, sent_queries, sent_query_index_state):
            conn.execute(delete(table))
        assert conn.execute(select(func.count()).select_from(sent_queries)).scalar() == 0
    with session_factory(engine)() as session:
        SentQueryIndex(log, session).catch_up()
    assert _rows(engine) == before and before[2] == 15 and len(before[0]) == 5
