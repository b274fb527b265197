"""An officer's queries to peers, read back from the exchange log, and late replies fetched.

The requester logs every query it sends (``query_sent``: query id, peer, purpose, modality,
case reference, officer) and every result (``reply_received``: status, outcome, reference...;
:mod:`node.exchange.requester`). :class:`QueryHistory` reads them back, so an officer sees
the queries they sent after the ``POST /queries`` answer is gone: each with its standing
result, the time of that result, and whether it came late. It finds them in an index derived
from the log (:mod:`node.repositories.sent_queries`, caught up with the log at each reading,
a few chunks at most: further behind, the reading answers 503 ``history_indexing`` and the
node's housekeeping indexes the rest) and reads from the log the entries of the queries it
returns only, not the whole log.

Officers see their own queries only: another officer's query is not found, as one never sent
(nothing says which). Admins and auditors see every officer's, or one officer's
(``officer``), and each such listing or view is recorded in the audit trail (``query.list``,
``query.show``: target the officer filter or the query id; details the filter, the page and
how many queries it returned, or the query's officer and peer), as ``hit.list`` is
(:mod:`node.services.hits`). Reading one's own queries is not recorded.

A query this node stopped waiting for after the peer had accepted it (202: ``timeout``,
``unreachable``, ``cancelled`` as the node stopped) keeps the peer's status URL in its logged
result; :meth:`QueryHistory.poll` fetches the reply once
(:meth:`node.exchange.requester.Requester.poll_reply`, the officer who sent the query or an
admin; an admin's poll is recorded as ``query.poll``, refused ones included, with the
refusal) and answers the query's new state: ``answered`` (late), ``pending`` (the peer still
searches), ``expired`` (the peer no longer holds the reply). Polls of one query take turns
(:meth:`~node.exchange.requester.Requester.poll_lock`), so a reply is fetched and logged
once. A query's status is its answer once one is logged, whatever is logged after it (an
answer is final), else its latest result's. A query whose standing result keeps no status
URL is a conflict (409): ``not_timed_out`` (it was answered, or failed for good) or
``no_status_url`` (the peer never accepted it, or its address in the settings changed
since).

Queries this node's outbound rules refused (``refused_locally``: a purpose or modality its
rules forbid for that peer, a peer it has no rule or address for, its own trust list, CRL or
certificate unusable) never left it: the officer side logs each as its policy decision, with
a query id of its own (:mod:`node.exchange.officer`), and they are listed here as well, with
status ``refused_locally``, the refusal's reason code and the failed check's sentence (the
``detail`` the ``POST /queries`` result gave, :func:`node.exchange.officer.failed_check`); they
have no result, and nothing to poll (409 ``not_timed_out``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
from sqlalchemy.orm import Session

from certs.translog import TransparencyLog
from node.audit.query import (
    OUTBOUND_QUERY,
    AuditFilter,
    AuditQueryError,
    LoggedEvent,
)
from node.db.models import Role
from node.errors import NotFoundError
from node.exchange import params
from node.exchange.officer import failed_check
from node.exchange.requester import POLLABLE, Peer, status_url_of
from node.exchange.setup import Exchange
from node.repositories.audit import AuditRepository
from node.repositories.sent_queries import (
    OUTCOME_EVENT,
    IndexedQuery,
    SentQueryIndex,
    decode_event,
    event_time,
    refused_locally,
    text_of,
)
from node.service_errors import ConflictError, PermissionDeniedError, RetryLaterError

#: The exchange log's event of a query's result (the requester's).
REPLY_EVENT = "reply_received"
#: Audit trail actions of an admin's or auditor's reading of officers' queries, and of an
#: admin's late poll of one.
LIST_ACTION = "query.list"
SHOW_ACTION = "query.show"
POLL_ACTION = "query.poll"
#: How the requester logs an officer: as :func:`node.api.deps.actor` names an API caller.
OFFICER_PREFIX = "user:"
#: The status of a query whose result is not logged yet (its exchange is still running).
SENT = "sent"
#: The status of a query this node's outbound rules refused (it never left the node).
REFUSED_LOCALLY = "refused_locally"


def officer_actor(name: str) -> str:
    """How the exchange log names officer ``name`` (a user name, or already ``user:name``)."""
    return name if name.startswith(OFFICER_PREFIX) else OFFICER_PREFIX + name


@dataclass(frozen=True)
class LoggedReply:
    """One logged result of a query: the exchange's, or a late poll's (``late``)."""

    status: str
    received_at: datetime
    late: bool
    outcome: str | None
    reason: str | None
    reference: str | None
    strength: str | None
    detail: str | None
    reply_jws: str | None
    status_url: str | None

    @classmethod
    def of(cls, item: LoggedEvent) -> LoggedReply:
        e = item.event
        return cls(
            status=str(e.get("status")),
            received_at=_time(e, item),
            late=e.get("late") is True,
            outcome=_text(e, "outcome"),
            reason=_text(e, "reason"),
            reference=_text(e, "reference"),
            strength=_text(e, "strength"),
            detail=_text(e, "detail"),
            reply_jws=_text(e, "reply_jws"),
            status_url=_text(e, "status_url") if e.get("status") in POLLABLE else None,
        )


#: The statuses of an outcome asked of a peer that are its verified answer (the others say
#: why none came: unreachable, timeout, invalid_reply...).
OUTCOME_ANSWERS = frozenset({"answered", "unknown_reference"})


@dataclass(frozen=True)
class LoggedFollowUp:
    """One outcome of a query's hit asked of its peer, as logged (``outcome_received``):
    the status (``answered``, ``unknown_reference`` or why there was no answer), the outcome
    and when the peer's examiner recorded it, when the peer signed its answer (``issued_at``,
    verified; none for a failure, nor in entries logged before it was), when this node logged
    it."""

    status: str
    received_at: datetime
    reference: str | None
    outcome: str | None
    outcome_at: datetime | None
    issued_at: datetime | None = None

    @classmethod
    def of(cls, item: LoggedEvent) -> LoggedFollowUp:
        e = item.event
        return cls(
            status=str(e.get("status")),
            received_at=_time(e, item),
            reference=_text(e, "reference"),
            outcome=_text(e, "outcome"),
            outcome_at=_logged_time(e, "outcome_at"),
            issued_at=_logged_time(e, "issued_at"),
        )


@dataclass
class SentQuery:
    """A query this node sent to one peer, and its logged results, oldest first."""

    query_id: str
    peer: str
    purpose: str | None
    modality: str | None
    case_ref: str | None
    officer: str | None
    sent_at: datetime
    replies: list[LoggedReply] = field(default_factory=list)
    #: The outcomes of its hit asked of the peer, oldest first.
    follow_ups: list[LoggedFollowUp] = field(default_factory=list)
    #: Refused by this node's outbound rules (never sent): the reason code, and the failed
    #: check's sentence.
    refusal: str | None = None
    refusal_detail: str | None = None

    @classmethod
    def of(cls, item: LoggedEvent) -> SentQuery:
        e = item.event
        refused = refused_locally(e)
        return cls(
            query_id=str(e.get("query_id")),
            peer=str(e.get("peer")),
            purpose=_text(e, "purpose"),
            modality=_text(e, "modality"),
            case_ref=_text(e, "case_ref"),
            officer=_text(e, "officer"),
            sent_at=_time(e, item),
            refusal=(_text(e, "refusal") or "policy") if refused else None,
            refusal_detail=failed_check(e) if refused else None,
        )

    @property
    def latest(self) -> LoggedReply | None:
        """The result that stands: the peer's answer once one is logged (final: a result
        logged after it, a late poll's that was slower than another's, changes nothing),
        else the last result logged."""
        answer = self.answer
        if answer is not None:
            return answer
        return self.replies[-1] if self.replies else None

    @property
    def status(self) -> str:
        """The standing result's status (:attr:`latest`); ``sent`` while none is logged,
        ``refused_locally`` for a query this node's outbound rules refused."""
        if self.refusal is not None:
            return REFUSED_LOCALLY
        return self.latest.status if self.latest is not None else SENT

    @property
    def status_url(self) -> str | None:
        return self.latest.status_url if self.latest is not None else None

    @property
    def follow_up(self) -> LoggedFollowUp | None:
        """The latest outcome of its hit the peer answered: the answer it signed last (its
        ``issued_at``; of two signed at once, the one logged later; entries logged without
        it come before any with it), not the one logged last: two askings that overlap log
        their answers as each finishes. A failure to ask changes nothing of what was learned
        before."""
        answered = [
            (f.issued_at is not None, f.issued_at or _BEFORE_ALL, position, f)
            for position, f in enumerate(self.follow_ups)
            if f.status in OUTCOME_ANSWERS
        ]
        return max(answered, key=lambda ranked: ranked[:3])[3] if answered else None

    @property
    def answer(self) -> LoggedReply | None:
        """The first result the peer answered (signed), if any: a query is answered once."""
        return next((r for r in self.replies if r.status == "answered"), None)


