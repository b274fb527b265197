"""Alembic environment: migrates the engine :func:`node.db.migrate.alembic_config` carries.

On SQLite, foreign key enforcement is off while migrations run and restored after: batch
migrations rebuild a table (copy, drop, rename), and with enforcement on, dropping a parent
table would first delete its children's rows by ``ON DELETE CASCADE``. SQLite ignores the
pragma inside a transaction, so it is set before the migrations' transaction begins.

Alembic's operations apply no naming convention here (``target_metadata`` is a list): a
migration names each constraint in full, ``op.f("ck_<table>_<name>")`` as the models'
convention would (0001's enum CHECKs were left with bare names until 0007).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import func, select

from node.db.migrate import MIGRATION_LOCK_KEY
from node.db.schema import target_metadata

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    enforced = False
    if sqlite:
        enforced = bool(connection.exec_driver_sql("PRAGMA foreign_keys").scalar())
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    try:
        context.configure(
            connection=connection,
            target_metadata=target_metadata(),
            render_as_batch=sqlite,
            compare_type=True,
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":  # upgrades take turns (migrate.py)
                connection.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
            context.run_migrations()
    finally:
        if sqlite and enforced:  # the pooled connection goes back as it came
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()
