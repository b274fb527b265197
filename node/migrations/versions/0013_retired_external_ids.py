"""``retired_external_ids``: external ids that named a subject and name none since.

A subject renamed (``bdx subjects rename``), merged into another (``bdx subjects merge``) or
deleted leaves its external id here, and a rename never takes one of them: a follow-up that
quotes the old id must not find another person. The ids of subjects deleted before this
revision are taken from the audit trail (``subject.delete`` events still kept; those pruned
are beyond recovery), except those enrolled again since.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from node.db.base import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_DELETED = sa.text(
    "INSERT INTO retired_external_ids (external_id, how, retired_at) "
    "SELECT target, 'deleted', MAX(occurred_at) FROM audit_events "
    "WHERE action = 'subject.delete' AND target IS NOT NULL "
    "AND LENGTH(target) <= 128 "
    "AND target NOT IN (SELECT external_id FROM subjects) GROUP BY target"
)


def upgrade() -> None:
    op.create_table(
        "retired_external_ids",
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("how", sa.String(length=16), nullable=False),
        sa.Column("retired_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("external_id", name=op.f("pk_retired_external_ids")),
    )
    op.get_bind().execute(_DELETED)


def downgrade() -> None:
    op.drop_table("retired_external_ids")
