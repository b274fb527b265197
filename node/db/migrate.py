"""Run the packaged Alembic migrations (``bdx db upgrade``, ``bdx db current``)."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine

from node.errors import ConfigError


def alembic_config(engine: Engine) -> Config:
    """An Alembic config whose scripts are the ones installed in ``node/migrations``."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("node") / "migrations"))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (idempotent). An unknown revision is a
    ``ConfigError`` (``unknown_revision``)."""
    try:
        command.upgrade(alembic_config(engine), revision)
    except CommandError as exc:
        raise ConfigError(
            f"cannot upgrade to {revision!r}: {exc}", reason="unknown_revision"
        ) from None


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
    current, head = current_revision(engine), head_revision(engine)
    if current != head:
        raise ConfigError(
            f"database schema is at {current or 'nothing'}, this bdx needs {head}; "
            "run `bdx db upgrade`",
            reason="schema_out_of_date",
        )
