"""Peer exchange state: ``exchange_nonces`` (replay guard), ``exchange_hits`` (opaque hit
references) and ``policy_quota_usage`` (daily quota ledger).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exchange_nonces",
        sa.Column("sender", sa.String(length=2), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sender", "nonce"),
    )
    op.create_index("ix_exchange_nonces_seen_at", "exchange_nonces", ["seen_at"])
    op.create_table(
        "exchange_hits",
        sa.Column("reference", sa.String(length=22), nullable=False),
        sa.Column("query_id", sa.String(length=36), nullable=False),
        sa.Column("requester", sa.String(length=2), nullable=False),
        sa.Column("record_ref", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("reference"),
    )
    op.create_index("ix_exchange_hits_query_id", "exchange_hits", ["query_id"])
    op.create_table(
        "policy_quota_usage",
        sa.Column("peer", sa.String(length=2), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("peer", "modality", "day"),
    )


def downgrade() -> None:
    op.drop_table("policy_quota_usage")
    op.drop_index("ix_exchange_hits_query_id", table_name="exchange_hits")
    op.drop_table("exchange_hits")
    op.drop_index("ix_exchange_nonces_seen_at", table_name="exchange_nonces")
    op.drop_table("exchange_nonces")
