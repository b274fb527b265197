"""Every table the node's migrations manage: the ORM models plus the transparency log's
SQLAlchemy Core tables (``certs.translog.schema``, when that package is installed)."""

from __future__ import annotations

from sqlalchemy import MetaData

from node.db import models  # noqa: F401  (registers the models on Base.metadata)
from node.db.base import Base


def target_metadata() -> list[MetaData]:
    return [Base.metadata]
