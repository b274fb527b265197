"""Index ``exchange_hits`` on ``created_at``: the node deletes the hit references older than its
follow-up period (``hit_reference_days``) in batches of the oldest rows, which without the
index would scan the whole table every batch.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_exchange_hits_created_at", "exchange_hits", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_exchange_hits_created_at", table_name="exchange_hits")
