"""Index ``template_records`` on (subject_id, state) instead of subject_id alone.

"The active records of these subjects" runs on every peer hit (sharing restrictions) and every
local search (subject names). Given an ``IN`` list of subject ids and ``state = 'active'``,
SQLite preferred the (state, modality) index over the subject_id one and walked every active
record: 2.0 ms per look-up of 10 subjects at 10,000 records, against 0.07 ms for one subject.
The composite index serves both conditions (and every subject_id-only look-up).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_template_records_subject_id_state", "template_records", ["subject_id", "state"]
    )
    op.drop_index("ix_template_records_subject_id", table_name="template_records")


def downgrade() -> None:
    op.create_index("ix_template_records_subject_id", "template_records", ["subject_id"])
    op.drop_index("ix_template_records_subject_id_state", table_name="template_records")
