"""SQLite settings for the exchange log (the node calls this on its engine).

WAL lets readers (proofs, exports) run beside the single writer; ``synchronous=NORMAL`` in
WAL mode makes a commit an append to the WAL without an fsync (durable across application
crashes; a power cut can lose the last commits, never corrupt the tree, which the next
checkpoint and audit then reflect). ``busy_timeout`` makes concurrent appenders wait for
the write lock instead of failing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event

BUSY_TIMEOUT_MS = 30_000
"""How long an appender waits for SQLite's write lock: far above the longest batch append
(milliseconds), short enough to surface a stuck writer."""


def configure_sqlite(engine: Engine, *, synchronous: str = "NORMAL") -> None:
    """Set WAL, ``synchronous`` (``NORMAL`` or ``FULL``) and the busy timeout on every
    connection of a SQLite ``engine``; no-op for other databases."""
    if engine.dialect.name != "sqlite":
        return
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.close()
