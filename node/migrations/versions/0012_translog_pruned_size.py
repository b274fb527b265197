"""Retention of the exchange log: ``translog_head.pruned_size``, the pruned prefix's boundary.

Entries below it are pruned: their bytes deleted after the retention period
(``exchange_log_days``), their leaf hashes kept, so the tree, its checkpoints and proofs still
verify (:meth:`certs.translog.TransparencyLog.prune`). Existing logs start with nothing pruned
(0). An added column with a default: no table rebuild, on SQLite either.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "translog_head",
        sa.Column("pruned_size", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    with op.batch_alter_table("translog_head") as batch:
        batch.drop_column("pruned_size")