@dataclass(frozen=True)
class QueryPage:
    items: list[SentQuery]
    total: int


@dataclass(frozen=True)
class Viewer:
    """Who reads: the audit trail's actor (``user:name``) and the role."""

    actor: str
    role: Role

    @property
    def officer(self) -> bool:
        return self.role is Role.OFFICER


class QueryHistory:
    """The queries this node sent, read from its exchange log ``log``; ``session`` records
    admins' and auditors' readings in the audit trail."""

    def __init__(self, log: TransparencyLog, session: Session) -> None:
        self.log = log
        self.session = session
        self.audit = AuditRepository(session)
        self.index = SentQueryIndex(log, session)

    def page(
        self,
        viewer: Viewer,
        *,
        officer: str | None = None,
        peer: str | None = None,
        case_ref: str | None = None,
        since: datetime | None = None,
        limit: int,
        offset: int = 0,
    ) -> QueryPage:
        """The queries sent at or after ``since`` (to ``peer``, for ``case_ref``), oldest
        first, one page: an officer's own (naming another ``officer`` is refused), or for an
        admin or auditor every officer's or ``officer``'s (recorded as ``query.list``)."""
        wanted = officer_actor(officer) if officer is not None else None
        if viewer.officer:
            if wanted is not None and wanted != viewer.actor:
                raise PermissionDeniedError(
                    "officers see the queries they sent themselves only", reason="own_queries_only"
                )
            wanted = viewer.actor
        self._catch_up()
        rows, total = self.index.page(
            officer=wanted, peer=peer, case_ref=case_ref, since=since, limit=limit, offset=offset
        )
        page = QueryPage(self._read(rows), total)
        if not viewer.officer:
            details: dict[str, Any] = {
                "officer": wanted,
                "peer": peer,
                "case_ref": case_ref,
                "since": None if since is None else since.isoformat(),
                "limit": limit,
                "offset": offset,
                "returned": len(page.items),
            }
            self.audit.record(viewer.actor, LIST_ACTION, wanted, details)
            self.session.commit()
        return page

    def show(self, viewer: Viewer, query_id: str) -> SentQuery:
        """Query ``query_id`` and its results; an admin's or auditor's view is recorded as
        ``query.show``. :class:`NotFoundError` (``unknown_query``) when this node sent no such
        query, or an officer asks for another officer's."""
        found = self._one(viewer, query_id)
        if not viewer.officer:
            self._record(viewer, SHOW_ACTION, found, {})
        return found

    async def poll(self, viewer: Viewer, query_id: str, exchange: Exchange) -> SentQuery:
        """Fetch once the reply of query ``query_id`` that its peer kept (see the module's
        docstring) and answer the query's new state; found as :meth:`show` finds it."""
        found = await anyio.to_thread.run_sync(self._one, viewer, query_id)
        # Polls of one query wait their turn, and read its state again once it is theirs: a
        # reply fetched by the poll before is not fetched (and logged) a second time.
        async with exchange.requester.poll_lock(found.query_id):
            found = await anyio.to_thread.run_sync(self._one, viewer, query_id)
            try:
                peer, status_url = self._pollable(found, exchange.peers)
            except ConflictError as exc:
                # An admin's refused poll read another officer's query's state: recorded too.
                if not viewer.officer:
                    details = {"status": found.status, "refused": exc.reason}
                    await anyio.to_thread.run_sync(
                        self._record, viewer, POLL_ACTION, found, details
                    )
                raise
            result = await exchange.requester.poll_reply(
                peer, found.query_id, status_url, found.sent_at
            )
        if not viewer.officer:
            details = {"status": result.status}
            await anyio.to_thread.run_sync(self._record, viewer, POLL_ACTION, found, details)
        return await anyio.to_thread.run_sync(self._one, viewer, query_id)

    def _pollable(self, found: SentQuery, peers: dict[str, Peer]) -> tuple[Peer, str]:
        if found.status not in POLLABLE:
            raise ConflictError(
                f"query {found.query_id} is {found.status}, not waiting for its peer: there is "
                "nothing to fetch",
                reason="not_timed_out",
            )
        peer = peers.get(found.peer)
        url = found.status_url
        if url is None:
            raise ConflictError(
                f"query {found.query_id} ({found.status}) has no status URL: {found.peer} never "
                "accepted it, so it holds no reply to fetch",
                reason="no_status_url",
            )
        if peer is None or url != status_url_of(peer, found.query_id):
            raise ConflictError(
                f"{found.peer}'s address in this node's settings changed since query "
                f"{found.query_id} was sent: its status URL is not polled",
                reason="no_status_url",
            )
        return peer, url

    def find(self, viewer: Viewer, query_id: str) -> SentQuery:
        """Query ``query_id`` as :meth:`show` finds it, the reading not recorded (the
        caller records what it does with it)."""
        return self._one(viewer, query_id)

    def record(self, viewer: Viewer, action: str, found: SentQuery, extra: dict[str, Any]) -> None:
        """Record ``viewer``'s ``action`` on ``found`` in the audit trail (target the query,
        details its officer and peer and ``extra``), committed."""
        self._record(viewer, action, found, extra)

    def _one(self, viewer: Viewer, query_id: str) -> SentQuery:
        missing = NotFoundError(f"no query {query_id} of yours", reason="unknown_query")
        if not viewer.officer:
            missing = NotFoundError(f"this node sent no query {query_id}", reason="unknown_query")
        try:
            AuditFilter(query_id=query_id)
        except AuditQueryError:  # not shaped like a query id: never sent
            raise missing from None
        self._catch_up()
        row = self.index.one(query_id)
        found = self._read([row] if row is not None else [])
        if not found or (viewer.officer and found[0].officer != viewer.actor):
            raise missing
        return found[0]

    def _catch_up(self) -> None:
        """Catch the index up before a reading, a few chunks at most
        (``QUERY_INDEX_REQUEST_CHUNKS``); further behind (after an upgrade, a restored
        database), :class:`RetryLaterError` (503 ``history_indexing``) without indexing any:
        housekeeping indexes the rest, and a partial history is not answered."""
        if not self.index.catch_up(params.QUERY_INDEX_REQUEST_CHUNKS, refuse_further=True):
            raise RetryLaterError(
                "the query history is being indexed from the exchange log: try again later",
                reason="history_indexing",
                retry_after_s=params.QUERY_INDEX_RETRY_AFTER_S,
            )

    def _record(self, viewer: Viewer, action: str, found: SentQuery, extra: dict[str, Any]) -> None:
        details = {"officer": found.officer, "peer": found.peer, **extra}
        self.audit.record(viewer.actor, action, found.query_id, details)
        self.session.commit()

    def _read(self, rows: list[IndexedQuery]) -> list[SentQuery]:
        """The queries of ``rows`` with the results logged for them, in the order sent: their
        entries only are read from the log."""
        return _assemble(
            LoggedEvent(e.index, e.created_at, e.leaf_hash, decode_event(e.data))
            for e in self.index.entries(rows)
        )


