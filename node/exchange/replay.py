"""Replay protection: a message's creation time must lie in a window around now, and its
nonce must not have been seen from the same sender within that window.

Seen nonces live in the node database (table ``exchange_nonces`` on :data:`metadata`, created by
the node's migration) so the guarantee holds across restarts and worker processes: the primary
key (sender, nonce) makes a concurrent replay fail on insert.

The node's housekeeping calls :meth:`ReplayGuard.purge` so the table holds only the nonces that
could still be replayed (about ``2 * window * query rate`` rows). Why a nonce older than
``2 * window`` can go: a nonce is stored at ``seen_at`` only if its message passed the time check
then, ``|seen_at - created| <= window``, so ``created <= seen_at + window`` (a sender's clock may
run ahead by up to the window). A replay arriving at ``t`` passes the time check only if
``t - created <= window``, i.e. ``t <= created + window <= seen_at + 2 * window``. So once
``seen_at < now - 2 * window`` every replay of that message is refused as ``stale_message``
before its nonce is looked up, and forgetting the nonce changes no answer. :data:`PURGE_SLACK`
is kept on top for the node's processes whose clocks disagree slightly (several workers on one
PostgreSQL database: the check's ``now`` and the purge's ``now`` come from different clocks).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    insert,
    select,
    tuple_,
)
from sqlalchemy.exc import IntegrityError

from node.errors import NodeError

metadata = MetaData()

exchange_nonces = Table(
    "exchange_nonces",
    metadata,
    Column("sender", String(2), primary_key=True),
    Column("nonce", String(64), primary_key=True),
    Column("seen_at", DateTime(timezone=True), nullable=False, index=True),
)

#: Built once (every query runs it).
_INSERT_NONCE = insert(exchange_nonces)

#: Kept beyond the provable ``2 * window`` (module docstring): clock differences between the
#: node's processes that share the database.
PURGE_SLACK = timedelta(minutes=1)
#: Rows deleted per transaction: the first purge after a long time (or an upgrade from a node
#: that never purged: millions of rows) must not hold SQLite's write lock for long.
PURGE_BATCH = 10_000

#: One batch: the oldest rows by the ``seen_at`` index, deleted by primary key.
_PURGE_ONE_BATCH = delete(exchange_nonces).where(
    tuple_(exchange_nonces.c.sender, exchange_nonces.c.nonce).in_(
        select(exchange_nonces.c.sender, exchange_nonces.c.nonce)
        .where(exchange_nonces.c.seen_at < bindparam("cutoff"))
        .limit(PURGE_BATCH)
    )
)


class ReplayError(NodeError):
    """A message was refused as a replay (``replayed_nonce``) or as stale (``stale_message``)."""

    exit_code = 5
    default_reason = "replay"


class ReplayGuard:
    """Accepts each (sender, nonce) once, and only for messages created within ``window``."""

    def __init__(self, engine: Engine, window: timedelta) -> None:
        if window <= timedelta(0):
            raise ValueError("the replay window must be positive")
        self.engine = engine
        self.window = window

    def check(
        self, sender: str, nonce: str, created: datetime, now: datetime | None = None
    ) -> None:
        """Record the nonce or raise :class:`ReplayError`; returns nothing."""
        now = now or datetime.now(UTC)
        skew = abs(now - created)
        if skew > self.window:
            raise ReplayError(
                f"message created {created.isoformat()} is outside the accepted window of "
                f"{int(self.window.total_seconds())} s",
                reason="stale_message",
            )
        try:
            with self.engine.begin() as conn:
                conn.execute(_INSERT_NONCE, {"sender": sender, "nonce": nonce, "seen_at": now})
        except IntegrityError as exc:
            raise ReplayError("nonce already used by this sender", reason="replayed_nonce") from exc

    @property
    def retention(self) -> timedelta:
        """How long a nonce is kept: ``2 * window`` (see the module docstring) plus slack."""
        return 2 * self.window + PURGE_SLACK

    def purge(self, now: datetime | None = None) -> int:
        """Delete the nonces seen more than :attr:`retention` before ``now`` (no replay of them
        can pass the time check any more), :data:`PURGE_BATCH` rows per transaction; returns
        how many."""
        cutoff = (now or datetime.now(UTC)) - self.retention
        total = 0
        while True:
            with self.engine.begin() as conn:
                deleted = int(conn.execute(_PURGE_ONE_BATCH, {"cutoff": cutoff}).rowcount or 0)
            total += deleted
            if deleted < PURGE_BATCH:
                return total
