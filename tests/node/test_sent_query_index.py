"""The index of sent queries derived from the exchange log (migration 0011,
:mod:`node.repositories.sent_queries`), on SQLite and PostgreSQL: it catches up with the
entries appended since it last read the log, two readers catching up at once index each entry
once (one that read the log's size before another moved the index on resets nothing), emptied
or holding another log (one of the same size or larger) it is rebuilt from the log, an
IntegrityError is raised rather than retried, and a reading catches up a few chunks at most.
(Served between real nodes, through the API and the CLI: tests/exchange/test_query_history.py.)"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import Engine, delete, func, insert, inspect, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from certs.translog import SigningKey, TransparencyLog
from certs.translog import schema as log_schema
from node.audit import retention
from node.db.engine import session_factory
from node.db.models import Role
from node.errors import NotFoundError
from node.exchange import params
from node.exchange.eventlog import TranslogExchangeLog
from node.repositories.sent_queries import (
    SentQueryIndex,
    sent_queries,
    sent_query_events,
    sent_query_index_state,
)
from node.service_errors import RetryLaterError
from node.services.queries import QueryHistory, Viewer
from node.settings import Settings

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


def test_a_catch_up_that_read_the_log_size_before_another_moved_on_resets_nothing(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader reads the log's size; before it reads the indexed size, the log grows and
    another reader indexes it all: the index is beyond the size the first read, which is no
    reason to empty it (it was, and rebuilt only up to that stale size)."""
    monkeypatch.setattr(params, "QUERY_INDEX_CHUNK", 4)
    log = _log(engine)
    appended = TranslogExchangeLog(log)
    appended.record_many(_query() + _query())
    sessions = session_factory(engine)
    original = log.size
    raced: list[int] = []

    def size_then_another_catches_up() -> int:
        value = original()
        if not raced:  # the first reading only: the other reader's own go through
            raced.append(value)
            appended.record_many(_query() + _query())
            with sessions() as other:
                SentQueryIndex(log, other).catch_up()
        return value

    monkeypatch.setattr(log, "size", size_then_another_catches_up)
    with sessions() as session:
        SentQueryIndex(log, session).catch_up()
    queries, events, size = _rows(engine)
    assert raced == [6] and size == 12 and len(queries) == 4 and len(events) == 4