def _assemble(items: Iterable[LoggedEvent]) -> list[SentQuery]:
    sent: dict[str, SentQuery] = {}
    for item in items:
        qid = item.event.get("query_id")
        if not isinstance(qid, str):
            continue
        if item.type == OUTBOUND_QUERY or refused_locally(item.event):
            sent.setdefault(qid, SentQuery.of(item))
        elif item.type == REPLY_EVENT and qid in sent:
            sent[qid].replies.append(LoggedReply.of(item))
        elif item.type == OUTCOME_EVENT and qid in sent:
            sent[qid].follow_ups.append(LoggedFollowUp.of(item))
    return list(sent.values())


def _text(event: dict[str, Any], key: str) -> str | None:
    return text_of(event, key)


#: The time a follow-up logged without ``issued_at`` ranks at: before any signed one.
_BEFORE_ALL = datetime.min.replace(tzinfo=UTC)


def _logged_time(event: dict[str, Any], key: str) -> datetime | None:
    """The event's time ``key`` (ISO 8601, in UTC when it names no zone), if it holds one."""
    text = _text(event, key)
    try:
        value = None if text is None else datetime.fromisoformat(text)
    except ValueError:
        return None
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def _time(event: dict[str, Any], item: LoggedEvent) -> datetime:
    """The event's own time (``at``), else the time the log took it."""
    return event_time(event, item.created_at)
