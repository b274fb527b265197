"""Alembic environment: migrates the engine :func:`node.db.migrate.alembic_config` carries."""

from __future__ import annotations

from alembic import context

from node.db.schema import target_metadata

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
