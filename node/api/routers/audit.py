"""``GET /audit-events``: the audit trail of admin and operator actions (auditors)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from node.api.deps import AuditorUser, SessionDep, actor
from node.api.schemas.audit import AuditEventOut, AuditPage
from node.api.schemas.common import ERROR_RESPONSES, AfterId, UtcDatetime
from node.audit import query
from node.services.audit import AuditService

router = APIRouter(tags=["audit"], responses=ERROR_RESPONSES)

MAX_PAGE = 1000


@router.get("/audit-events")
def list_audit_events(
    auditor: AuditorUser,
    session: SessionDep,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    after: AfterId = 0,
    since: UtcDatetime | None = None,
    action: str | None = None,
) -> AuditPage:
    events = AuditService(session).page(limit=limit, after_id=after, since=since, action=action)
    items = [AuditEventOut.model_validate(e) for e in events]
    log = getattr(request.app.state, "exchange_log", None)
    if log is not None:  # auditors' reads are in the tamper-evident log, as on /audit/log/*
        details: dict[str, object] = {"after": after, "limit": limit, "returned": len(items)}
        details |= {k: str(v) for k, v in (("since", since), ("action", action)) if v is not None}
        query.record_auditor_action(log, actor(auditor), "events", details)
    return AuditPage(items=items, next_after=items[-1].id if len(items) == limit else None)
