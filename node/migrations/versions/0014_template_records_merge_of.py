"""``template_records.merge_of``: marks the copies of a merge not committed yet.

A merge (``bdx subjects merge``) inserts copies of the duplicate's records under the subject
kept, ``pending``, and appends their templates to the gallery before its one transaction
switches everything over. Each copy names its original's reference here until that commit
clears it, so reconcile after a crash in between removes the copies from both stores (the
merge did not happen) instead of activating them as an interrupted enrolment's records.
Existing rows are no copies (NULL). An added nullable column: no table rebuild.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("template_records", sa.Column("merge_of", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("template_records") as batch:
        batch.drop_column("merge_of")
