"""An index of the queries this node sent, derived from its exchange log.

The requester logs each query it sends (``query_sent``) and each result (``reply_received``)
in the exchange log (:mod:`node.exchange.requester`); the log is the record. Reading an
officer's queries back from it meant reading and decoding every entry of the log at every
request (some 15-20 microseconds an entry: 20 s for a two-year log of a million entries, any
officer's listing). This index keeps, per query sent, what the listings filter on (peer,
officer, case reference, times) and the log indices of its events, so a listing reads its
rows and then only the log entries of the queries it returns (:meth:`TransparencyLog.entries_at`).

It is derived data, kept up by catching up with the log: :meth:`SentQueryIndex.catch_up`
reads the entries appended since the size it indexed last (``sent_query_index_state``), in
chunks of ``QUERY_INDEX_CHUNK`` entries, one transaction each, so nothing changes in the log's
append path. A catch-up claims its chunk by moving the indexed size from the value it read
(a compare-and-set): two readers catching up at once, in one process or several, index each
entry once, the second finding the chunk done. Emptied, the tables are rebuilt from the log
by the next read (from entry 0).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from certs.translog import TransparencyLog
from certs.translog.store import Entry
from node.exchange import params

#: The log's events of a query sent and of its results (the requester's).
SENT_EVENT = "query_sent"
REPLY_EVENT = "reply_received"
#: Longest query id indexed (a UUID's text); an event naming a longer one names no query.
QUERY_ID_CHARS = 36
_STATE_ID = 1
#: Cheap test on an entry's bytes before it is decoded: most entries are of other kinds.
_MARKERS = (b'"' + SENT_EVENT.encode() + b'"', b'"' + REPLY_EVENT.encode() + b'"')

metadata = MetaData(naming_convention={"ix": "ix_%(column_0_label)s"})

sent_queries = Table(
    "sent_queries",
    metadata,
    Column("query_id", String(QUERY_ID_CHARS), primary_key=True),
    Column("peer", Text, nullable=False, index=True),
    Column("officer", Text, nullable=True, index=True),
    Column("case_ref", Text, nullable=True, index=True),
    Column("sent_at", DateTime(timezone=True), nullable=False),
    # The log's time of the query_sent entry: what ``since`` filters on, as the log does.
    Column("logged_at", DateTime(timezone=True), nullable=False, index=True),
    Column("sent_index", BigInteger, nullable=False, unique=True),
)
#: The log index of each result logged for a query sent (``reply_received``).
sent_query_events = Table(
    "sent_query_events",
    metadata,
    Column("leaf_index", BigInteger, primary_key=True, autoincrement=False),
    Column("query_id", String(QUERY_ID_CHARS), nullable=False, index=True),
)
#: One row: how many log entries (from index 0) the index holds.
sent_query_index_state = Table(
    "sent_query_index_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("indexed_size", BigInteger, nullable=False),
)


class _Raced(Exception):
    """Another reader indexed the chunk first."""


@dataclass(frozen=True)
class IndexedQuery:
    """A query's row: its query_sent entry and its results' entries, by log index."""

    query_id: str
    indices: tuple[int, ...]


class SentQueryIndex:
    """The index of ``log``'s sent queries, in ``session``'s database."""

    def __init__(self, log: TransparencyLog, session: Session) -> None:
        self.log = log
        self.session = session

    def catch_up(self) -> None:
        """Index the entries appended since the last catch-up (see the module docstring)."""
        size = self.log.size()
        if self._indexed() > size:  # indexed from another log (a database restored): rebuild
            self._reset()
        while (done := self._indexed()) < size:
            end = min(size, done + params.QUERY_INDEX_CHUNK)
            queries, results = _scan(self.log.entries(done, end))
            try:
                self._store(done, end, queries, results)
            except (_Raced, IntegrityError):
                self.session.rollback()  # indexed by another reader: read the size again

    def page(
        self,
        *,
        officer: str | None,
        peer: str | None,
        case_ref: str | None,
        since: datetime | None,
        limit: int,
        offset: int,
    ) -> tuple[list[IndexedQuery], int]:
        """One page of the queries matching, in the order sent, and how many match."""
        t = sent_queries
        conds: list[Any] = []
        if officer is not None:
            conds.append(t.c.officer == officer)
        if peer is not None:
            conds.append(t.c.peer == peer)
        if case_ref is not None:
            conds.append(t.c.case_ref == case_ref)
        if since is not None:
            conds.append(t.c.logged_at >= _utc(since))
        total = self.session.execute(select(func.count()).select_from(t).where(*conds)).scalar()
        rows = self.session.execute(
            select(t.c.query_id, t.c.sent_index)
            .where(*conds)
            .order_by(t.c.sent_index)
            .limit(limit)
            .offset(offset)
        ).all()
        return self._with_results(rows), int(total or 0)

    def one(self, query_id: str) -> IndexedQuery | None:
        t = sent_queries
        rows = self.session.execute(
            select(t.c.query_id, t.c.sent_index).where(t.c.query_id == query_id)
        ).all()
        found = self._with_results(rows)
        return found[0] if found else None

    def entries(self, queries: Iterable[IndexedQuery]) -> list[Entry]:
        """The log entries of ``queries``, in index order."""
        return self.log.entries_at(i for q in queries for i in q.indices)

    def _with_results(self, rows: Sequence[Any]) -> list[IndexedQuery]:
        ids = [r.query_id for r in rows]
        e = sent_query_events
        results: dict[str, list[int]] = {}
        for i in range(0, len(ids), params.QUERY_INDEX_CHUNK):
            for qid, index in self.session.execute(
                select(e.c.query_id, e.c.leaf_index).where(
                    e.c.query_id.in_(ids[i : i + params.QUERY_INDEX_CHUNK])
                )
            ):
                results.setdefault(qid, []).append(int(index))
        return [
            IndexedQuery(r.query_id, (int(r.sent_index), *sorted(results.get(r.query_id, []))))
            for r in rows
        ]

    def _indexed(self) -> int:
        value = self.session.execute(
            select(sent_query_index_state.c.indexed_size).where(
                sent_query_index_state.c.id == _STATE_ID
            )
        ).scalar()
        self.session.commit()  # a new snapshot at the next read
        return 0 if value is None else int(value)

    def _reset(self) -> None:
        for table in (sent_query_events, sent_queries, sent_query_index_state):
            self.session.execute(delete(table))
        self.session.commit()

    def _store(
        self, done: int, end: int, queries: list[dict[str, Any]], results: list[dict[str, Any]]
    ) -> None:
        s = sent_query_index_state
        # A write first: SQLite takes its write lock here, before anything is read (a read
        # first would make this transaction's write fail at once after another's commit).
        moved = self.session.execute(
            update(s).where(s.c.id == _STATE_ID, s.c.indexed_size == done).values(indexed_size=end)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            if done != 0 or self.session.execute(select(s.c.id)).first() is not None:
                raise _Raced
            # The first catch-up: a second one inserting too fails on the key (IntegrityError).
            self.session.execute(insert(s).values(id=_STATE_ID, indexed_size=end))
        # A query id logged twice keeps its first query_sent, as the log's readers do.
        ids = [q["query_id"] for q in queries]
        known = {
            r[0]
            for i in range(0, len(ids), params.QUERY_INDEX_CHUNK)
            for r in self.session.execute(
                select(sent_queries.c.query_id).where(
                    sent_queries.c.query_id.in_(ids[i : i + params.QUERY_INDEX_CHUNK])
                )
            )
        }
        fresh: dict[str, dict[str, Any]] = {}
        for q in queries:
            if q["query_id"] not in known:
                fresh.setdefault(q["query_id"], q)
        if fresh:
            self.session.execute(insert(sent_queries), list(fresh.values()))
        if results:
            self.session.execute(insert(sent_query_events), results)
        self.session.commit()


def text_of(event: dict[str, Any], key: str) -> str | None:
    """The event's ``key`` when it is a string."""
    value = event.get(key)
    return value if isinstance(value, str) else None


