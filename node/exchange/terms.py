"""A peer's terms: what its rules let this node ask it now, signed by the peer.

``GET /peer/v1/terms?nonce=N`` on the peer port (mutual TLS; the requesting country is the
client certificate's) answers a compact JWS (``typ`` :data:`TERMS_TYP`, so that terms can never
pass for a query or a reply) over the canonical JSON of a :class:`TermsPayload`, format
:data:`TERMS_FORMAT`: the responding and requesting countries, the requester's nonce echoed,
when it was issued and, when the rules hold terms for the requester, the version of the rules
in force and, under them, its terms: purposes, modalities, each modality's daily quota with
what is used and left today, the day (in the rule's time zone) and when it ends, the hours of
service and whether now is within them. Nothing about the gallery. A country the rules hold
no ``[peers.XX]`` table for gets a signed answer without terms or rules version (``refusal``
``unknown_peer``: it learns nothing of the rules), as its query gets a signed
``unknown_peer`` refusal (:mod:`policy.decision`): its certificate is a member's, so it is owed
a signed answer. The standing is read as ``GET /quota`` reads it
(:meth:`policy.decision.PolicyEngine.quota_standings`): nothing is consumed.

Each answer is logged in the exchange log (``terms_sent``: the peer, the rules' version,
whether it had terms; no nonce, nothing personal) before it leaves, as every peer exchange
is. A peer asking more often than :data:`TERMS_BURST` at once, refilled at
:data:`TERMS_RATE_PER_S`, is answered 429 ``too_many_terms_requests`` (Retry-After) and
counted, not logged one by one: its count goes into a ``refusals_suppressed`` event logged
with the responder's own (:meth:`~node.exchange.responder.Responder.count_refusals`: with the
next entry logged once the count's window closed, in the next housekeeping round, or when the
node stops; kept for the next append when one fails), as the responder bounds the entries a
flooding peer makes (``REFUSAL_BURST`` in :mod:`node.exchange.params`: one peer appended
200-270 entries a second); unlike a query, a terms request costs no quota that would bound it.

:func:`fetch_terms` is the requester's side: it asks a peer over mutual TLS (the server's
certificate validated against the trust list and CRL as the connection opens, as for
queries), verifies the JWS as replies are verified (trust list, CRL, the peer's country),
checks the payload as strictly as the rules that made it (hours as the rules write them, a
known time zone, a printable rules version, known purposes and modalities once each, one
quota a modality, bounded sizes: what a peer signs is shown to officers, and a refusal never
repeats its text), that the nonce is the one sent and that ``issued_at`` is within the node's
accepted clock difference (the requester's ``clock_window``, ``replay_window_s``), and returns
the :class:`PeerTerms`. A refused signature raises the certificate's
:class:`~certs.errors.CertsError`, a payload that is no terms
:class:`~certs.pki.errors.MessageRefused`, a nonce not echoed or a stale answer
:class:`~node.exchange.replay.ReplayError` (``nonce_mismatch``, ``stale_message``); a peer
that cannot be asked, :class:`PeerError` with the requester's status words as reason
(``unreachable``, ``timeout``, ``untrusted_peer``, ``http_error``, ``invalid_reply``).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, ClassVar, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio.to_thread
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from certs import jws
from certs.pki.validate import TrustAnchors
from node.exchange.admission import RefusalBudget
from node.exchange.messages import Country, new_nonce
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
from policy.decision import PolicyEngine, Refusal
from policy.rules import (
    HOST_DEPENDENT_ZONES,
    MAX_DAILY_QUOTA,
    Modality,
    Purpose,
    ServiceWindow,
)

#: JWS ``typ`` of a terms answer: no query or reply verifies as terms, nor terms as either.
TERMS_TYP = "bdx-terms+jws"
#: The payload's format and version; a change of its fields is a new one.
TERMS_FORMAT: Literal["bdx-terms-v1"] = "bdx-terms-v1"
#: The peer route (under the peer port's ``/peer/v1``).
TERMS_PATH = "/peer/v1/terms"
#: Terms requests of one peer logged and answered at once, and how fast the allowance comes
#: back: a requester asks before an officer's queries or on an operator's command, a few a
#: day; a standing that changes with every search is no use asked more than once a minute.
#: 1,440 entries a day at most per peer after the first ten (a query's refusals: 8,640).
TERMS_BURST = 10.0
TERMS_RATE_PER_S = 1 / 60
#: Retry-After of a 429 ``too_many_terms_requests``: the next request is allowed by then.
TERMS_RETRY_AFTER_S = 60
#: Reason of a terms request beyond the peer's allowance.
TOO_MANY = "too_many_terms_requests"
#: The exchange log's event of a terms answer.
TERMS_EVENT = "terms_sent"

#: Hours-of-service windows one answer may list: one a half hour of the day, more than any
#: rules file holds usefully.
MAX_HOURS = 48
#: A rules version's length, as the rules file allows it (``policy.rules.Policy.version``).
MAX_VERSION_LENGTH = 64
#: An IANA time zone key: letters, digits and ``_+-`` in ``/``-separated parts (``UTC``,
#: ``Asia/Bangkok``, ``Etc/GMT+7``, ``America/Argentina/Buenos_Aires``); looked up after.
ZONE_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]{0,29}(/[A-Za-z0-9_+-]{1,30}){0,2}$")

# What a peer signs is shown to officers: every text in terms is checked as strictly as the
# rules that made it, and a refusal never repeats the peer's text (pydantic's first line is
# the count of errors; the messages below name no value).


def _window(text: str) -> str:
    """``text`` if it is an hours-of-service window as the rules write it (``HH:MM-HH:MM``)."""
    try:
        window = ServiceWindow.parse(text)
    except ValueError:
        window = None
    if window is None or str(window) != text:
        raise ValueError("an hours window is not 'HH:MM-HH:MM'")
    return text


def _zone(key: str) -> str:
    """``key`` if it names an IANA time zone this node knows (as the rules require)."""
    if not ZONE_PATTERN.match(key) or key in HOST_DEPENDENT_ZONES:
        raise ValueError("the time zone is no IANA time zone key")
    try:
        ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError("the time zone is no IANA time zone key") from None
    return key


def _version(text: str) -> str:
    """``text`` if it is a rules version fit to show: printable characters only (no control
    characters, line breaks or bidi overrides), the length the rules file allows."""
    if not text.isprintable():
        raise ValueError("the rules version holds unprintable characters")
    return text


Window = Annotated[str, Field(min_length=11, max_length=11), AfterValidator(_window)]
ZoneKey = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_zone)]
Version = Annotated[
    str, Field(min_length=1, max_length=MAX_VERSION_LENGTH), AfterValidator(_version)
]


class ModalityQuota(BaseModel):
    """One modality's daily quota on the rule's current day (``remaining``: what ``used``
    leaves of ``limit``, 0 when a lowered limit is exceeded)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    modality: Modality
    limit: int = Field(ge=0, le=MAX_DAILY_QUOTA, strict=True)
    used: int = Field(ge=0, le=MAX_DAILY_QUOTA, strict=True)
    remaining: int = Field(ge=0, le=MAX_DAILY_QUOTA, strict=True)

    @model_validator(mode="after")
    def _remaining(self) -> ModalityQuota:
        if self.remaining != max(self.limit - self.used, 0):
            raise ValueError("a quota's remaining is not its limit less its use")
        return self


