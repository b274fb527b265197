"""Operator, admin and officer actions in the tamper-evident log.

Every action the node records in its ``audit_events`` table (user and token management,
enrolment, deletions, restriction changes, local searches; see
:class:`node.repositories.audit.AuditRepository`) is also appended to the exchange log once the
transaction that recorded it commits, as a ``node_action`` event. The database table serves
quick queries; the log is what an auditor can verify without trusting the node's operators.
An action whose transaction rolls back is not logged (it did not happen).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from certs.translog import TransparencyLog
from node.db.models import AuditEvent
from node.exchange.eventlog import encode_event

logger = logging.getLogger(__name__)

_PENDING = "bdx_pending_actions"


def action_event(node: str, e: AuditEvent) -> dict[str, Any]:
    return {
        "type": "node_action",
        "node": node,
        "actor": e.actor,
        "action": e.action,
        "target": e.target,
        "details": e.details or {},
        "at": e.occurred_at.isoformat(),
    }


def mirror_actions(
    sessions: sessionmaker[Session], log: TransparencyLog, node: str
) -> Callable[[], None]:
    """Append every committed :class:`AuditEvent` of ``sessions`` to ``log``.

    Returns a function that stops the mirroring (used at shutdown and in tests).
    """

    def collect(session: Session, flush_context: object, instances: object) -> None:
        new = [o for o in session.new if isinstance(o, AuditEvent)]
        if new:
            session.info.setdefault(_PENDING, []).extend(new)

    def publish(session: Session) -> None:
        pending: list[AuditEvent] = session.info.pop(_PENDING, [])
        if pending:
            log.append_many([encode_event(action_event(node, e)) for e in pending])

    def discard(session: Session) -> None:
        session.info.pop(_PENDING, None)

    event.listen(sessions, "before_flush", collect)
    event.listen(sessions, "after_commit", publish)
    event.listen(sessions, "after_rollback", discard)

    def stop() -> None:
        event.remove(sessions, "before_flush", collect)
        event.remove(sessions, "after_commit", publish)
        event.remove(sessions, "after_rollback", discard)

    return stop
