"""The auditor API over the tamper-evident exchange log, and the auditor's web page.

``GET /audit/log/entries``    list and filter entries (paged); logged as an auditor action
``GET /audit/log/export``     ``format=json`` (with proofs, for ``bdx audit verify``) or ``csv``;
                              the same filters as the list
``GET /audit/log/integrity``  full store audit against the signed checkpoints
``GET /audit/log/dashboard``  daily queries per peer, hit rate, refusals, quota, integrity
``GET /audit/ui``             the dashboard page (no data in it: it calls the API above with
                              the auditor's token, pasted in its field or given as
                              ``/audit/ui#token=...``, which never reaches the server's logs)

Every search, export and dashboard view is appended to the log as an ``auditor_action`` event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse

from certs.translog import NotFoundError as LogNotFoundError
from certs.translog import TransparencyLog
from node.api.deps import AuditorUser, actor
from node.api.schemas.auditlog import DashboardOut, IntegrityOut, LogEntryOut, LogPage
from node.api.schemas.common import UtcDatetime, errors
from node.audit import query
from node.audit.ui import PAGE
from node.errors import NotFoundError
from node.service_errors import StoreUnavailableError

router = APIRouter(tags=["audit"], responses=errors(404))


def get_exchange_log(request: Request) -> TransparencyLog:
    log: TransparencyLog | None = getattr(request.app.state, "exchange_log", None)
    if log is None:
        raise StoreUnavailableError(
            "this node has no exchange log configured", reason="no_exchange_log"
        )
    return log


LogDep = Annotated[TransparencyLog, Depends(get_exchange_log)]
Since = Annotated[UtcDatetime | None, Query(description="appended at or after (ISO 8601)")]
Until = Annotated[UtcDatetime | None, Query(description="appended before (ISO 8601)")]


def audit_filter(
    request: Request,
    peer: Annotated[
        str | None,
        Query(
            description="peer country (two letters): its events, and node actions about it "
            "(a hit.resolve of a reference it quoted)"
        ),
    ] = None,
    purpose: Annotated[str | None, Query(description="query purpose")] = None,
    outcome: Annotated[str | None, Query(description="hit, no_hit, refused or error")] = None,
    reason: Annotated[str | None, Query(description="refusal reason")] = None,
    type: Annotated[str | None, Query(description="event type")] = None,
    officer: Annotated[str | None, Query(description="requesting officer")] = None,
    since: Since = None,
    until: Until = None,
    query_id: Annotated[
        str | None, Query(description="a query's id: its events and the node actions naming it")
    ] = None,
    reference: Annotated[
        str | None, Query(description="a hit reference, or a node action's target")
    ] = None,
    action: Annotated[
        str | None, Query(description="a node action (hit.resolve) or auditor action (export)")
    ] = None,
    case_ref: Annotated[
        str | None,
        Query(
            description="a case reference: the entries logging it as text, or as the keyed "
            "digest a peer's query is logged with; recorded as given, never its text; no JSON "
            "export selects by it (422)"
        ),
    ] = None,
) -> query.AuditFilter:
    """The filters of a list or export (422 for a bad value, as :class:`AuditFilter` says).
    ``case_ref`` is matched against a peer's ``case_ref_hmac`` with the running exchange's
    :meth:`Responder.case_ref_digest`; without the exchange only the text matches."""
    exchange = getattr(request.app.state, "exchange", None)
    digest = exchange.responder.case_ref_digest if exchange is not None else None
    return query.AuditFilter(
        peer=peer,
        purpose=purpose,
        outcome=outcome,
        reason=reason,
        type=type,
        officer=officer,
        since=since,
        until=until,
        query_id=query_id,
        reference=reference,
        action=action,
        case_ref=case_ref,
        case_ref_digest=digest if case_ref is not None else None,
    )


FilterDep = Annotated[query.AuditFilter, Depends(audit_filter)]


@router.get("/audit/log/entries")
def list_entries(
    auditor: AuditorUser,
    log: LogDep,
    flt: FilterDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=query.MAX_PAGE)] = query.DEFAULT_PAGE,
) -> LogPage:
    items, total = query.list_events(log, flt, offset=offset, limit=limit)
    query.record_auditor_action(
        log, actor(auditor), "search", {**flt.to_json(), "offset": offset, "limit": limit}
    )
    nxt = offset + len(items)
    return LogPage(
        items=[LogEntryOut(**i.to_json()) for i in items],
        total=total,
        next_offset=nxt if nxt < total else None,
    )


@router.get(
    "/audit/log/export",
    response_class=Response,
    responses={
        200: {
            "description": "the export: JSON with proofs (verify offline), or CSV; with a "
            "filter beyond since/until, a selection of the log, verified as such",
            "content": {"application/json": {}, "text/csv": {}},
        }
    },
)
def export(
    auditor: AuditorUser,
    log: LogDep,
    flt: FilterDep,
    format: Literal["json", "csv"] = "json",
) -> Response:
    # The entries the filters (those of /audit/log/entries) match; with any beyond the time
    # window, a JSON export is a selection, verified as such by `bdx audit verify`. (No
    # docstring: the operation's description is its role.)
    try:
        if format == "json":
            body: bytes | str = query.export_json(log, flt)
        else:
            body = query.export_csv(log, flt)
    except LogNotFoundError as exc:
        raise NotFoundError(exc.message, reason=exc.reason) from None
    query.record_auditor_action(log, actor(auditor), "export", {**flt.to_json(), "format": format})
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    media = "application/json" if format == "json" else "text/csv; charset=utf-8"
    return Response(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="exchange-log-{stamp}.{format}"'},
    )


@router.get("/audit/log/integrity")
def integrity(auditor: AuditorUser, log: LogDep) -> IntegrityOut:
    status = IntegrityOut(**query.integrity_status(log))
    query.record_check(log, actor(auditor), "integrity", {"ok": status.ok}, ok=status.ok)
    return status


@router.get("/audit/log/dashboard")
def dashboard(
    auditor: AuditorUser, log: LogDep, request: Request, since: Since = None, until: Until = None
) -> DashboardOut:
    flt = query.AuditFilter(since=since, until=until)
    board = query.dashboard(log, request.app.state.engine, flt)
    ok = bool(board.integrity.get("ok"))
    query.record_check(log, actor(auditor), "dashboard", flt.to_json(), ok=ok)
    return DashboardOut(**board.to_json())


@router.get("/audit/ui", response_class=HTMLResponse, include_in_schema=False)
def ui() -> HTMLResponse:
    return HTMLResponse(
        PAGE,
        headers={
            "Content-Security-Policy": (
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                "connect-src 'self'"
            ),
            "Cache-Control": "no-store",
        },
    )
