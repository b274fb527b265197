"""The API while its database fails under requests: 503 ``database_unavailable`` with
Retry-After and one log line (no traceback, none of the request's values), as the CLI's exit 7;
a real uvicorn server on a real SQLite file."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from node_support import bearer
from sqlalchemy import Engine

import node.db.engine
from node.api.errors import DATABASE_RETRY_AFTER_S
from node.db.engine import create_db_engine
from node.db.migrate import upgrade
from node.db.models import Role

#: The database's folder under the test's tmp_path (moved away to make the file unreachable).
DB_FOLDER = "db"
UNAVAILABLE = {
    "error": "database_unavailable",
    "detail": "the node's database is unavailable; retry shortly",
}


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """A migrated SQLite file whose writers wait 0.5 s for another's lock, not the node's
    15 s (``SQLITE_BUSY_TIMEOUT_S``, read when the engine is made): each 503 below waits it."""
    monkeypatch.setattr(node.db.engine, "SQLITE_BUSY_TIMEOUT_S", 0.5)
    eng = create_db_engine(f"sqlite:///{tmp_path / DB_FOLDER / 'node.sqlite3'}")
    upgrade(eng)
    yield eng
    eng.dispose()


def _database_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "node.api.errors"]


def test_a_write_lock_another_connection_holds_is_a_503(
    live_server: str, make_token: object, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """An operator's sqlite3 shell (or a backup) holds the write lock past the busy timeout:
    POST /users answered 500 internal_error with a traceback in the log (after 15.4 s)."""
    admin = bearer(make_token(Role.ADMIN))  # type: ignore[operator]
    holder = sqlite3.connect(str(engine.url.database), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with caplog.at_level(logging.INFO), httpx.Client(base_url=live_server, timeout=30) as http:
            r = http.post("/users", headers=admin, json={"name": "anna.doe", "role": "officer"})
            health = http.get("/health")  # readers are not blocked (WAL): the node is up
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert (r.status_code, r.json()) == (503, UNAVAILABLE)
    assert r.headers["retry-after"] == str(DATABASE_RETRY_AFTER_S)
    assert r.headers["x-content-type-options"] == "nosniff"  # answered inside the middleware
    assert health.status_code == 200
    (line,) = _database_lines(caplog)
    assert line.levelno == logging.ERROR and line.exc_info is None
    assert line.getMessage() == (
        "database unavailable on POST /users: database is locked (OperationalError)"
    )
    assert "anna.doe" not in caplog.text and "INSERT" not in caplog.text
    assert "Traceback" not in caplog.text

    with httpx.Client(base_url=live_server, timeout=30) as http:  # the lock is gone
        r = http.post("/users", headers=admin, json={"name": "anna.doe", "role": "officer"})
    assert r.status_code == 201


def test_health_is_a_503_while_the_database_cannot_be_opened(
    live_server: str, engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The database's volume goes away (its folder moved) and the node's pooled connections
    are gone: /health answered 500 internal_error, so a load balancer saw a broken node, not
    an unavailable one."""
    folder = tmp_path / DB_FOLDER
    folder.rename(tmp_path / "away")
    engine.dispose()  # the next request opens a connection, as after a lost one
    try:
        with caplog.at_level(logging.INFO):
            r = httpx.get(live_server + "/health", timeout=30)
    finally:
        (tmp_path / "away").rename(folder)
    assert (r.status_code, r.json()) == (503, UNAVAILABLE)
    assert r.headers["retry-after"] == str(DATABASE_RETRY_AFTER_S)
    (line,) = _database_lines(caplog)
    assert line.getMessage() == (
        "database unavailable on GET /health: unable to open database file (OperationalError)"
    )
    assert line.exc_info is None and "Traceback" not in caplog.text
    assert httpx.get(live_server + "/health", timeout=30).status_code == 200


def test_bdx_subjects_says_the_database_failed_as_exit_7(
    live_server: str,
    make_token: object,
    engine: Engine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The node's 503 database_unavailable was exit 6, node unreachable, in `bdx subjects`
    and `bdx query`; README gives the database failing 7, as the CLI on the node says it."""
    from node_support import cli

    monkeypatch.delenv("BDX_TOKEN", raising=False)
    token = tmp_path / "token"
    token.write_text(make_token(Role.OPERATOR) + "\n")  # type: ignore[operator]
    folder = tmp_path / DB_FOLDER
    folder.rename(tmp_path / "away")
    engine.dispose()
    try:
        args = ["subjects", "list", "--url", live_server, "--token-file", str(token)]
        code, _, err = cli(args, capsys)
    finally:
        (tmp_path / "away").rename(folder)
    assert (code, len(err.splitlines())) == (7, 1), err
    assert err == (
        "bdx: error: the node's storage failed during the listing: the node's database is "
        "unavailable; retry shortly [database_unavailable]\n"
    )
