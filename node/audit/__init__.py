"""Auditor views of the node's tamper-evident exchange log (:mod:`certs.translog`).

:mod:`node.audit.query` lists and filters the logged exchange events and computes the
dashboard aggregates (daily queries per peer, hit rate, refusals by reason, quota use, log
integrity). Every auditor search or export is itself logged (:func:`record_auditor_action`).
:mod:`node.audit.retention` deletes what the log and the audit trail hold from before
``exchange_log_days`` (``bdx audit prune``, and ``bdx serve``'s housekeeping hourly).
The HTTP API is ``node/api/routers/auditlog.py`` (and the page ``GET /audit/ui``); the
command line is ``bdx audit``.
"""

from node.audit.query import (
    AuditFilter,
    AuditQueryError,
    Dashboard,
    LoggedEvent,
    dashboard,
    integrity_status,
    list_events,
    quota_use,
    record_auditor_action,
)

__all__ = [
    "AuditFilter",
    "AuditQueryError",
    "Dashboard",
    "LoggedEvent",
    "dashboard",
    "integrity_status",
    "list_events",
    "quota_use",
    "record_auditor_action",
]
