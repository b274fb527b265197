"""Asking the peer that gave a query a hit for the examiner's outcome of it
(``POST /queries/{id}/outcome``, ``bdx queries outcome``).

A hit is a candidate until the responder's examiner confirms it; its operator records the
outcome on the reference (:mod:`node.services.hits` there). This node asks the peer that
answered the query with a hit (:func:`node.exchange.outcomes.fetch_outcome`: over mutual TLS,
the signed answer verified against the trust list and CRL, of that peer's country, addressed
to this node, echoing the nonce sent, issued within the accepted clock difference, naming the
reference and the query this node logged the hit for) and answers, per peer: ``answered``
with the outcome (``pending``, ``confirmed``, ``not_confirmed``, ``withdrawn``) and when it
was recorded, ``unknown_reference`` (the peer keeps no such reference for this node: past its
follow-up period, or never given), or why there is no answer: ``unknown_peer`` (the peer is no
longer in this node's settings: nobody asked), ``unreachable``, ``timeout``,
``untrusted_peer``, ``http_error`` (a 429 ``too_many_outcome_requests`` included),
``invalid_reply`` (the verification's reason in ``detail``: ``bad_signature``,
``nonce_mismatch``, ``stale_message``, ``wrong_reference``...).

Officers and admins ask, as they poll (``POST /queries/{id}/poll``); auditors do not: asking
makes this node contact the peer, writes an entry in both countries' logs and changes what the
query's officer reads as its follow-up, and auditors review. The query is found as
``GET /queries/{id}`` finds it (:class:`node.services.queries.QueryHistory`): an officer's own
only (another's is not found, 404 ``unknown_query``), any for admins. A query without a hit
has nothing to ask (409 ``no_hit``); this node's own trust list, CRL or certificates refused
is 503 with their code, nobody asked.
Each answer, and each failure to get one, is logged in the exchange log as
``outcome_received`` (the peer, the query, the reference, the status, the outcome and when it
was recorded, when the peer signed the answer (``issued_at``, verified), the signed answer,
who asked; indexed with the query, whose view shows the answer the peer signed last, not the
one logged last). Askings of one query take turns, with its late polls
(:meth:`~node.exchange.requester.Requester.poll_lock`). An admin's asking is recorded in the
audit trail as ``query.outcome`` (the query's officer and peer, the status and outcome; a
refused one with its refusal: ``no_hit``, or this node's own PKI's code), as their polls and
readings are; an officer's of their own query is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
from sqlalchemy.orm import Session

from certs.errors import CertsError
from certs.translog import TransparencyLog
from node.errors import PeerError
from node.exchange.outcomes import PeerOutcome, fetch_outcome
from node.exchange.pki_watch import explain
from node.exchange.replay import ReplayError
from node.exchange.setup import Exchange
from node.repositories.sent_queries import OUTCOME_EVENT
from node.service_errors import ConflictError, StoreUnavailableError
from node.services.queries import QueryHistory, SentQuery, Viewer

#: The audit trail's action of an admin's or auditor's asking for a hit's outcome.
OUTCOME_ACTION = "query.outcome"
#: The status of a peer that is no longer one of this node's (nobody asked).
UNKNOWN_PEER = "unknown_peer"


@dataclass(frozen=True)
class FollowUpResult:
    """What one peer answered about the hit it gave (module docstring)."""

    peer: str
    reference: str
    status: str
    outcome: str | None = None
    outcome_at: datetime | None = None
    issued_at: datetime | None = None
    detail: str | None = None
    token: str | None = None


class HitOutcomeService:
    def __init__(self, log: TransparencyLog, session: Session, exchange: Exchange) -> None:
        self.history = QueryHistory(log, session)
        self.exchange = exchange

    async def ask(self, viewer: Viewer, query_id: str) -> tuple[SentQuery, list[FollowUpResult]]:
        """The outcome of query ``query_id``'s hit, asked of its peer (module docstring)."""
        found = await anyio.to_thread.run_sync(self.history.find, viewer, query_id)
        answer = found.answer
        if answer is None or answer.outcome != "hit" or answer.reference is None:
            if not viewer.officer:  # an admin's refused asking read the query's state
                refused = {"status": found.status, "refused": "no_hit"}
                await anyio.to_thread.run_sync(
                    self.history.record, viewer, OUTCOME_ACTION, found, refused
                )
            raise ConflictError(
                f"query {found.query_id} got no hit ({found.status}"
                + (f", {answer.outcome}" if answer is not None else "")
                + "): there is no outcome to ask for",
                reason="no_hit",
            )
        notice = await anyio.to_thread.run_sync(self.exchange.pki_watch.refusal)
        if notice is not None:
            if not viewer.officer:  # refused as the no_hit one is: recorded with its refusal
                refused = {"status": found.status, "refused": notice.code}
                await anyio.to_thread.run_sync(
                    self.history.record, viewer, OUTCOME_ACTION, found, refused
                )
            raise StoreUnavailableError(explain(notice), reason=notice.code)
        # Askings of one query take turns (with its late polls), so the answers are logged in
        # the order the peer signed them; the view orders them by that time all the same.
        async with self.exchange.requester.poll_lock(found.query_id):
            result = await self._ask_peer(found, answer.reference)
            await anyio.to_thread.run_sync(self._log, viewer, found, result)
        if not viewer.officer:
            details: dict[str, Any] = {"status": result.status, "outcome": result.outcome}
            await anyio.to_thread.run_sync(
                self.history.record, viewer, OUTCOME_ACTION, found, details
            )
        return found, [result]

    async def _ask_peer(self, found: SentQuery, reference: str) -> FollowUpResult:
        peer = self.exchange.peers.get(found.peer)
        if peer is None:
            return FollowUpResult(
                found.peer,
                reference,
                UNKNOWN_PEER,
                detail=f"{found.peer} is no peer in this node's settings any more: nobody asked",
            )
        try:
            got: PeerOutcome = await fetch_outcome(
                self.exchange.requester, peer, reference, found.query_id
            )
        except PeerError as exc:
            return FollowUpResult(found.peer, reference, exc.reason, detail=exc.message)
        except (CertsError, ReplayError) as exc:
            return FollowUpResult(
                found.peer,
                reference,
                "invalid_reply",
                detail=f"{found.peer}'s answer does not verify ({exc.reason})",
            )
        p = got.payload
        if p.refusal is not None:
            return FollowUpResult(
                found.peer,
                reference,
                p.refusal,
                issued_at=p.issued_at,
                detail=f"{found.peer} keeps no such reference for this node (its follow-up "
                "period is over, or it never gave it)",
                token=got.token,
            )
        return FollowUpResult(
            found.peer,
            reference,
            "answered",
            outcome=p.outcome,
            outcome_at=p.outcome_at,
            issued_at=p.issued_at,
            token=got.token,
        )

    def _log(self, viewer: Viewer, found: SentQuery, result: FollowUpResult) -> None:
        requester = self.exchange.requester
        event: dict[str, Any] = {
            "type": OUTCOME_EVENT,
            "node": requester.country,
            "peer": result.peer,
            "query_id": found.query_id,
            "reference": result.reference,
            "status": result.status,
            "outcome": result.outcome,
            "outcome_at": None if result.outcome_at is None else result.outcome_at.isoformat(),
            "issued_at": None if result.issued_at is None else result.issued_at.isoformat(),
            "detail": result.detail,
            "outcome_jws": result.token,
            "asked_by": viewer.actor,
            "at": datetime.now(UTC).isoformat(),
        }
        requester.log.record_many([event])