class Terms(BaseModel):
    """What the requester may ask under the responder's rules in force: each purpose and
    modality once, one quota for each modality and none other (as the rules require)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    purposes: list[Purpose] = Field(max_length=len(Purpose))
    modalities: list[Modality] = Field(max_length=len(Modality))
    quotas: list[ModalityQuota] = Field(max_length=len(Modality))
    timezone: ZoneKey
    day: date
    resets_at: datetime
    hours: list[Window] = Field(max_length=MAX_HOURS)
    within_hours: bool

    @field_validator("resets_at")
    @classmethod
    def _resets_utc(cls, value: datetime) -> datetime:
        return utc(value)

    @model_validator(mode="after")
    def _consistent(self) -> Terms:
        if len(set(self.purposes)) != len(self.purposes):
            raise ValueError("a purpose is listed twice")
        if len(set(self.modalities)) != len(self.modalities):
            raise ValueError("a modality is listed twice")
        quoted = [q.modality for q in self.quotas]
        if len(set(quoted)) != len(quoted) or set(quoted) != set(self.modalities):
            raise ValueError("the quotas are not one for each modality")
        return self


class TermsPayload(BaseModel):
    """The signed terms (format :data:`TERMS_FORMAT`); ``terms`` is absent exactly when
    ``refusal`` says why there are none (``unknown_peer``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    v: Literal[1] = 1
    kind: Literal["terms"] = "terms"
    format: Literal["bdx-terms-v1"] = TERMS_FORMAT
    responder: Country
    requester: Country
    nonce: str = Field(pattern=NONCE_PATTERN)
    issued_at: datetime
    policy_version: Version | None = None
    terms: Terms | None = None
    refusal: str | None = Field(default=None, max_length=64, pattern=r"^[a-z_]+$")

    signed_by: ClassVar[str] = "responder"

    @field_validator("issued_at")
    @classmethod
    def _issued_utc(cls, value: datetime) -> datetime:
        return utc(value)

    @model_validator(mode="after")
    def _terms_or_refusal(self) -> TermsPayload:
        if (self.terms is None) == (self.refusal is None):
            raise ValueError("terms are given exactly when there is no refusal")
        if (self.terms is None) != (self.policy_version is None):
            raise ValueError("the rules version is given exactly with terms")
        return self

    def wire(self) -> dict[str, Any]:
        """The JSON object signed (canonical JSON: no floats, times as UTC strings), with
        ``sender``, which the JWS layer checks against the signing certificate."""
        data = self.model_dump(mode="json", exclude_none=True)
        data["issued_at"] = self.issued_at.strftime(WIRE_TIME)
        if self.terms is not None:
            data["terms"]["resets_at"] = self.terms.resets_at.strftime(WIRE_TIME)
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


def terms_for(engine: PolicyEngine, requester: str, now: datetime) -> tuple[str, Terms | None]:
    """The rules' version and ``requester``'s terms at ``now`` (None: no inbound rule),
    its quotas read as ``GET /quota`` reads them (nothing consumed)."""
    policy, at, standings = engine.quota_standings(now)
    rule = policy.peers.get(requester)
    if rule is None:
        return policy.version, None
    mine = [s for s in standings if s.peer == requester]
    zone = ZoneInfo(rule.timezone)
    local = at.astimezone(zone)
    day = mine[0].day if mine else local.date()
    # The day ends at the next local midnight (a midnight skipped by a clock change: the
    # instant of the change, which fold 0 gives).
    resets = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    within = not rule.hours or any(w.contains(local.time()) for w in rule.hours)
    return policy.version, Terms(
        purposes=sorted(rule.purposes),
        modalities=sorted(rule.modalities),
        quotas=[
            ModalityQuota(modality=s.modality, limit=s.limit, used=s.used, remaining=s.remaining)
            for s in mine
        ],
        timezone=rule.timezone,
        day=day,
        resets_at=resets,
        hours=[str(w) for w in rule.hours],
        within_hours=within,
    )


class TermsDesk:
    """Answers peers' terms requests with the responder's rules, key and log. The counts of
    the requests refused beyond a peer's allowance are the responder's to log
    (:meth:`~node.exchange.responder.Responder.count_refusals`): with its next entry, the
    next housekeeping round or when the node stops, kept when an append fails."""

    def __init__(self, responder: Responder, budget: RefusalBudget | None = None) -> None:
        self.responder = responder
        self.budget = budget or RefusalBudget(TERMS_BURST, TERMS_RATE_PER_S)
        responder.count_refusals(self.budget)

    def answer(self, requester: str, nonce: str) -> str:
        """The signed terms for ``requester`` echoing ``nonce``, logged before they leave;
        :class:`RetryLaterError` (429) beyond the peer's allowance (counted, not logged)."""
        r = self.responder
        now = r.clock()
        if not self.budget.take(requester, TOO_MANY, now):
            r.flush_refusal_summaries()  # a summary whose window closed meanwhile
            raise RetryLaterError(
                f"too many terms requests from {requester}; ask again later",
                reason=TOO_MANY,
                retry_after_s=TERMS_RETRY_AFTER_S,
            )
        version, terms = terms_for(r.policy, requester, now)
        payload = TermsPayload(
            responder=r.country,
            requester=requester,
            nonce=nonce,
            issued_at=now,
            # A country without rules here learns nothing of them, not even their version.
            policy_version=version if terms is not None else None,
            terms=terms,
            refusal=None if terms is not None else Refusal.UNKNOWN_PEER.value,
        )
        token = jws.sign(payload.wire(), r.signing_key, r.signing_chain, typ=TERMS_TYP)
        r.record(
            [
                {
                    "type": TERMS_EVENT,
                    "node": r.country,
                    "at": now.isoformat(),
                    "peer": requester,
                    "policy_version": version,
                    "granted": terms is not None,
                }
            ]
        )
        return token


class PeerTerms(BaseModel):
    """A peer's terms as this node verified them, with the signed answer (``token``)."""

    model_config = ConfigDict(frozen=True)
    payload: TermsPayload
    token: str


def check_terms(
    token: str,
    trust: TrustAnchors,
    *,
    peer: str,
    own: str,
    nonce: str,
    window: timedelta,
    now: datetime | None = None,
) -> TermsPayload:
    """Verify a terms answer of ``peer`` to this node (``own``) for ``nonce`` (module
    docstring); raises the typed errors named there."""
    return verify_signed(
        token,
        trust,
        typ=TERMS_TYP,
        parse=TermsPayload.from_wire,
        kind=f"{TERMS_FORMAT} terms",
        peer=peer,
        own=own,
        nonce=nonce,
        window=window,
        now=now,
    )


async def fetch_terms(requester: Requester, peer: Peer) -> PeerTerms:
    """``peer``'s terms for this node, asked with a fresh nonce and verified (module
    docstring). The request goes out on the event loop (as queries do); the verification,
    which validates certificates and a signature, runs in a worker thread."""
    nonce = new_nonce()
    token = await get_signed(requester, peer, TERMS_PATH, nonce)
    payload = await anyio.to_thread.run_sync(
        lambda: check_terms(
            token,
            requester.trust,
            peer=peer.country,
            own=requester.country,
            nonce=nonce,
            window=requester.clock_window,
        )
    )
    return PeerTerms(payload=payload, token=token)
