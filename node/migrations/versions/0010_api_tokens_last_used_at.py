"""``api_tokens.last_used_at``: when a token last authenticated a request, so that an admin
can find the tokens nobody uses any more and revoke them (``GET /users/{name}/tokens``,
``bdx users tokens``). Empty for every token until its next use; the node notes uses in
memory and writes them every ``TOKEN_USE_INTERVAL_S`` (:mod:`node.services.params`).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from node.db.base import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_tokens", sa.Column("last_used_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    # SQLite before 3.35 cannot drop a column: batch mode rebuilds the table there.
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("last_used_at")
