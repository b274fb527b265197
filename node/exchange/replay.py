"""Replay protection: a message's creation time must lie in a window around now, and its
nonce must not have been seen from the same sender within that window.

Seen nonces live in the node database (table ``exchange_nonces`` on :data:`metadata`, created by
the node's migration) so the guarantee holds across restarts and worker processes: the primary
key (sender, nonce) makes a concurrent replay fail on insert. Rows older than twice the window
are purged; a message that old is refused by the time check anyway.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, DateTime, Engine, MetaData, String, Table, delete, insert
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

    def purge(self, now: datetime | None = None) -> int:
        """Delete nonces older than twice the window; returns how many."""
        cutoff = (now or datetime.now(UTC)) - 2 * self.window
        with self.engine.begin() as conn:
            result = conn.execute(delete(exchange_nonces).where(exchange_nonces.c.seen_at < cutoff))
        return int(result.rowcount or 0)
