"""The examiner's outcome of a hit's follow-up on ``exchange_hits``, and an index on
``record_ref``.

A hit is a candidate only: the requesting country follows it up through formal channels, and
a forensic examiner here confirms or rejects the match before any personal data is released.
An operator records that outcome (``PUT /hits/{reference}/outcome``): ``outcome``
(``confirmed``, ``not_confirmed``: a false hit, ``withdrawn``: the requester withdrew),
``outcome_at``, ``outcome_by`` (the audit actor) and an optional ``note``; all four NULL while
the outcome is pending, so existing rows need no value.

``outcome`` is an enum column as the models write them (``VARCHAR(16)`` and a CHECK of its
values), its constraint named ``ck_exchange_hits_outcome`` after the models' convention
(0007). PostgreSQL adds the columns and the constraint in place; SQLite cannot add a
constraint to a table, so ``exchange_hits`` is rebuilt (copy, drop, rename) with its rows and
indexes, as 0007 rebuilt ``users``.

The listings of a subject's hits (``GET /subjects/{external_id}/hits``) filter on
``record_ref``, which had no index: each listing scanned the table.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

#: The outcomes an operator records (``node.exchange.references.HitOutcome``), as of 0009.
OUTCOMES = ("confirmed", "not_confirmed", "withdrawn")


def upgrade() -> None:
    with op.batch_alter_table("exchange_hits") as batch:
        batch.add_column(sa.Column("outcome", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("outcome_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("outcome_by", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("note", sa.String(length=200), nullable=True))
        batch.create_check_constraint(
            op.f("ck_exchange_hits_outcome"),
            sa.column("outcome").in_(OUTCOMES),
        )
    op.create_index("ix_exchange_hits_record_ref", "exchange_hits", ["record_ref"])


def downgrade() -> None:
    op.drop_index("ix_exchange_hits_record_ref", table_name="exchange_hits")
    with op.batch_alter_table("exchange_hits") as batch:
        batch.drop_constraint(op.f("ck_exchange_hits_outcome"), type_="check")
        batch.drop_column("note")
        batch.drop_column("outcome_by")
        batch.drop_column("outcome_at")
        batch.drop_column("outcome")
