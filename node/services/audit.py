"""Reading the audit trail (auditors)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from node.db.models import AuditEvent
from node.repositories.audit import AuditRepository


class AuditService:
    def __init__(self, session: Session) -> None:
        self.events = AuditRepository(session)

    def page(
        self,
        *,
        limit: int,
        after_id: int = 0,
        since: datetime | None = None,
        action: str | None = None,
    ) -> Sequence[AuditEvent]:
        return self.events.list(since=since, action=action, limit=limit, after_id=after_id)
