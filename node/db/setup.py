"""Open the node database for a command or the server, schema checked."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from node.db import migrate
from node.db.engine import create_db_engine, reachable, session_factory
from node.settings import Settings


def open_database(
    settings: Settings, engine: Engine | None = None
) -> tuple[Engine, sessionmaker[Session]]:
    """Engine and sessions for ``settings``.

    Development upgrades the schema to the latest migration (zero set-up); production refuses
    a schema that is not at the latest revision (``bdx db upgrade`` is a deliberate step there).
    """
    own = engine is None
    engine = engine or create_db_engine(settings.db_url)
    try:
        with reachable(engine):
            if settings.environment == "development":
                migrate.upgrade(engine)
            else:
                migrate.require_head(engine)
    except BaseException:
        if own:  # its pooled connection must not outlive the refusal
            engine.dispose()
        raise
    return engine, session_factory(engine)
