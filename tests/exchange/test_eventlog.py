"""The exchange log's append survives a lost PostgreSQL connection (the events were about to
be lost while the query's nonce, quota and hit reference stood committed)."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import Engine, create_engine, select, text

from certs.translog import SigningKey, TransparencyLog, metadata
from certs.translog import schema as log_schema
from node.exchange.eventlog import TranslogExchangeLog

PG_URL = os.environ.get("BDX_TEST_DATABASE_URL", "")
needs_pg = pytest.mark.skipif(
    not PG_URL.startswith("postgresql"), reason="needs PostgreSQL: set BDX_TEST_DATABASE_URL"
)


@pytest.fixture
def engine() -> Iterator[Engine]:
    if not PG_URL.startswith("postgresql"):
        pytest.skip("needs PostgreSQL: set BDX_TEST_DATABASE_URL")
    schema = f"ev_{uuid.uuid4().hex[:12]}"
    base = create_engine(PG_URL)
    with base.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    eng = base.execution_options(schema_translate_map={None: schema})
    metadata.create_all(eng)
    try:
        yield eng
    finally:
        with base.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        base.dispose()


def _waiting_backend(admin: Engine, schema: str, holder: int) -> int:
    """The pid of the backend blocked on the log's head row lock (the append)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with admin.connect() as conn:
            pid = conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND pid <> :holder AND query LIKE :schema"
                ),
                {"holder": holder, "schema": f"%{schema}%"},
            ).scalar()
        if pid is not None:
            return int(pid)
        time.sleep(0.05)
    raise AssertionError("the append never waited for the lock")


@needs_pg
def test_an_append_whose_connection_is_killed_is_retried_on_a_fresh_one(engine: Engine) -> None:
    log = TransparencyLog.open(
        engine, SigningKey("bdx.id/exchange-log", ed25519.Ed25519PrivateKey.generate())
    )
    elog = TranslogExchangeLog(log)
    elog.record({"type": "query_received", "query_id": "q-0"})
    schema = engine.get_execution_options()["schema_translate_map"][None]
    admin = create_engine(PG_URL)
    failed: list[BaseException] = []

    def append() -> None:
        try:
            elog.record_many(
                [{"type": "policy_decision", "query_id": "q-1"}, {"type": "reply_sent"}]
            )
        except BaseException as exc:  # reported to the test below
            failed.append(exc)

    holder = engine.connect()
    try:
        tx = holder.begin()
        holder.execute(select(log_schema.head).with_for_update())
        holder_pid = int(holder.execute(text("SELECT pg_backend_pid()")).scalar_one())
        worker = threading.Thread(target=append)
        worker.start()
        victim = _waiting_backend(admin, schema, holder_pid)
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": victim})
        time.sleep(0.5)  # the retry waits for the lock again
        tx.commit()
        worker.join(30)
    finally:
        holder.close()
        admin.dispose()
    assert not failed, failed
    events: list[Any] = [e.data for e in log.entries(0)]
    assert log.size() == 3 and b"q-1" in events[1] and b"reply_sent" in events[2]


class _LosesACommitReply(sqlite3.Connection):
    """A driver connection whose armed commit goes through and then reports the connection
    closed, as a PostgreSQL backend dropped after COMMIT does."""

    armed: ClassVar[list[bool]] = []

    def commit(self) -> None:
        super().commit()
        if self.armed:
            self.armed.clear()
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")


def _lossy_log(path: Path) -> tuple[Engine, TransparencyLog, TranslogExchangeLog]:
    """An exchange log in a SQLite file at ``path`` whose connections are
    :class:`_LosesACommitReply`."""
    from certs.translog.sqlite import configure_sqlite

    lossy = create_engine(f"sqlite:///{path}", connect_args={"factory": _LosesACommitReply})
    configure_sqlite(lossy)
    metadata.create_all(lossy)
    key = SigningKey("bdx.id/exchange-log", ed25519.Ed25519PrivateKey.generate())
    log = TransparencyLog.open(lossy, key)
    return lossy, log, TranslogExchangeLog(log)


def test_an_append_whose_commit_went_through_is_not_logged_twice(tmp_path: Path) -> None:
    """The retry appended the events again: permanent duplicates in an append-only log."""
    lossy, log, elog = _lossy_log(tmp_path / "log.db")
    elog.record({"type": "query_received", "query_id": "q-0"})
    _LosesACommitReply.armed[:] = [True]
    elog.record_many([{"type": "policy_decision", "query_id": "q-1"}, {"type": "reply_sent"}])
    assert not _LosesACommitReply.armed  # the commit's reply was lost
    assert [json.loads(e.data)["type"] for e in log.entries(0)] == [
        "query_received",
        "policy_decision",
        "reply_sent",
    ]
    lossy.dispose()


def test_a_last_attempt_whose_commit_went_through_is_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last attempt's commit went through and its reply was lost: the append is in the
    log, so it is not raised (the responder appended the events again after such an error,
    logging a query's events twice)."""
    from node.exchange import eventlog

    monkeypatch.setattr(eventlog, "LOG_APPEND_ATTEMPTS", 1)
    lossy, log, elog = _lossy_log(tmp_path / "log.db")
    _LosesACommitReply.armed[:] = [True]
    elog.record_many([{"type": "policy_decision", "query_id": "q-1"}, {"type": "reply_sent"}])
    assert not _LosesACommitReply.armed  # the commit's reply was lost
    assert [json.loads(e.data)["type"] for e in log.entries(0)] == ["policy_decision", "reply_sent"]
    lossy.dispose()
