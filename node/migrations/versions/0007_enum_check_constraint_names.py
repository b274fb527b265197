"""The enum CHECK constraints take the models' names: ``role`` becomes ``ck_users_role``,
``modality`` and ``record_state`` become ``ck_template_records_modality`` and
``ck_template_records_record_state``.

0001 created them under the enums' bare names: ``env.py`` hands Alembic a list of MetaData, so
its operations apply no naming convention, while the models' (``node.db.base``) prefixes
``ck_<table>_``. The schema comparison of the tests does not compare CHECK constraints, so the
drift went unseen; a later migration that widens an enum (a new role, a new modality) by the
models' name would not find the constraint on PostgreSQL.

PostgreSQL renames them in place. SQLite cannot alter a constraint: ``users`` and
``template_records`` are rebuilt (copy, drop, rename) with the same CHECK expressions under the
new names; rows, indexes, unique constraints and foreign keys stay (``env.py`` turns foreign
key enforcement off meanwhile, or dropping ``users`` would delete its tokens by cascade).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: (table, name 0001 gave, the models' name) of each enum CHECK constraint.
RENAMES = (
    ("users", "role", "ck_users_role"),
    ("template_records", "modality", "ck_template_records_modality"),
    ("template_records", "record_state", "ck_template_records_record_state"),
)


def _rename(forward: bool) -> None:
    bind = op.get_bind()
    pairs = [(t, old, new) if forward else (t, new, old) for t, old, new in RENAMES]
    if bind.dialect.name != "sqlite":
        for table, old, new in pairs:
            op.execute(sa.text(f'ALTER TABLE "{table}" RENAME CONSTRAINT "{old}" TO "{new}"'))
        return
    inspector = sa.inspect(bind)
    for table in dict.fromkeys(t for t, _, _ in pairs):
        checks = {c["name"]: c["sqltext"] for c in inspector.get_check_constraints(table)}
        with op.batch_alter_table(table, recreate="always") as batch:
            for _, old, new in (p for p in pairs if p[0] == table):
                batch.drop_constraint(old, type_="check")
                batch.create_check_constraint(op.f(new), sa.text(checks[old]))


def upgrade() -> None:
    _rename(forward=True)


def downgrade() -> None:
    _rename(forward=False)
