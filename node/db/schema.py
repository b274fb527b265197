"""Every table the node's migrations manage: the ORM models plus the transparency log's
SQLAlchemy Core tables (``certs.translog.schema``, on their own MetaData)."""

from __future__ import annotations

from sqlalchemy import MetaData

from certs.translog import schema as translog_schema
from node.db import models  # noqa: F401  (registers the models on Base.metadata)
from node.db.base import Base
from node.exchange import references, replay
from node.repositories import sent_queries
from policy import quota


def target_metadata() -> list[MetaData]:
    """Metadata the migrations must produce (what the autogenerate comparison checks)."""
    return [
        Base.metadata,
        translog_schema.metadata,
        replay.metadata,
        references.metadata,
        quota.metadata,
        sent_queries.metadata,
    ]