def event_time(event: dict[str, Any], logged_at: datetime) -> datetime:
    """The event's own time (``at``, UTC if it names no zone), else the time the log took it."""
    at = event.get("at")
    if isinstance(at, str):
        try:
            value = datetime.fromisoformat(at)
            return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        except (ValueError, OverflowError):  # not a time; out of range once in UTC
            return logged_at
    return logged_at


def _utc(value: datetime) -> datetime:
    """In UTC: SQLite keeps the time without its zone, and compares the text."""
    return value.astimezone(UTC)


def decode_event(data: bytes) -> dict[str, Any]:
    """A log entry's event (``{}`` when it holds none: not JSON, or nested too deep)."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _scan(entries: Iterable[Entry]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of the queries sent and of the results among ``entries``."""
    queries: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for entry in entries:
        if not any(m in entry.data for m in _MARKERS):
            continue
        event = decode_event(entry.data)
        qid = event.get("query_id")
        if not isinstance(qid, str) or not 0 < len(qid) <= QUERY_ID_CHARS:
            continue
        if event.get("type") == SENT_EVENT:
            queries.append(
                {
                    "query_id": qid,
                    "peer": str(event.get("peer")),
                    "officer": text_of(event, "officer"),
                    "case_ref": text_of(event, "case_ref"),
                    "sent_at": event_time(event, entry.created_at),
                    "logged_at": _utc(entry.created_at),
                    "sent_index": entry.index,
                }
            )
        elif event.get("type") == REPLY_EVENT:
            results.append({"leaf_index": entry.index, "query_id": qid})
    return queries, results
