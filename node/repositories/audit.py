"""The append-only audit trail of admin and operator actions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from node.db.base import utc_now
from node.db.models import AuditEvent


class AuditRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def record(
        self, actor: str, action: str, target: str | None, details: dict[str, Any] | None = None
    ) -> AuditEvent:
        event = AuditEvent(
            occurred_at=utc_now(), actor=actor, action=action, target=target, details=details or {}
        )
        self.session.add(event)
        self.session.flush()
        return event

    def list(
        self,
        *,
        since: datetime | None = None,
        action: str | None = None,
        limit: int = 100,
        after_id: int = 0,
    ) -> Sequence[AuditEvent]:
        query = select(AuditEvent).where(AuditEvent.id > after_id)
        if since is not None:
            query = query.where(AuditEvent.occurred_at >= since)
        if action is not None:
            query = query.where(AuditEvent.action == action)
        return self.session.scalars(query.order_by(AuditEvent.id).limit(limit)).all()

    def count_before(self, before: datetime) -> int:
        """How many events occurred before ``before`` (what a retention run would delete)."""
        query = select(func.count()).select_from(AuditEvent).where(AuditEvent.occurred_at < before)
        return int(self.session.execute(query).scalar() or 0)

    def delete_before(self, before: datetime, *, limit: int | None = None) -> int:
        """Delete the events that occurred before ``before`` (retention, ``exchange_log_days``),
        the oldest ``limit`` of them at most (None: all), in the caller's transaction;
        returns how many."""
        old = select(AuditEvent.id).where(AuditEvent.occurred_at < before)
        if limit is not None:
            old = old.order_by(AuditEvent.id).limit(limit)
        result = self.session.execute(
            delete(AuditEvent).where(AuditEvent.id.in_(old.scalar_subquery()))
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
