"""Engine and session factory for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import InterfaceError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from node.errors import ConfigError
from node.service_errors import DatabaseUnavailableError

#: Seconds a SQLite writer waits for another writer's lock before failing.
SQLITE_BUSY_TIMEOUT_S = 15


#: The databases the schema and its migrations are written and tested for.
BACKENDS = ("sqlite", "postgresql")


def create_db_engine(url: str) -> Engine:
    """An engine for ``url``; a SQLite file (and its folder) is created owner-only (0600).

    Raises :class:`ConfigError` (``bad_database_url``, never quoting the URL: it may hold a
    password) for a malformed URL, a database other than :data:`BACKENDS` or a driver that is
    not installed; they were tracebacks (NoSuchModuleError, ModuleNotFoundError).

    Statement parameters never reach SQLAlchemy's log or the text of its errors
    (``hide_parameters``): they are subject ids, hit references, token hashes and log entries,
    shown to whoever turns the ``sqlalchemy.engine`` logger on."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError for malformed URLs
        raise ConfigError(f"invalid database URL: {exc}", reason="bad_database_url") from None
    backend = parsed.get_backend_name()
    if backend not in BACKENDS:
        raise ConfigError(
            f"database URL: {parsed.drivername} is not supported; use sqlite:///PATH "
            "or postgresql+psycopg://USER@HOST/NAME",
            reason="bad_database_url",
        )
    try:
        if backend == "sqlite":
            return _sqlite_engine(url, parsed.database)
        return create_engine(url, pool_pre_ping=True, hide_parameters=True)
    except (ImportError, NoSuchModuleError):
        raise ConfigError(
            f"database URL: the driver of {parsed.drivername} is not installed; use "
            "sqlite:///PATH or postgresql+psycopg://USER@HOST/NAME",
            reason="bad_database_url",
        ) from None


def _sqlite_engine(url: str, database: str | None) -> Engine:
    if database and database != ":memory:":
        path = Path(database)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
        hide_parameters=True,
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


@contextmanager
def reachable(engine: Engine) -> Iterator[None]:
    """Turn a failure to connect into :class:`DatabaseUnavailableError` (one clear line)."""
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        where = engine.url.render_as_string(hide_password=True)
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise DatabaseUnavailableError(f"cannot use the database at {where}: {reason}") from None


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (handlers return them)."""
    return sessionmaker(engine, expire_on_commit=False)
