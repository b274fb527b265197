"""A hit's outcome, asked by the country that got the hit and signed by the responder.

A hit is a candidate only: the responder's forensic examiner confirms it or not, and its
operator records that on the reference (:mod:`node.services.hits`). The requesting country
learns it here, so that its officer does not chase a false hit:
``GET /peer/v1/hits/{reference}/outcome?nonce=N`` on the responder's peer port (mutual TLS;
the requesting country is the client certificate's) answers a compact JWS (``typ``
:data:`OUTCOME_TYP`: no query, reply or terms passes for it, nor it for them) over the
canonical JSON of an :class:`OutcomePayload`, format :data:`OUTCOME_FORMAT`: the responding
and requesting countries, the reference, the query it answered, the follow-up's outcome
(``pending`` while none is recorded, ``confirmed``, ``not_confirmed``, ``withdrawn``) and
when it was recorded, the requester's nonce echoed and when the answer was issued. Never the
operator's note, who recorded it, the record or anything about the subject. A reference this
node never issued, one past its follow-up period (``hit_reference_days``, counted from its
issue: also before housekeeping deleted its row) and one issued to another country all get
the same signed answer, ``refusal`` ``unknown_reference`` without query or outcome: asking
tells a country nothing of the references it was not given.

Each answer is logged in the exchange log before it leaves (``outcome_sent``: the peer,
whether the reference was its, and then the reference, the query and the outcome; nothing
the peer sent is logged when it was not: no nonce, no reference it made up). A peer asking
more often than :data:`OUTCOME_BURST` at once, refilled at :data:`OUTCOME_RATE_PER_S`, is
answered 429 ``too_many_outcome_requests`` (Retry-After) and counted through the
responder's :meth:`~node.exchange.responder.Responder.count_refusals`, as terms requests are
(:mod:`node.exchange.terms`): an outcome request costs no quota that would bound it.

:func:`fetch_outcome` is the requester's side: it asks the peer with a fresh nonce over
mutual TLS and verifies the answer as terms are verified
(:func:`~node.exchange.signed_answers.verify_signed`: trust list, CRL, the peer's country,
addressed to this node, the nonce, ``issued_at`` within the accepted clock difference), then
that it names the reference asked and, when known, the query this node logged that reference
for (``wrong_reference``, ``wrong_query``: :class:`~certs.pki.errors.MessageRefused`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal, Self

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select

from certs import jws
from certs.pki.errors import MessageRefused
from certs.pki.validate import TrustAnchors
from node.exchange.admission import RefusalBudget
from node.exchange.messages import Country, new_nonce
from node.exchange.references import exchange_hits, well_formed
from node.exchange.requester import Peer, Requester
from node.exchange.responder import Responder
from node.exchange.signed_answers import (
    NONCE_PATTERN,
    WIRE_TIME,
    get_signed,
    utc,
    verify_signed,
)
from node.service_errors import RetryLaterError

#: JWS ``typ`` of an outcome answer.
OUTCOME_TYP = "bdx-outcome+jws"
#: The payload's format and version; a change of its fields is a new one.
OUTCOME_FORMAT: Literal["bdx-outcome-v1"] = "bdx-outcome-v1"
#: The peer route (under the peer port's ``/peer/v1``), ``{reference}`` a hit's reference.
OUTCOME_PATH = "/peer/v1/hits/{reference}/outcome"
#: A reference as a reply may carry one (:class:`~node.exchange.messages.ReplyPayload`; this
#: node's own are :data:`~node.exchange.references.REF_CHARS` of these characters).
REFERENCE_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
#: Outcome requests of one peer answered and logged at once, and how fast the allowance comes
#: back: a requester asks once for each hit its officers follow up, a few a day; a burst when
#: an officer goes through a day's hits. 8,640 entries a day at most per peer after the first
#: thirty, as a query's refusals (``REFUSAL_BURST``).
OUTCOME_BURST = 30.0
OUTCOME_RATE_PER_S = 1 / 10
#: Retry-After of a 429 ``too_many_outcome_requests``: the next request is allowed by then.
OUTCOME_RETRY_AFTER_S = 10
#: Reason of an outcome request beyond the peer's allowance.
TOO_MANY = "too_many_outcome_requests"
#: The exchange log's event of an outcome answer.
OUTCOME_EVENT = "outcome_sent"
#: The signed refusal of a reference the asking country was not given (or no longer is).
UNKNOWN_REFERENCE = "unknown_reference"

FollowUp = Literal["pending", "confirmed", "not_confirmed", "withdrawn"]
PENDING: FollowUp = "pending"


def outcome_path(reference: str) -> str:
    return OUTCOME_PATH.format(reference=reference)


class OutcomePayload(BaseModel):
    """The signed outcome (format :data:`OUTCOME_FORMAT`): ``query_id`` and ``outcome``
    exactly when there is no ``refusal``; ``outcome_at`` exactly when an outcome is
    recorded (not ``pending``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    v: Literal[1] = 1
    kind: Literal["outcome"] = "outcome"
    format: Literal["bdx-outcome-v1"] = OUTCOME_FORMAT
    responder: Country
    requester: Country
    reference: str = Field(pattern=REFERENCE_PATTERN)
    nonce: str = Field(pattern=NONCE_PATTERN)
    issued_at: datetime
    query_id: uuid.UUID | None = None
    outcome: FollowUp | None = None
    outcome_at: datetime | None = None
    refusal: Literal["unknown_reference"] | None = None

    signed_by: ClassVar[str] = "responder"

    @field_validator("issued_at", "outcome_at")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else utc(value)

    @model_validator(mode="after")
    def _outcome_or_refusal(self) -> OutcomePayload:
        if (self.outcome is None) == (self.refusal is None):
            raise ValueError("an outcome is given exactly when there is no refusal")
        if (self.query_id is None) != (self.outcome is None):
            raise ValueError("the query is given exactly with an outcome")
        recorded = self.outcome is not None and self.outcome != PENDING
        if recorded != (self.outcome_at is not None):
            raise ValueError("outcome_at is given exactly with a recorded outcome")
        return self

    def wire(self) -> dict[str, Any]:
        """The JSON object signed (canonical JSON), with ``sender`` for the JWS layer."""
        data = self.model_dump(mode="json", exclude_none=True)
        data["issued_at"] = self.issued_at.strftime(WIRE_TIME)
        if self.outcome_at is not None:
            data["outcome_at"] = self.outcome_at.strftime(WIRE_TIME)
        data["sender"] = self.responder
        return data

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Self:
        body = dict(data)
        sender = body.pop("sender", None)
        payload = cls.model_validate(body)
        if sender != payload.responder:
            raise ValueError(f"the sender is not the responder ({payload.responder})")
        return payload


@dataclass(frozen=True)
class _Kept:
    query_id: str
    outcome: FollowUp
    outcome_at: datetime | None


def _aware(value: datetime) -> datetime:
    """A stored time in UTC (SQLite gives them back without their zone)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class OutcomeDesk:
    """Answers peers' outcome requests with the responder's references, key and log; the
    requests refused beyond a peer's allowance are counted through the responder (as
    :class:`~node.exchange.terms.TermsDesk`'s)."""

    def __init__(self, responder: Responder, budget: RefusalBudget | None = None) -> None:
        self.responder = responder
        self.budget = budget or RefusalBudget(OUTCOME_BURST, OUTCOME_RATE_PER_S)
        responder.count_refusals(self.budget)

    def _kept(self, reference: str, requester: str, now: datetime) -> _Kept | None:
        """The follow-up of ``reference`` when this node issued it to ``requester`` and its
        follow-up period is not over; else None (whichever it is)."""
        if not well_formed(reference):
            return None
        hits = self.responder.hits
        t = exchange_hits
        with hits.engine.connect() as conn:
            row = conn.execute(
                select(
                    t.c.query_id, t.c.requester, t.c.created_at, t.c.outcome, t.c.outcome_at
                ).where(t.c.reference == reference)
            ).first()
        if row is None or row.requester != requester:
            return None
        if hits.retention is not None and _aware(row.created_at) < now - hits.retention:
            return None  # expired: housekeeping deletes the row within the hour
        if row.outcome is None:
            return _Kept(row.query_id, PENDING, None)
        at = None if row.outcome_at is None else _aware(row.outcome_at)
        return _Kept(row.query_id, row.outcome.value, at)

    def answer(self, requester: str, reference: str, nonce: str) -> str:
        """The signed outcome of ``reference`` for ``requester`` echoing ``nonce``, logged
        before it leaves; :class:`RetryLaterError` (429) beyond the peer's allowance."""
        r = self.responder
        now = r.clock()
        if not self.budget.take(requester, TOO_MANY, now):
            r.flush_refusal_summaries()  # a summary whose window closed meanwhile
            raise RetryLaterError(
                f"too many outcome requests from {requester}; ask again later",
                reason=TOO_MANY,
                retry_after_s=OUTCOME_RETRY_AFTER_S,
            )
        kept = self._kept(reference, requester, now)
        event: dict[str, Any] = {
            "type": OUTCOME_EVENT,
            "node": r.country,
            "at": now.isoformat(),
            "peer": requester,
            "known": kept is not None,
        }
        if kept is None:
            payload = OutcomePayload(
                responder=r.country,
                requester=requester,
                reference=reference,
                nonce=nonce,
                issued_at=now,
                refusal=UNKNOWN_REFERENCE,
            )
        else:
            payload = OutcomePayload(
                responder=r.country,
                requester=requester,
                reference=reference,
                nonce=nonce,
                issued_at=now,
                query_id=uuid.UUID(kept.query_id),
                outcome=kept.outcome,
                outcome_at=kept.outcome_at,
            )
            event |= {"reference": reference, "query_id": kept.query_id, "outcome": kept.outcome}
        token = jws.sign(payload.wire(), r.signing_key, r.signing_chain, typ=OUTCOME_TYP)
        r.record([event])
        return token


class PeerOutcome(BaseModel):
    """A peer's outcome of a hit as this node verified it, with the signed answer."""

    model_config = ConfigDict(frozen=True)
    payload: OutcomePayload
    token: str


def check_outcome(
    token: str,
    trust: TrustAnchors,
    *,
    peer: str,
    own: str,
    nonce: str,
    reference: str,
    query_id: str,
    window: timedelta,
    now: datetime | None = None,
) -> OutcomePayload:
    """Verify ``peer``'s outcome answer to this node (``own``) for ``nonce`` about
    ``reference``, which this node logged for query ``query_id`` (module docstring)."""
    payload = verify_signed(
        token,
        trust,
        typ=OUTCOME_TYP,
        parse=OutcomePayload.from_wire,
        kind=f"{OUTCOME_FORMAT} outcome",
        peer=peer,
        own=own,
        nonce=nonce,
        window=window,
        now=now,
    )
    if payload.reference != reference:
        raise MessageRefused(
            "the outcome names another reference than the one asked", reason="wrong_reference"
        )
    if payload.query_id is not None and str(payload.query_id) != query_id:
        raise MessageRefused(
            "the outcome names another query than the one the reference answered",
            reason="wrong_query",
        )
    return payload


async def fetch_outcome(
    requester: Requester, peer: Peer, reference: str, query_id: str
) -> PeerOutcome:
    """``peer``'s outcome of the hit ``reference`` it gave for query ``query_id``, asked with
    a fresh nonce and verified (module docstring); the request on the event loop, the
    verification in a worker thread."""
    nonce = new_nonce()
    token = await get_signed(requester, peer, outcome_path(reference), nonce)
    payload = await anyio.to_thread.run_sync(
        lambda: check_outcome(
            token,
            requester.trust,
            peer=peer.country,
            own=requester.country,
            nonce=nonce,
            reference=reference,
            query_id=query_id,
            window=requester.clock_window,
        )
    )
    return PeerOutcome(payload=payload, token=token)
