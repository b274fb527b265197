"""The append-only exchange log on SQLAlchemy: O(log n) appends, proofs and checkpoints.

An append locks the head row, reads the tree size and compact range from it, writes the
leaf and the perfect subtrees it completes (at most log2(n), one on average) and the new head,
in one transaction. Proofs read O(log n) stored perfect-subtree hashes in at most two queries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    SmallInteger,
    and_,
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError

from certs.merkle import (
    HASH_SIZE,
    CompactRange,
    NodeID,
    ProofPlan,
    build_proof,
    consistency_plan,
    fold_right,
    hash_leaf,
    inclusion_plan,
    plan_nodes,
    root_plan,
)
from certs.merkle.errors import MerkleError
from certs.merkle.hashing import EMPTY_ROOT
from certs.translog import schema
from certs.translog.checkpoint import Checkpoint, Cosignature, SignedCheckpoint
from certs.translog.errors import (
    EntryError,
    HorizonTooRecentError,
    NotFoundError,
    OriginMismatchError,
    TamperedError,
)
from certs.translog.events import decode_event, encode_event
from certs.translog.keys import SigningKey, VerifyingKey
from certs.translog.params import (
    AUDIT_CHUNK,
    CHECKPOINT_INTERVAL_S,
    CLOCK_SKEW_S,
    INSERT_CHUNK,
    MAX_ENTRY_BYTES,
    MAX_TIMESTAMP,
    MIN_RETENTION_DAYS,
    PRUNE_BATCH,
)
from certs.translog.selection import SelectionStatement

HEAD_ID = 1

# The statements of an append, built once: an append is on every exchange's path, and building
# and cache-keying fresh statement objects cost more CPU than SQLite's own work.
_HEAD_READ = select(schema.head.c.tree_size, schema.head.c.compact_range).where(
    schema.head.c.id == HEAD_ID
)
_HEAD_READ_LOCKED = _HEAD_READ.with_for_update()
_HEAD_TOUCH = (
    update(schema.head).where(schema.head.c.id == HEAD_ID).values(tree_size=schema.head.c.tree_size)
)
_HEAD_WRITE = (
    update(schema.head)
    .where(schema.head.c.id == HEAD_ID)
    .values(
        tree_size=bindparam("new_size"),
        compact_range=bindparam("new_range"),
        updated_at=bindparam("new_at"),
    )
)
_INSERT_ENTRIES = insert(schema.entries)
_INSERT_NODES = insert(schema.nodes)
_PRUNED_SIZE = select(schema.head.c.pruned_size).where(schema.head.c.id == HEAD_ID)

PRUNED_EVENT = "log_pruned"
"""Kind of the event each pruning appends to the log (:meth:`TransparencyLog.prune`): the new
boundary, the one before, how many entries and the horizon; no entry's contents."""
_PRUNED_MARKER = b'"' + PRUNED_EVENT.encode() + b'"'


def pruned_event(data: bytes) -> dict[str, Any] | None:
    """The ``log_pruned`` event an entry's bytes hold (its ``boundary`` and ``previous``
    integers, its ``horizon`` text), else None."""
    if _PRUNED_MARKER not in data:
        return None
    try:
        event = decode_event(data)
    except EntryError:
        return None
    fields = (event.get("boundary"), event.get("previous"))
    if event.get("event") != PRUNED_EVENT or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in fields
    ):
        return None
    if not isinstance(event.get("horizon"), str):
        return None
    return event


def check_pruned_horizon(index: int, event: dict[str, Any], signed: datetime) -> datetime:
    """The horizon of the ``log_pruned`` event at ``index`` (UTC, for the audit and the
    pruning alike). Raise :class:`TamperedError`: ``prune_chain_broken`` for one that is no
    time, ``prune_too_recent`` unless it is at least
    :data:`~certs.translog.params.MIN_RETENTION_DAYS` before ``signed`` (a time the event was
    appended by: a checkpoint holding it, or now), give or take
    :data:`~certs.translog.params.CLOCK_SKEW_S`. A pruning refuses a later horizon, so an
    event with one (a future one, say) was forged to pass recent entries off as pruned."""
    try:
        horizon = _as_utc(datetime.fromisoformat(event["horizon"]))
    except ValueError:
        raise TamperedError(
            f"the log_pruned event at {index} has no valid horizon",
            reason="prune_chain_broken",
            index=index,
        ) from None
    latest = signed - timedelta(days=MIN_RETENTION_DAYS, seconds=-CLOCK_SKEW_S)
    if horizon > latest:
        raise TamperedError(
            f"the log_pruned event at {index} has the horizon {event['horizon']}, less than "
            f"{MIN_RETENTION_DAYS} days before {signed.isoformat()} (when a checkpoint holding "
            "it was signed, or now): a pruning refuses that, so the event was forged",
            reason="prune_too_recent",
            index=int(event["previous"]),
        )
    return horizon


