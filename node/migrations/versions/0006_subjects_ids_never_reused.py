"""Subject ids are never re-used on SQLite (``AUTOINCREMENT``).

A subject's id leaves the database as its gallery key ``s<id>``: hit references issued to peers
map to it (``exchange_hits.record_ref``) and are kept for formal follow-up. ``subjects.id`` was
a plain ``INTEGER PRIMARY KEY``, for which SQLite picks ``max(id) + 1``: after the subject with
the largest id is erased, the next one enrolled gets its id, and a follow-up on a reference
issued before the erasure resolves to a different person. With ``AUTOINCREMENT`` SQLite never
hands out an id at or below the largest it ever gave (kept in ``sqlite_sequence``).

SQLite cannot alter a column's key, so the table is rebuilt (copy, drop, rename; rows, the
unique external id and the foreign keys of encounters and template records pointing at it stay;
``env.py`` turns foreign key enforcement off meanwhile, or dropping the old table would delete
the subjects' records by cascade). The new sequence starts above every id a hit reference was
issued for, as well as every id present: the subject with the largest id may already have
been erased. Other tables need no change: template records leave the node by their random
``reference``, not their id. PostgreSQL's sequences never re-use ids: nothing to do there.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: The largest subject id a hit reference was issued for (record_ref ``s<id>``).
_LARGEST_REFERENCED = sa.text(
    "SELECT MAX(CAST(SUBSTR(record_ref, 2) AS INTEGER)) FROM exchange_hits "
    "WHERE record_ref GLOB 's[0-9]*'"
)


def _rebuild_subjects(autoincrement: bool) -> None:
    with op.batch_alter_table(
        "subjects", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ):
        pass


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    _rebuild_subjects(autoincrement=True)
    present = bind.execute(sa.text("SELECT MAX(id) FROM subjects")).scalar()
    referenced = bind.execute(_LARGEST_REFERENCED).scalar()
    floor = max(int(present or 0), int(referenced or 0))
    bind.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = 'subjects'"))
    if floor:
        bind.execute(
            sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('subjects', :seq)"),
            {"seq": floor},
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    _rebuild_subjects(autoincrement=False)
