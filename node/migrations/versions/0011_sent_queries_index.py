"""The index of the queries this node sent, derived from its exchange log.

``sent_queries`` (one row per ``query_sent`` event: query id, peer, officer, case reference,
its own and the log's time, its log index), ``sent_query_events`` (the log index of each
``reply_received`` event, by query id) and ``sent_query_index_state`` (how many log entries are
indexed, and the leaf hash of the last of them: which log was indexed). The officers' query
history (``GET /queries``) filters these rows and reads from the log the entries of the
queries it returns, where it read and decoded the whole log at each request. The tables start
empty: the node's housekeeping indexes the log from its first entry after the upgrade
(:mod:`node.repositories.sent_queries`); they are derived data, and emptied, are rebuilt the
same way. Nothing else changes.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sent_queries",
        sa.Column("query_id", sa.String(length=36), nullable=False),
        sa.Column("peer", sa.Text(), nullable=False),
        sa.Column("officer", sa.Text(), nullable=True),
        sa.Column("case_ref", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_index", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("query_id"),
        sa.UniqueConstraint("sent_index"),
    )
    for column in ("peer", "officer", "case_ref", "logged_at"):
        op.create_index(f"ix_sent_queries_{column}", "sent_queries", [column])
    op.create_table(
        "sent_query_events",
        sa.Column("leaf_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("query_id", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("leaf_index"),
    )
    op.create_index("ix_sent_query_events_query_id", "sent_query_events", ["query_id"])
    op.create_table(
        "sent_query_index_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("indexed_size", sa.BigInteger(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("sent_query_index_state")
    op.drop_index("ix_sent_query_events_query_id", table_name="sent_query_events")
    op.drop_table("sent_query_events")
    for column in ("logged_at", "case_ref", "officer", "peer"):
        op.drop_index(f"ix_sent_queries_{column}", table_name="sent_queries")
    op.drop_table("sent_queries")