def test_a_chunk_being_indexed_holds_back_the_other_readers(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader indexing a chunk holds the lock: another reader waits for it, then finds the
    chunk done and indexes the next, so no entry is indexed twice or by two at once."""
    monkeypatch.setattr(params, "QUERY_INDEX_CHUNK", 3)
    log = _log(engine)
    TranslogExchangeLog(log).record_many(_query() + _query())
    sessions = session_factory(engine)
    original = log.entries
    inside, release = threading.Event(), threading.Event()
    read: list[tuple[str, int, int | None]] = []

    def entries(start: int = 0, end: int | None = None) -> Any:
        name = threading.current_thread().name
        read.append((name, start, end))
        if name == "first" and start == 0:
            inside.set()
            release.wait(10)
        return original(start, end)

    monkeypatch.setattr(log, "entries", entries)
    failed: list[BaseException] = []

    def reader() -> None:
        try:
            with sessions() as session:
                SentQueryIndex(log, session).catch_up()
        except BaseException as exc:  # reported below
            failed.append(exc)

    first = threading.Thread(target=reader, name="first")
    first.start()
    assert inside.wait(10)
    second = threading.Thread(target=reader, name="second")
    second.start()
    second.join(0.5)  # it waits for the lock the first holds (SQLite: the write lock)
    assert second.is_alive() and [r for r in read if r[0] == "second"] == []
    release.set()
    first.join(10)
    second.join(10)
    assert failed == [] and not first.is_alive() and not second.is_alive()
    assert sorted((start, end) for _, start, end in read) == [(0, 3), (3, 6)]
    queries, events, size = _rows(engine)
    assert size == 6 and len(queries) == 2 and len(events) == 2


def _replace_log(engine: Engine, events: list[dict[str, Any]]) -> TransparencyLog:
    """The log's tables emptied and another log written there (a restore from another
    backup than the index's), with ``events``; the index's tables are left as they were."""
    with engine.begin() as conn:
        for table in reversed(log_schema.metadata.sorted_tables):
            conn.execute(delete(table))
    log = _log(engine)
    TranslogExchangeLog(log).record_many(events)
    return log


@pytest.mark.parametrize("more", [0, 3], ids=["same-size", "larger"])
def test_an_index_of_a_replaced_log_is_rebuilt(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, more: int
) -> None:
    monkeypatch.setattr(params, "QUERY_INDEX_CHUNK", 4)
    old = _query(case_ref="old-1") + _query(case_ref="old-2")
    log = _log(engine)
    TranslogExchangeLog(log).record_many(old)
    sessions = session_factory(engine)
    with sessions() as session:
        SentQueryIndex(log, session).catch_up()
    new = [_query(case_ref=f"new-{i}") for i in range(2 + more // 3)]
    log = _replace_log(engine, [e for q in new for e in q])
    assert log.size() == len(old) + more
    with sessions() as session:
        page = QueryHistory(log, session).page(Viewer("user:admin", Role.ADMIN), limit=10)
    assert [q.case_ref for q in page.items] == [f"new-{i}" for i in range(len(new))]
    queries, events, size = _rows(engine)
    assert size == log.size() and {q[0] for q in queries} == {q[0]["query_id"] for q in new}
    assert len(events) == len(new)


def test_an_integrity_error_is_raised_not_retried(engine: Engine) -> None:
    """A row the catch-up is about to write already there is a bug (under the lock no entry is
    indexed twice): it is raised, nothing of the chunk is kept, rather than retried forever."""
    log = _log(engine)
    TranslogExchangeLog(log).record_many(_query())
    with engine.begin() as conn:  # entry 2 (a reply_received) indexed, the size not moved
        conn.execute(insert(sent_query_events).values(leaf_index=2, query_id="stray"))
    outcome: list[BaseException | None] = []

    def reader() -> None:
        try:
            with session_factory(engine)() as session:
                SentQueryIndex(log, session).catch_up()
            outcome.append(None)
        except BaseException as exc:  # checked below
            outcome.append(exc)

    thread = threading.Thread(target=reader, daemon=True)  # the retrying loop never ended
    thread.start()
    thread.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], IntegrityError)
    queries, events, size = _rows(engine)
    assert queries == [] and events == [(2, "stray")] and not size


def test_a_reading_catches_up_a_few_chunks_at_most(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Further behind than ``QUERY_INDEX_REQUEST_CHUNKS`` chunks, a reading answers
    ``history_indexing`` (503) at once, rather than indexing the whole log or answering part of
    it; within them (the rest indexed by housekeeping's catch-up) it indexes them and answers."""
    monkeypatch.setattr(params, "QUERY_INDEX_CHUNK", 2)
    monkeypatch.setattr(params, "QUERY_INDEX_REQUEST_CHUNKS", 2)
    log = _log(engine)
    TranslogExchangeLog(log).record_many(_query() + _query())  # 6 entries: 3 chunks
    sessions = session_factory(engine)
    officer = Viewer(OFFICER, Role.OFFICER)
    with sessions() as session, pytest.raises(RetryLaterError) as refused:
        QueryHistory(log, session).page(officer, limit=10)
    assert refused.value.reason == "history_indexing"
    assert refused.value.retry_after_s == params.QUERY_INDEX_RETRY_AFTER_S
    assert not _rows(engine)[2]  # it indexed nothing
    with sessions() as session:  # housekeeping's round, bounded to one chunk here
        assert SentQueryIndex(log, session).catch_up(1) is False
    assert _rows(engine)[2] == 2
    with sessions() as session:  # 2 chunks behind: the reading indexes them
        assert QueryHistory(log, session).page(officer, limit=10).total == 2
    assert _rows(engine)[2] == 6


def test_many_readings_at_once_do_not_empty_the_connection_pool(engine: Engine) -> None:
    """20 readings of an index a little behind the log, at once (as 20 officers' listings): the
    chunk holding the state row reads the log through the pool's other connections, so the
    readings queued behind it must not each hold one (they emptied the pool of 15: a 30 s wait
    then TimeoutError on PostgreSQL, 'database is locked' after 15 s on SQLite)."""
    log = _log(engine)
    TranslogExchangeLog(log).record_many([e for _ in range(3000) for e in _query()])
    sessions = session_factory(engine)
    readers = 20
    start = threading.Barrier(readers)
    outcomes: list[object] = []

    def reading() -> None:
        start.wait()
        try:
            with sessions() as session:
                outcomes.append(SentQueryIndex(log, session).catch_up(4, refuse_further=True))
        except Exception as exc:  # recorded: the assertion below names it
            outcomes.append(exc)

    threads = [threading.Thread(target=reading) for _ in range(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == [True] * readers
    assert _rows(engine)[2] == 9000


def _decision(direction: str, allowed: bool, **extra: Any) -> dict[str, Any]:
    """A policy decision as the exchange logs it (:meth:`policy.decision.Decision.to_record`,
    with the officer side's fields)."""
    return {
        "type": "policy_decision",
        "direction": direction,
        "peer": "ID",
        "purpose": "tourism",
        "modality": "fingerprint",
        "policy_version": "1",
        "at": datetime.now(UTC).isoformat(),
        "allowed": allowed,
        "refusal": None if allowed else "purpose_not_allowed",
        "checks": [
            {"name": "peer", "passed": True, "detail": "ID has an outbound rule"},
            {"name": "purpose", "passed": allowed, "detail": "tourism is not allowed for ID"},
        ],
        "node": "TH",
        "case_ref": "case-r",
        "officer": OFFICER,
        **extra,
    }


def test_a_query_refused_here_is_indexed_from_its_decision(engine: Engine) -> None:
    """An outbound decision that refused (logged with a query id by the officer side) is
    listed as a query, refused_locally; an inbound one, an allowed one, or one logged before
    refused attempts had ids are not queries of this node's officers."""
    log = _log(engine)
    qid = str(uuid.uuid4())
    TranslogExchangeLog(log).record_many(
        [
            _decision("outbound", True),
            _decision("outbound", False),  # logged before refused attempts had an id
            _decision("inbound", False, query_id=str(uuid.uuid4())),
            _decision("outbound", False, query_id=qid),
            *_query(case_ref="case-r"),
        ]
    )
    with session_factory(engine)() as session:
        history = QueryHistory(log, session)
        page = history.page(Viewer(OFFICER, Role.OFFICER), case_ref="case-r", limit=10)
        assert [q.status for q in page.items] == ["refused_locally", "answered"]
        refused = page.items[0]
        assert (refused.query_id, refused.refusal, refused.refusal_detail, refused.replies) == (
            qid,
            "purpose_not_allowed",
            "tourism is not allowed for ID",
            [],
        )
        assert history.show(Viewer(OFFICER, Role.OFFICER), qid).status == "refused_locally"
    assert _rows(engine)[0] == [(qid, 3), (page.items[1].query_id, 4)]


def test_queries_whose_entries_are_pruned_leave_the_index_with_them(engine: Engine) -> None:
    """Retention prunes the log's old entries; in the same transaction the index forgets the
    queries whose query_sent entry is pruned (and their results), so the history answers them
    as unknown, and a rebuild from entry 0 indexes none of them."""
    log = _log(engine)
    old, new = _query(), _query()
    TranslogExchangeLog(log).record_many(old)
    with engine.begin() as conn:  # store time moved back past exchange_log_days
        t = log_schema.entries
        conn.execute(
            update(t).values(created_at=datetime.now(UTC) - timedelta(days=retention_days() + 1))
        )
    TranslogExchangeLog(log).record_many(new)
    with session_factory(engine)() as session:
        SentQueryIndex(log, session).catch_up()
    viewer = Viewer(OFFICER, Role.OFFICER)
    dry = retention.prune(log, engine, retention_days(), dry_run=True)
    assert (dry.entries_pruned, dry.sent_queries_deleted) == (len(old), 1)
    assert len(_rows(engine)[0]) == 2
    report = retention.prune(log, engine, retention_days())
    assert (report.entries_pruned, report.sent_queries_deleted) == (len(old), 1)
    queries, events, _ = _rows(engine)
    assert [q[0] for q in queries] == [new[0]["query_id"]]
    assert [e[1] for e in events] == [new[0]["query_id"]]
    with session_factory(engine)() as session:
        history = QueryHistory(log, session)
        with pytest.raises(NotFoundError) as info:
            history.show(viewer, old[0]["query_id"])
        assert info.value.reason == "unknown_query"
        assert history.show(viewer, new[0]["query_id"]).query_id == new[0]["query_id"]
    with engine.begin() as conn:  # emptied: the rebuild skips the pruned entries
        for table in (sent_query_events, sent_queries, sent_query_index_state):
            conn.execute(delete(table))
    with session_factory(engine)() as session:
        SentQueryIndex(log, session).catch_up()
    assert [q[0] for q in _rows(engine)[0]] == [new[0]["query_id"]]


def retention_days() -> int:
    return int(Settings.model_fields["exchange_log_days"].default)


def test_a_prune_of_every_entry_stops_at_its_own_event_complete_and_unwarned(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """When every entry is older than the horizon the run stops at the ``log_pruned`` event it
    appended itself: complete, no reason, no warning (that event is no entry stored with a
    future time, though it was appended after the run's clock was read)."""
    log = _log(engine)
    TranslogExchangeLog(log).record_many(_query())
    with engine.begin() as conn:
        old = datetime.now(UTC) - timedelta(days=retention_days() + 1)
        conn.execute(update(log_schema.entries).values(created_at=old))
    size = log.size()
    with caplog.at_level(logging.WARNING):
        report = retention.prune(log, engine, retention_days())
    assert (report.entries_pruned, report.complete, report.reason) == (size, True, None)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