@dataclass(frozen=True)
class Entry:
    """One stored log entry; a pruned one (:meth:`TransparencyLog.prune`) has empty ``data``
    (an appended entry is never empty) and keeps its index, leaf hash and time."""

    index: int
    leaf_hash: bytes
    data: bytes
    created_at: datetime

    @property
    def pruned(self) -> bool:
        """Whether the entry's bytes were deleted by pruning (its leaf hash stays)."""
        return not self.data


@dataclass(frozen=True)
class PruneResult:
    """What one :meth:`TransparencyLog.prune` did (or, dry run, would do)."""

    pruned: int
    """Entries whose bytes were deleted (would be, in a dry run)."""
    boundary: int
    """Entries below this index are pruned (would be) afterwards."""
    previous: int
    """The boundary before."""
    event_index: int | None = None
    """Index of the ``log_pruned`` event appended (None: nothing pruned, or a dry run)."""


def _utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; every stored time is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _check_entry(data: object) -> bytes:
    if not isinstance(data, bytes):
        raise EntryError(f"an entry must be bytes, got {type(data).__name__}")
    if not data:
        raise EntryError("an entry must not be empty", reason="empty_entry")
    if len(data) > MAX_ENTRY_BYTES:
        raise EntryError(f"entry over {MAX_ENTRY_BYTES} bytes", reason="entry_too_large")
    return data


def _head_range(size: int, blob: bytes) -> CompactRange:
    """The head row's compact range; a row that does not form one is tampering."""
    try:
        return CompactRange(size, [blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)])
    except (MerkleError, TypeError) as exc:
        raise TamperedError(
            f"the head row is not a compact range of its tree size: {exc}", reason="head_mismatch"
        ) from None


