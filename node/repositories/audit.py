"""The append-only audit trail of admin and operator actions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
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
