"""Audit events on the wire (auditors)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from node.api.schemas.common import WireModel


class AuditEventOut(WireModel):
    id: int
    occurred_at: datetime
    actor: str
    action: str
    target: str | None
    details: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    next_after: int | None = None