class TransparencyLog:
    """An RFC 6962 log of exchange events, stored in the tables of :mod:`schema`.

    ``key`` signs checkpoints; its name is the log's origin. ``earlier_keys`` are the public
    keys that signed this log's earlier checkpoints (before a key renewal), which
    :func:`~certs.translog.audit.audit_store` accepts for those. ``clock`` returns Unix seconds
    (injectable so tests control checkpoint ages). Use :meth:`open` to create or reopen.
    """

    def __init__(
        self,
        engine: Engine,
        key: SigningKey,
        *,
        clock: Callable[[], float] = time.time,
        earlier_keys: Sequence[VerifyingKey] = (),
    ) -> None:
        self._engine = engine
        self._key = key
        self._clock = clock
        self._earlier = tuple(earlier_keys)

    @classmethod
    def open(
        cls,
        engine: Engine,
        key: SigningKey,
        *,
        clock: Callable[[], float] = time.time,
        earlier_keys: Sequence[VerifyingKey] = (),
    ) -> TransparencyLog:
        """Open the log in ``engine`` (tables must exist), creating its head row if needed."""
        log = cls(engine, key, clock=clock, earlier_keys=earlier_keys)
        with engine.connect() as conn:
            row = conn.execute(select(schema.head).where(schema.head.c.id == HEAD_ID)).first()
            if row is None:
                try:
                    conn.execute(
                        insert(schema.head).values(
                            id=HEAD_ID,
                            origin=key.name,
                            tree_size=0,
                            compact_range=b"",
                            updated_at=log._now(),
                        )
                    )
                    conn.commit()
                except IntegrityError:  # another process created it first
                    conn.rollback()
                row = conn.execute(select(schema.head).where(schema.head.c.id == HEAD_ID)).one()
        if row.origin != key.name:
            raise OriginMismatchError(f"the database holds log {row.origin!r}, not {key.name!r}")
        return log

    @property
    def origin(self) -> str:
        return self._key.name

    @property
    def verifying_key(self) -> VerifyingKey:
        return self._key.verifying_key()

    @property
    def verifying_keys(self) -> tuple[VerifyingKey, ...]:
        """The current key and the earlier ones (see the class docstring)."""
        return (self.verifying_key, *self._earlier)

    def use_key(self, key: SigningKey) -> None:
        """Sign the checkpoints issued from now on with ``key`` (a renewed key of this log);
        the key in use until now becomes an earlier one."""
        if key.name != self.origin:
            raise OriginMismatchError(f"key {key.name!r} is not for log {self.origin!r}")
        new = key.verifying_key().to_vkey()
        current = self._key.verifying_key()
        if new == current.to_vkey():
            return
        self._earlier = (current, *(k for k in self._earlier if k.to_vkey() != new))
        self._key = key

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def now(self) -> datetime:
        """The log's clock (UTC): what it stamps entries and checkpoints with."""
        return self._now()

    # --- appends -------------------------------------------------------------------------

    def _lock_head(self, conn: Connection) -> CompactRange:
        """Take the log's write lock inside the begun transaction; return the head."""
        query = _HEAD_READ
        if conn.dialect.name == "sqlite":
            driver = conn.connection.driver_connection
            if driver is not None and not driver.in_transaction:
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock before reading
            else:  # engine set up to BEGIN itself: take the lock with a first write
                conn.execute(_HEAD_TOUCH)
        else:
            query = _HEAD_READ_LOCKED
        row = conn.execute(query).one()
        return _head_range(row.tree_size, row.compact_range)

    def append(self, data: bytes) -> int:
        """Append one entry; return its index."""
        return self.append_many([data])[0]

    @property
    def engine(self) -> Engine:
        """The database the log is stored in."""
        return self._engine

    def append_many(
        self, items: Sequence[bytes], *, connection: Connection | None = None
    ) -> list[int]:
        """Append entries in one transaction (all or none); return their indices.

        With ``connection`` (of the log's database, in a transaction) they join that
        transaction: they commit or roll back with whatever else it holds."""
        batch = [_check_entry(d) for d in items]
        if not batch:
            return []
        if connection is not None:
            return self._append_on(connection, batch)
        with self._engine.connect() as conn, conn.begin():
            return self._append_on(conn, batch)

    def _append_on(self, conn: Connection, batch: list[bytes]) -> list[int]:
        cr = self._lock_head(conn)
        first = cr.size
        now = self._now()
        entry_rows = []
        node_rows = []
        for data in batch:
            leaf = hash_leaf(data)
            entry_rows.append(
                {"leaf_index": cr.size, "leaf_hash": leaf, "data": data, "created_at": now}
            )
            for node, h in cr.append(leaf):
                node_rows.append({"level": node.level, "node_index": node.index, "hash": h})
        for rows, statement in ((entry_rows, _INSERT_ENTRIES), (node_rows, _INSERT_NODES)):
            if len(rows) == 1:
                conn.execute(statement, rows[0])
            for i in range(0, len(rows) if len(rows) > 1 else 0, INSERT_CHUNK):
                conn.execute(statement, rows[i : i + INSERT_CHUNK])
        conn.execute(
            _HEAD_WRITE,
            {"new_size": cr.size, "new_range": b"".join(cr.hashes), "new_at": now},
        )
        return list(range(first, first + len(batch)))

    # --- pruning -------------------------------------------------------------------------

    def pruned_size(self) -> int:
        """Entries below this index are pruned (0: none)."""
        with self._engine.connect() as conn:
            return int(conn.execute(_PRUNED_SIZE).scalar_one())

    def prunable(self, horizon: datetime, limit: int | None = None) -> tuple[int, int]:
        """``(boundary, n)``: the present boundary and how many entries from it, in index order
        up to the first one appended at or after ``horizon``, a prune would delete the bytes
        of (at most ``limit``; None: all). Reads, writes nothing (a dry run)."""
        cutoff = _as_utc(horizon)
        with self._engine.connect() as conn:
            start = int(conn.execute(_PRUNED_SIZE).scalar_one())
            stop = _signed_after(conn, cutoff, self.size())
        count, at = 0, start
        t = schema.entries
        while at < stop and (limit is None or count < limit):
            chunk = AUDIT_CHUNK if limit is None else min(AUDIT_CHUNK, limit - count)
            with self._engine.connect() as conn:
                rows = conn.execute(
                    select(t.c.leaf_index, t.c.created_at)
                    .where(and_(t.c.leaf_index >= at, t.c.leaf_index < stop))
                    .order_by(t.c.leaf_index)
                    .limit(chunk)
                ).all()
            older = _older_prefix(rows, at, cutoff)
            count += older
            if older < len(rows) or not rows:
                break
            at += older
        return start, count

    def prune(
        self,
        horizon: datetime,
        *,
        limit: int = PRUNE_BATCH,
        connection: Connection | None = None,
    ) -> PruneResult:
        """Delete the bytes of the oldest entries appended before ``horizon``: from the present
        boundary, in index order, up to the first entry appended at or after it (the log's
        clock may step back; a later entry is not pruned before an earlier one), at most
        ``limit`` entries. Leaf hashes, subtree hashes and checkpoints stay, so the tree, its
        checkpoints and every proof verify as before.

        One transaction that locks the head row as an append does: the bytes deleted, the
        boundary (``pruned_size``) moved forwards, and a ``log_pruned`` event appended (the
        new and previous boundary, how many, the horizon: no entry's contents), so the log
        itself records each pruning and :func:`~certs.translog.audit.audit_store` holds the
        boundary to it. Nothing to prune writes nothing. Call again for the rest of a long
        backlog (:attr:`PruneResult.pruned` ``== limit``).

        With ``connection`` (of the log's database, in a transaction) it joins that
        transaction, as :meth:`append_many` does: what the caller derived from the entries
        (an index of them) can go with them, all or nothing.

        A ``horizon`` later than now (the log's clock) less
        :data:`~certs.translog.params.MIN_RETENTION_DAYS` raises
        :class:`~certs.translog.errors.HorizonTooRecentError` and prunes nothing: the audit
        would take its event for tampering (``prune_too_recent``)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        cutoff = _as_utc(horizon)
        latest = self._now() - timedelta(days=MIN_RETENTION_DAYS)
        if cutoff > latest:
            raise HorizonTooRecentError(
                f"the horizon {cutoff.isoformat()} is less than {MIN_RETENTION_DAYS} days ago "
                f"(the latest allowed is {latest.isoformat()})"
            )
        if connection is not None:
            return self._prune_on(connection, cutoff, limit)
        with self._engine.connect() as conn, conn.begin():
            return self._prune_on(conn, cutoff, limit)

    def _prune_on(self, conn: Connection, cutoff: datetime, limit: int) -> PruneResult:
        t, h = schema.entries, schema.head
        cr = self._lock_head(conn)
        start = int(conn.execute(_PRUNED_SIZE).scalar_one())
        stop = _signed_after(conn, cutoff, cr.size)
        rows = conn.execute(
            select(t.c.leaf_index, t.c.created_at, (func.length(t.c.data) == 0).label("erased"))
            .where(and_(t.c.leaf_index >= start, t.c.leaf_index < stop))
            .order_by(t.c.leaf_index)
            .limit(limit)
        ).all()
        count = _older_prefix(rows, start, cutoff)
        if count == 0:
            return PruneResult(0, start, start)
        erased = next((r.leaf_index for r in rows[:count] if r.erased), None)
        if erased is not None:  # bytes deleted beyond the boundary: tampering, not a prune
            raise TamperedError(
                f"entry {erased} has no bytes but is not below the pruned boundary {start} "
                "(deleted outside pruning)",
                reason="entry_erased",
                index=erased,
            )
        boundary = start + count
        conn.execute(
            update(t)
            .where(and_(t.c.leaf_index >= start, t.c.leaf_index < boundary))
            .values(data=b"")
        )
        conn.execute(update(h).where(h.c.id == HEAD_ID).values(pruned_size=boundary))
        event = encode_event(
            PRUNED_EVENT,
            {
                "boundary": boundary,
                "previous": start,
                "count": count,
                "horizon": cutoff.isoformat(),
            },
        )
        (index,) = self._append_on(conn, [event])
        return PruneResult(count, boundary, start, index)

    def last_pruned_event(self, before: int | None = None) -> tuple[int, dict[str, Any]] | None:
        """The index and fields of the latest ``log_pruned`` event below ``before`` (default:
        the tree size), read backwards in chunks down to the first entry without bytes (the
        pruned prefix); None if there is none. Each pruning appends one, so with hourly
        pruning this reads about an hour of entries."""
        stop = self.size() if before is None else before
        t = schema.entries
        while stop > 0:
            with self._engine.connect() as conn:
                rows = conn.execute(
                    select(t.c.leaf_index, t.c.data)
                    .where(t.c.leaf_index < stop)
                    .order_by(t.c.leaf_index.desc())
                    .limit(AUDIT_CHUNK)
                ).all()
            for row in rows:
                if not row.data:
                    return None
                event = pruned_event(row.data)
                if event is not None:
                    return int(row.leaf_index), event
            if not rows:
                return None
            stop = rows[-1].leaf_index
        return None

    def check_pruned_boundary(self) -> None:
        """Cheap checks of the pruned boundary before a pruning (not a full audit): within
        the tree, the one the latest ``log_pruned`` event recorded, and the entry at it still
        has its bytes. Raises :class:`TamperedError` (``prune_boundary_lowered``,
        ``prune_unrecorded``, ``entry_erased``) so a pruning never carries on over a tampered
        log (and hides the tampering under a new event). The latest event's horizon must be
        at least :data:`~certs.translog.params.MIN_RETENTION_DAYS` ago too (``prune_too_recent``:
        a pruning refuses a later one, so such an event was forged)."""
        head, boundary = self.head_state()
        if boundary < 0:
            raise TamperedError(
                f"the pruned boundary {boundary} is negative",
                reason="prune_boundary_lowered",
                index=0,
            )
        if boundary > head.size:
            raise TamperedError(
                f"the pruned boundary {boundary} is beyond the tree of size {head.size}",
                reason="prune_unrecorded",
                index=head.size,
            )
        if boundary < head.size and self.entry(boundary).pruned:
            raise TamperedError(
                f"entry {boundary} has no bytes but is not below the pruned boundary "
                f"{boundary} (deleted outside pruning, or the boundary lowered)",
                reason="entry_erased",
                index=boundary,
            )
        if boundary == 0:
            return  # entry 0 has its bytes: nothing was pruned (a lowered boundary lacks them)
        found = self.last_pruned_event(head.size)
        recorded = 0 if found is None else int(found[1]["boundary"])
        if found is not None:
            check_pruned_horizon(found[0], found[1], self._now())
        if boundary < recorded:
            raise TamperedError(
                f"the pruned boundary {boundary} is below the {recorded} the log recorded "
                "(moved backwards)",
                reason="prune_boundary_lowered",
                index=boundary,
            )
        if boundary > recorded:
            raise TamperedError(
                f"the pruned boundary {boundary} is beyond the {recorded} the log recorded "
                "(entries deleted without a log_pruned event)",
                reason="prune_unrecorded",
                index=recorded,
            )

    # --- reads ---------------------------------------------------------------------------

    def head_state(self) -> tuple[CompactRange, int]:
        """The head (as :meth:`head`) and the pruned boundary, read together."""
        with self._engine.connect() as conn:
            row = conn.execute(select(schema.head).where(schema.head.c.id == HEAD_ID)).one()
        return _head_range(row.tree_size, row.compact_range), int(row.pruned_size)

    def size(self) -> int:
        with self._engine.connect() as conn:
            return int(
                conn.execute(
                    select(schema.head.c.tree_size).where(schema.head.c.id == HEAD_ID)
                ).scalar_one()
            )

    def head(self) -> CompactRange:
        """The current tree size and compact range (its root is the current root)."""
        with self._engine.connect() as conn:
            row = conn.execute(select(schema.head).where(schema.head.c.id == HEAD_ID)).one()
        return _head_range(row.tree_size, row.compact_range)

    def first_beyond_head(self) -> int | None:
        """The lowest index stored at or past the head's tree size (None: there is none).

        One statement, so one snapshot: an append writes its entries and the new head in one
        transaction, so a row found here was inserted outside the log (an append after the
        head was read does not count, unlike reading the head and the entries separately)."""
        t, h = schema.entries, schema.head
        size = select(h.c.tree_size).where(h.c.id == HEAD_ID).scalar_subquery()
        with self._engine.connect() as conn:
            found = conn.execute(select(func.min(t.c.leaf_index)).where(t.c.leaf_index >= size))
            value = found.scalar()
        return None if value is None else int(value)

    def entry(self, index: int) -> Entry:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(schema.entries).where(schema.entries.c.leaf_index == index)
            ).first()
        if row is None:
            raise NotFoundError(f"no entry {index}")
        return Entry(row.leaf_index, row.leaf_hash, row.data, _utc(row.created_at))

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[Entry]:
        """Stored entries with ``start <= index < end`` in index order, read in chunks."""
        stop = self.size() if end is None else end
        t = schema.entries
        while start < stop:
            with self._engine.connect() as conn:
                rows = conn.execute(
                    select(t)
                    .where(and_(t.c.leaf_index >= start, t.c.leaf_index < stop))
                    .order_by(t.c.leaf_index)
                    .limit(AUDIT_CHUNK)
                ).all()
            if not rows:
                return
            for row in rows:
                yield Entry(row.leaf_index, row.leaf_hash, row.data, _utc(row.created_at))
            start = rows[-1].leaf_index + 1

    def entries_at(self, indices: Iterable[int]) -> list[Entry]:
        """The stored entries at ``indices`` (those that exist), in index order: one
        statement per ``AUDIT_CHUNK`` indices, for readers that know which entries they
        need (an index built from the log) and must not read the ones between."""
        wanted = sorted(set(indices))
        t = schema.entries
        found: list[Entry] = []
        for i in range(0, len(wanted), AUDIT_CHUNK):
            with self._engine.connect() as conn:
                rows = conn.execute(
                    select(t)
                    .where(t.c.leaf_index.in_(wanted[i : i + AUDIT_CHUNK]))
                    .order_by(t.c.leaf_index)
                ).all()
            found += [Entry(r.leaf_index, r.leaf_hash, r.data, _utc(r.created_at)) for r in rows]
        return found

    def index_range(self, since: datetime | None, until: datetime | None) -> tuple[int, int]:
        """``[start, end)`` of the entries appended in ``[since, until)`` (store time).

        Bounds with a time zone are converted to UTC first (SQLite compares the stored UTC
        times as text and would ignore an offset); naive ones are taken to be UTC."""
        t = schema.entries
        cond = []
        if since is not None:
            cond.append(t.c.created_at >= _as_utc(since))
        if until is not None:
            cond.append(t.c.created_at < _as_utc(until))
        with self._engine.connect() as conn:
            lo, hi = conn.execute(
                select(func.min(t.c.leaf_index), func.max(t.c.leaf_index)).where(and_(True, *cond))
            ).one()
        return (0, 0) if lo is None else (int(lo), int(hi) + 1)

    def _lookup(self, conn: Connection, ids: Sequence[NodeID]) -> dict[NodeID, bytes]:
        """One query: leaf hashes from the entries, higher levels from the nodes table."""
        leaves = [n.index for n in ids if n.level == 0]
        by_level: dict[int, list[int]] = {}
        for node in ids:
            if node.level > 0:
                by_level.setdefault(node.level, []).append(node.index)
        parts = []
        if leaves:
            t = schema.entries
            parts.append(
                select(
                    literal(0, SmallInteger).label("level"), t.c.leaf_index, t.c.leaf_hash
                ).where(t.c.leaf_index.in_(leaves))
            )
        if by_level:
            # One "level = ? AND node_index IN (...)" term per level: both SQLite and
            # PostgreSQL answer it from the primary key (a row-value IN scans on SQLite).
            n = schema.nodes
            parts.append(
                select(n.c.level, n.c.node_index, n.c.hash).where(
                    or_(
                        *(
                            and_(n.c.level == level, n.c.node_index.in_(indices))
                            for level, indices in by_level.items()
                        )
                    )
                )
            )
        found: dict[NodeID, bytes] = {}
        if parts:
            query = parts[0] if len(parts) == 1 else union_all(*parts)
            for level, idx, h in conn.execute(query):
                found[NodeID(level, idx)] = h
        for node in ids:
            if node not in found:
                first = node.index << node.level
                reason = "entry_missing" if node.level == 0 else "node_missing"
                raise TamperedError(
                    f"stored tree lacks node {node.level}/{node.index}", reason=reason, index=first
                )
        return found

    def lookup(self, ids: Sequence[NodeID]) -> dict[NodeID, bytes]:
        """Stored hashes of perfect subtrees (level 0: leaf hashes); a missing one raises
        :class:`TamperedError` (``entry_missing`` / ``node_missing``)."""
        with self._engine.connect() as conn:
            return self._lookup(conn, ids)

    def _size(self, conn: Connection, size: int | None) -> int:
        """``size``, or the current size when None; refused unless within the tree."""
        current = int(
            conn.execute(
                select(schema.head.c.tree_size).where(schema.head.c.id == HEAD_ID)
            ).scalar_one()
        )
        if size is None:
            return current
        if not 0 <= size <= current:
            raise NotFoundError(f"tree size {size} is not in 0..{current}")
        return size

    def _prove(
        self, size: int | None, plans: Callable[[int], list[ProofPlan]]
    ) -> list[list[bytes]]:
        """Build the proofs ``plans(size)`` lists with one connection and two queries."""
        with self._engine.connect() as conn:
            todo = plans(self._size(conn, size))
            needed = list(dict.fromkeys(n for p in todo for n in plan_nodes(p)))
            hashes = self._lookup(conn, needed)
        return [build_proof(p, hashes) for p in todo]

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Inclusion proof of entry ``index`` in the tree of ``size`` (default: current)."""
        return self._prove(size, lambda n: [inclusion_plan(index, n)])[0]

    def inclusion_proofs(self, indices: Sequence[int], size: int) -> list[list[bytes]]:
        """Proofs for several entries against one tree size, with one batched read."""
        return self._prove(size, lambda n: [inclusion_plan(i, n) for i in indices])

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """Consistency proof from the tree of ``size1`` to ``size2`` (default: current)."""
        return self._prove(size2, lambda n: [consistency_plan(size1, n)])[0]

    def root(self, size: int | None = None) -> bytes:
        """Root hash of the tree of ``size`` leaves (default: current, from the head row)."""
        if size is None:
            return self.head().root()
        with self._engine.connect() as conn:
            ids = root_plan(self._size(conn, size))
            hashes = self._lookup(conn, ids)
        return fold_right([hashes[n] for n in ids]) if ids else EMPTY_ROOT

    # --- checkpoints ---------------------------------------------------------------------

    def attest(self, statement: SelectionStatement) -> str:
        """``statement`` signed by this log's key, as a signed note's text."""
        return statement.sign(self._key)

    def issue_checkpoint(self) -> SignedCheckpoint:
        """Sign and store a checkpoint of the current tree.

        The head is read and the checkpoint stored in one transaction under the append lock:
        issuers (the node's housekeeping, ``bdx audit checkpoint``) and appends are serialised,
        so checkpoints are stored in tree-size order. Read outside the lock, a checkpoint of an
        older head could be stored after a larger one, and witnesses shown the latest would
        see the log shrink (false evidence of a rollback).
        """
        with self._engine.connect() as conn, conn.begin():
            cr = self._lock_head(conn)
            checkpoint = Checkpoint(self.origin, cr.size, cr.root(), int(self._clock() * 1000))
            signed = SignedCheckpoint.sign(checkpoint, self._key)
            conn.execute(
                insert(schema.checkpoints).values(
                    tree_size=checkpoint.size,
                    root_hash=checkpoint.root_hash,
                    timestamp_ms=checkpoint.timestamp_ms,
                    note=signed.to_bytes(),
                )
            )
        return signed

    def maybe_issue_checkpoint(
        self, max_age_s: float = CHECKPOINT_INTERVAL_S
    ) -> SignedCheckpoint | None:
        """For the node's periodic task: issue a checkpoint if the tree grew since the last
        one or the last one is ``max_age_s`` old (or there is none); else return None."""
        latest = self.latest_checkpoint()
        if latest is not None:
            age_s = self._clock() - latest.checkpoint.timestamp_ms / 1000
            # A negative age is a clock set back after the last checkpoint: due, or an idle
            # log would issue none until the clock caught up.
            if latest.checkpoint.size == self.size() and 0 <= age_s < max_age_s:
                return None
        return self.issue_checkpoint()

    def _signed(self, conn: Connection, row: Any) -> SignedCheckpoint:
        signed = SignedCheckpoint.from_bytes(row.note)
        cp = signed.checkpoint
        if (row.tree_size, row.root_hash, row.timestamp_ms) != (
            cp.size,
            cp.root_hash,
            cp.timestamp_ms,
        ):  # the columns order and select checkpoints: edited, they would pick a stale one
            raise TamperedError(
                f"checkpoint row {row.id}'s columns differ from its signed note "
                f"(size {row.tree_size} stored, {cp.size} signed)",
                reason="checkpoint_mismatch",
            )
        c = schema.cosignatures
        cosigs = [  # a row no note can carry (a time out of range) is no cosignature
            Cosignature(r.witness, r.key_id, r.timestamp, r.signature)
            for r in conn.execute(select(c).where(c.c.checkpoint_id == row.id).order_by(c.c.id))
            if 0 <= r.timestamp <= MAX_TIMESTAMP
        ]
        return signed.with_cosignatures(*cosigs)

    def latest_checkpoint(self) -> SignedCheckpoint | None:
        """The checkpoint of the largest tree (of those, the last issued) with its stored
        cosignatures. By size, not only issue order: a database written before checkpoints
        were issued under the append lock may hold a smaller one issued after a larger one."""
        t = schema.checkpoints
        with self._engine.connect() as conn:
            row = conn.execute(
                select(t).order_by(t.c.tree_size.desc(), t.c.id.desc()).limit(1)
            ).first()
            return None if row is None else self._signed(conn, row)

    def checkpoints(self, min_size: int = 0, max_size: int | None = None) -> list[SignedCheckpoint]:
        """Stored checkpoints with ``min_size <= size <= max_size``, in issue order."""
        t = schema.checkpoints
        query = select(t).where(t.c.tree_size >= min_size).order_by(t.c.id)
        if max_size is not None:
            query = query.where(t.c.tree_size <= max_size)
        with self._engine.connect() as conn:
            return [self._signed(conn, row) for row in conn.execute(query).all()]

    def add_cosignature(
        self, checkpoint: Checkpoint, cosignature: Cosignature, witness_key: VerifyingKey
    ) -> SignedCheckpoint:
        """Verify and store a witness's cosignature of one of this log's checkpoints."""
        cosignature.verify(checkpoint, witness_key, now=self._clock())
        t = schema.checkpoints
        with self._engine.connect() as conn:
            row = conn.execute(
                select(t).where(
                    t.c.tree_size == checkpoint.size,
                    t.c.root_hash == checkpoint.root_hash,
                    t.c.timestamp_ms == checkpoint.timestamp_ms,
                )
            ).first()
            if row is None or checkpoint.origin != self.origin:
                raise NotFoundError("this log issued no such checkpoint")
            try:
                conn.execute(
                    insert(schema.cosignatures).values(
                        checkpoint_id=row.id,
                        witness=cosignature.witness,
                        key_id=cosignature.key_id,
                        timestamp=cosignature.timestamp,
                        signature=cosignature.signature,
                    )
                )
                conn.commit()
            except IntegrityError:  # already stored: cosigning is idempotent
                conn.rollback()
            return self._signed(conn, row)


def _older_prefix(rows: Sequence[Any], start: int, cutoff: datetime) -> int:
    """How many of ``rows`` (index, time; from index ``start`` on) form a run of consecutive
    indices appended before ``cutoff``: the first later entry (or a gap) ends it."""
    count = 0
    for row in rows:
        if row.leaf_index != start + count or _utc(row.created_at) >= cutoff:
            break
        count += 1
    return count


def _signed_after(conn: Connection, cutoff: datetime, size: int) -> int:
    """``size``, or the smallest tree size of a checkpoint signed after ``cutoff`` if less.
    Entries from that index on were appended after it: a pruning as older than ``cutoff``
    stops before them, whatever their (unsigned) store time says."""
    c = schema.checkpoints
    found = conn.execute(
        select(func.min(c.c.tree_size)).where(c.c.timestamp_ms > _ms(cutoff))
    ).scalar()
    return size if found is None else min(size, int(found))


def _ms(value: datetime) -> int:
    """Unix milliseconds of ``value`` (a checkpoint's timestamp unit)."""
    return int(_as_utc(value).timestamp() * 1000)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
