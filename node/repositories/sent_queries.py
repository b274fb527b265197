"""An index of the queries this node sent, derived from its exchange log.

The requester logs each query it sends (``query_sent``) and each result (``reply_received``)
in the exchange log (:mod:`node.exchange.requester`), and each outcome of a hit it asked the
peer for (``outcome_received``, :mod:`node.services.hit_outcomes`); the log is the record.
Reading an officer's queries back from it meant reading and decoding every entry of the log at
every request (some 15-20 microseconds an entry: 20 s for a two-year log of a million entries,
any officer's listing). This index keeps, per query sent, what the listings filter on (peer,
officer, case reference, times) and the log indices of its events, so a listing reads its
rows and then only the log entries of the queries it returns (:meth:`TransparencyLog.entries_at`).

It is derived data, kept up by catching up with the log: :meth:`SentQueryIndex.catch_up`
reads the entries appended since the size it indexed last (``sent_query_index_state``), in
chunks of ``QUERY_INDEX_CHUNK`` entries, so nothing changes in the log's append path. Each
chunk is one transaction that first locks the state row (``FOR UPDATE`` on PostgreSQL; on
SQLite a write first, which takes the database's write lock), then reads the indexed size
and the leaf hash of its last entry, then the log's size, indexes the entries between and
moves the state on: catch-ups in one process or several take turns chunk by chunk, and each
entry is indexed once. The log only grows, so under that lock an indexed size beyond the
log's, or a stored leaf hash that is not the log's at that index, means another log (a
database or log restored): the index is emptied and rebuilt from entry 0, in that same
transaction. A reading catches up a few chunks at most (``QUERY_INDEX_REQUEST_CHUNKS``: it
answers 503 ``history_indexing`` at once when the index is further behind, and after its
chunks when others' appends kept it behind), housekeeping the rest. Within one process the
chunks also take turns on a lock per log (:func:`_chunk_lock`) taken before any database
connection: a chunk holding the state row reads the log through the pool's other
connections, and readings queued on the row lock, each holding a connection, emptied the
pool under it (20 readings at once: 30 s stalls, then 503s).
Emptied, the tables are rebuilt from the log by the next catch-up (from entry 0).

Retention (:mod:`node.audit.retention`) prunes the log's oldest entries; in the pruning's
transaction, holding the state row's lock, :meth:`SentQueryIndex.forget_before` deletes the
queries whose ``query_sent`` entry is pruned with their results, so the index never points to
a pruned entry (a pruned entry has no bytes: a rebuild from entry 0 indexes none of them).
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    LargeBinary,
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
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from certs.translog import TransparencyLog
from certs.translog.store import Entry
from node.exchange import params

#: The log's events of a query sent and of its results (the requester's).
SENT_EVENT = "query_sent"
REPLY_EVENT = "reply_received"
#: A hit's outcome asked of the peer that gave it (:mod:`node.services.hit_outcomes`):
#: indexed as a result of its query, so that the query's view shows the latest one.
OUTCOME_EVENT = "outcome_received"
#: An officer's query this node's outbound rules refused (``refused_locally``): the officer
#: side's policy decision, logged with a query id (:mod:`node.exchange.officer`), is indexed
#: as a query sent whose only event it is (:func:`refused_locally`).
REFUSED_EVENT = "policy_decision"
#: Longest query id indexed (a UUID's text); an event naming a longer one names no query.
QUERY_ID_CHARS = 36
_STATE_ID = 1
#: Cheap test on an entry's bytes before it is decoded: most entries are of other kinds.
_MARKERS = tuple(
    b'"' + e.encode() + b'"' for e in (SENT_EVENT, REPLY_EVENT, REFUSED_EVENT, OUTCOME_EVENT)
)

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
#: The log index of each result logged for a query sent (``reply_received``), and of each
#: outcome of its hit asked of the peer (``outcome_received``).
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
    # The leaf hash of entry indexed_size - 1 (None at size 0): which log was indexed.
    Column("leaf_hash", LargeBinary, nullable=True),
)


#: Per log object: the lock this process's catch-up chunks take turns on (see the module
#: docstring); weak, so a log closed and dropped (a test's, a restarted exchange's) goes too.
_CHUNK_LOCKS: weakref.WeakKeyDictionary[TransparencyLog, threading.Lock] = (
    weakref.WeakKeyDictionary()
)
_CHUNK_LOCKS_GUARD = threading.Lock()


def _chunk_lock(log: TransparencyLog) -> threading.Lock:
    with _CHUNK_LOCKS_GUARD:
        lock = _CHUNK_LOCKS.get(log)
        if lock is None:
            lock = _CHUNK_LOCKS[log] = threading.Lock()
        return lock


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

    def catch_up(self, max_chunks: int | None = None, *, refuse_further: bool = False) -> bool:
        """Index the entries appended since the last catch-up (see the module docstring), at
        most ``max_chunks`` chunks (None: to the log's end); with ``refuse_further`` none when
        the index is further behind than those chunks (a reading's, which then answers at once:
        the rest is housekeeping's). Returns whether the index has caught up with the log (as
        its size was read in the last chunk)."""
        behind = self._behind()
        if behind == 0:
            return True
        limit = None if max_chunks is None else max_chunks * params.QUERY_INDEX_CHUNK
        if refuse_further and limit is not None and behind > limit:
            return False
        chunks = 0
        lock = _chunk_lock(self.log)
        while max_chunks is None or chunks < max_chunks:
            chunks += 1
            with lock:  # before any connection is taken (module docstring)
                if self._chunk():
                    return True
        return False

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

    def lock(self) -> None:
        """Lock the state row until the session's transaction ends (a pruning's, which then
        forgets the pruned queries: :meth:`forget_before`)."""
        self._lock_state()

    def forget_before(self, boundary: int) -> int:
        """Delete the queries whose ``query_sent`` entry is below ``boundary`` (pruned), and
        every result row below it or of a query not indexed, in the session's transaction
        (which holds :meth:`lock`); returns how many queries."""
        q, e = sent_queries, sent_query_events
        gone = self.session.execute(delete(q).where(q.c.sent_index < boundary))
        self.session.execute(
            delete(e).where((e.c.leaf_index < boundary) | e.c.query_id.not_in(select(q.c.query_id)))
        )
        return int(gone.rowcount or 0)  # type: ignore[attr-defined]

    def count_before(self, boundary: int) -> int:
        """How many indexed queries have their ``query_sent`` entry below ``boundary``."""
        q = sent_queries
        found = self.session.execute(
            select(func.count()).select_from(q).where(q.c.sent_index < boundary)
        ).scalar()
        return int(found or 0)

    def _behind(self) -> int:
        """How many entries the index lacks, read without a lock (the whole log's when it holds
        another log): a reading of an index that is current takes no write lock, one much
        further behind than it would index gives up at once (an index found behind, or of
        another log, is settled by :meth:`_chunk` under the lock)."""
        s = sent_query_index_state
        try:
            row = self.session.execute(
                select(s.c.indexed_size, s.c.leaf_hash).where(s.c.id == _STATE_ID)
            ).first()
        finally:
            self.session.rollback()  # a new snapshot at the next read
        indexed, leaf = (0, None) if row is None else (int(row.indexed_size), row.leaf_hash)
        size = self.log.size()
        if indexed <= size and leaf == self._leaf_hash(indexed):
            return size - indexed
        return size

    def _leaf_hash(self, size: int) -> bytes | None:
        """The log's leaf hash of entry ``size - 1`` (None at 0, or when it has no such entry)."""
        if size == 0:
            return None
        found = self.log.entries_at([size - 1])
        return found[0].leaf_hash if found else None

    def _chunk(self) -> bool:
        """Index one chunk in one transaction (see the module docstring); returns whether the
        index then holds the whole log as its size was read. Anything that fails (an
        IntegrityError is a bug: under the lock no entry is indexed twice) rolls back and
        is raised."""
        try:
            done, leaf = self._lock_state()
            size = self.log.size()  # read after the lock: at least what any chunk indexed
            if done > size or leaf != self._leaf_hash(done):  # another log: rebuild
                self._reset()
                done = 0
            end = min(size, done + params.QUERY_INDEX_CHUNK)
            if end > done:
                entries = list(self.log.entries(done, end))
                if len(entries) != end - done:  # the log's head names entries it lacks
                    raise RuntimeError(f"exchange log entries {done}..{end} are not all stored")
                queries, results = _scan(entries)
                self._store(queries, results)
                s = sent_query_index_state
                self.session.execute(
                    update(s)
                    .where(s.c.id == _STATE_ID)
                    .values(indexed_size=end, leaf_hash=entries[-1].leaf_hash)
                )
            self.session.commit()
        except BaseException:
            self.session.rollback()
            raise
        return end == size

    def _lock_state(self) -> tuple[int, bytes | None]:
        """Lock the state row until the transaction ends and read it: the indexed size and
        the leaf hash stored with it. The row is inserted first when missing (at size 0), a
        write that on SQLite also takes the database's write lock before anything is read."""
        s = sent_query_index_state
        dialect = self.session.get_bind().dialect.name
        add = (sqlite_insert if dialect == "sqlite" else postgresql_insert)(s)
        self.session.execute(
            add.values(id=_STATE_ID, indexed_size=0, leaf_hash=None).on_conflict_do_nothing(
                index_elements=[s.c.id]
            )
        )
        row = self.session.execute(
            select(s.c.indexed_size, s.c.leaf_hash).where(s.c.id == _STATE_ID).with_for_update()
        ).one()
        return int(row.indexed_size), row.leaf_hash

    def _reset(self) -> None:
        """Empty the index, in the caller's transaction (which holds the state row's lock)."""
        for table in (sent_query_events, sent_queries):
            self.session.execute(delete(table))
        s = sent_query_index_state
        self.session.execute(
            update(s).where(s.c.id == _STATE_ID).values(indexed_size=0, leaf_hash=None)
        )

    def _store(self, queries: list[dict[str, Any]], results: list[dict[str, Any]]) -> None:
        """Insert the rows of one chunk, in the caller's transaction."""
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
        if event.get("type") == SENT_EVENT or refused_locally(event):
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
        elif event.get("type") in (REPLY_EVENT, OUTCOME_EVENT):
            results.append({"leaf_index": entry.index, "query_id": qid})
    return queries, results


def refused_locally(event: dict[str, Any]) -> bool:
    """Whether ``event`` is an officer's query refused by this node's outbound rules (a
    ``REFUSED_EVENT`` with a query id: inbound decisions, and outbound ones allowed, have
    none)."""
    return (
        event.get("type") == REFUSED_EVENT
        and event.get("direction") == "outbound"
        and event.get("allowed") is False
        and "query_id" in event
    )
