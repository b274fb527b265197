"""Operator, admin and officer actions in the tamper-evident log.

Every action the node records in its ``audit_events`` table (user and token management,
enrolment, deletions, restriction changes, local searches; see
:class:`node.repositories.audit.AuditRepository`) is also appended to the exchange log once the
transaction that recorded it commits, as a ``node_action`` event. The database table serves
quick queries; the log is what an auditor can verify without trusting the node's operators.

A few details are kept in the ``audit_events`` row only (:data:`UNLOGGED_DETAILS`): free text
an operator types, such as the note with a hit's outcome, which may hold personal data by
mistake; the table's row can be erased, an append-only log's entry cannot.

When the log is in the session's database (as in a node), the entries are appended inside the
transaction that records the actions, just before it commits: the action and its log entry
commit together or not at all (an append that fails, say on a locked database, fails the
commit instead of leaving a committed action out of the log). A log elsewhere is appended to
after the commit; a failure there is logged, and the commit stands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from certs.translog import TransparencyLog
from node.db.models import AuditEvent
from node.exchange.eventlog import encode_event
from node.services.hits import OUTCOME_ACTION

logger = logging.getLogger(__name__)

_PENDING = "bdx_pending_actions"


#: The details of an action kept in its ``audit_events`` row and left out of its log entry:
#: the operator's note with a hit's outcome (free text, personal data typed by mistake must
#: stay erasable).
UNLOGGED_DETAILS: dict[str, frozenset[str]] = {OUTCOME_ACTION: frozenset({"note"})}


def action_event(node: str, e: AuditEvent) -> dict[str, Any]:
    unlogged = UNLOGGED_DETAILS.get(e.action, frozenset())
    details = {k: v for k, v in (e.details or {}).items() if k not in unlogged}
    return {
        "type": "node_action",
        "node": node,
        "actor": e.actor,
        "action": e.action,
        "target": e.target,
        "details": details,
        "at": e.occurred_at.isoformat(),
    }


def _same_database(a: Engine, b: Engine) -> bool:
    """One database behind both engines (in-memory SQLite is one per engine)."""
    if a is b:
        return True
    return a.url == b.url and a.url.database not in (None, "", ":memory:")


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

    def entries(session: Session) -> list[bytes]:
        pending: list[AuditEvent] = session.info.pop(_PENDING, [])
        return [encode_event(action_event(node, e)) for e in pending]

    def publish_within(session: Session) -> None:
        if not _same_database(session.get_bind().engine, log.engine):
            return  # another database: after the commit (publish_after)
        session.flush()  # the final flush runs after this hook: collect its actions now
        items = entries(session)
        if items:
            log.append_many(items, connection=session.connection())

    def publish_after(session: Session) -> None:
        items = entries(session)
        if items:
            try:
                log.append_many(items)
            except Exception:  # the actions committed; the log is elsewhere and failed
                logger.exception("%d committed action(s) not appended to the log", len(items))

    def discard(session: Session) -> None:
        session.info.pop(_PENDING, None)

    listeners = (
        ("before_flush", collect),
        ("before_commit", publish_within),
        ("after_commit", publish_after),
        ("after_rollback", discard),
    )
    for name, fn in listeners:
        event.listen(sessions, name, fn)

    def stop() -> None:
        for name, fn in listeners:
            event.remove(sessions, name, fn)

    return stop
