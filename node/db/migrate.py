"""Run the packaged Alembic migrations (``bdx db upgrade``, ``bdx db current``)."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine

from node.errors import ConfigError

#: Suffix of the lock file beside a SQLite database while it is migrated.
MIGRATION_LOCK_SUFFIX = ".migrating.lock"
#: PostgreSQL advisory lock key held by a migration (any constant this node alone uses).
MIGRATION_LOCK_KEY = 0x6264_785F_6462  # "bdx_db"


def alembic_config(engine: Engine) -> Config:
    """An Alembic config whose scripts are the ones installed in ``node/migrations``."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("node") / "migrations"))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the schema up to ``revision`` (idempotent); return the revision it was at before
    (``None``: empty). An unknown revision is a ``ConfigError`` (``unknown_revision``). Two
    upgrades at once take turns: on PostgreSQL an advisory lock in the migrations'
    transaction (``env.py``), on a SQLite file a lock file beside it (two racing batch
    migrations left a stray ``_alembic_tmp_`` table)."""
    try:
        with _sqlite_file_lock(engine):
            # Inside the lock: a fresh file's first connection switches it to WAL, which fails
            # at once ("database is locked", no busy wait) while the other upgrade migrates.
            previous = _refuse_unknown_current(engine)
            command.upgrade(alembic_config(engine), revision)
    except CommandError as exc:
        raise ConfigError(
            f"cannot upgrade to {revision!r}: {exc}", reason="unknown_revision"
        ) from None
    return previous


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    with open(f"{database}{MIGRATION_LOCK_SUFFIX}", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def _refuse_unknown_current(engine: Engine) -> str | None:
    """The database's revision; a revision this bdx does not ship was upgraded by a newer bdx:
    say so (``bdx db upgrade`` cannot help)."""
    current = current_revision(engine)
    if current is not None and not known_revision(engine, current):
        raise ConfigError(
            f"database schema is at {current}, which this bdx does not know (its newest is "
            f"{head_revision(engine)}): a newer bdx upgraded it; run that version",
            reason="schema_too_new",
        )
    return current


def known_revision(engine: Engine, revision: str) -> bool:
    """Whether this bdx ships ``revision`` (a newer bdx's is unknown to it)."""
    scripts = ScriptDirectory.from_config(alembic_config(engine))
    try:
        return scripts.get_revision(revision) is not None
    except CommandError:
        return False


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, ``None`` for an empty database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str:
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert head is not None  # the package always ships migrations
    return head


def require_head(engine: Engine) -> None:
    """Raise :class:`ConfigError` unless the schema is at the latest revision."""
    _refuse_unknown_current(engine)
    current, head = current_revision(engine), head_revision(engine)
    if current != head:
        raise ConfigError(
            f"database schema is at {current or 'nothing'}, this bdx needs {head}; "
            "run `bdx db upgrade`",
            reason="schema_out_of_date",
        )
