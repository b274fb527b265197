"""Answering a peer's query, in the order that keeps a refused query from touching the gallery:

1. **signature**: the JWS verifies, its signing certificate chains to the root, is in the trust
   list, unrevoked, a *signing* certificate, of the same country as the mutual-TLS client
   certificate (a failure raises: the HTTP layer answers 4xx with the reason, nothing is signed
   because the requester is not established);
2. **message**: the payload is a valid v1 query (:class:`MalformedQueryError` otherwise);
3. **recipient**: the query is addressed to this node (``wrong_recipient``);
4. **replay**: created within the window and nonce unseen (``stale_message``,
   ``replayed_nonce``);
5. **policy**: the peer's rules and daily quota (:mod:`policy.decision`), decided before any
   gallery data is read;
6. **probe**: the templates are decoded, reading no gallery record (``unsupported_template``,
   ``unusable_template``);
7. **search**: the probe is matched in memory, then record-level restrictions suppress what
   may not be shared;
8. **reply**: hit (opaque reference + strength band) or no-hit, signed.

Steps 3–7 refuse with a *signed* reply (outcome ``refused`` and the reason code). When this
node itself fails (gallery or search processes, quota ledger, database), the reply is a signed
``error`` (reason ``search_unavailable``: ask again later), ``query_failed`` logs the cause and
stage, and a search the policy had granted is given back to the peer's daily quota. Every
step's outcome is written to the exchange log; the probe's templates are never stored or
logged: they live in this call's local variables only and are dropped when it returns. The
events are collected in order and appended in one transaction before the reply is returned
(also when a step raises), so a reply never leaves without its log entries: for a query
refused or failed before step 7, one append; for one that is searched, two: the events up to
its decision (``query_received`` with the probe's ``views``, ``policy_decision``) before any
gallery record is read, so a search cut short by a crash is on record with its decision (the
log unavailable: no search, a signed ``error``, stage ``log``), and the outcome after it.

Every refusal that is the peer's doing (``query_refused``, any step) takes a token of the
peer's refusal budget (:class:`~node.exchange.admission.RefusalBudget`); beyond it none of the
query's events is logged one by one, and one ``refusals_suppressed`` event per peer and window
sums such refusals. What the peer is answered does not change for a query whose signature
verified: its signed refusal is owed (steps 3–7); only a query refused before (step 1–2: no
JWS, a bad signature, a malformed payload) is answered 429 instead of 4xx. A refusal caused by
this node's own state (:func:`own_fault`: its own trust list, CRL or certificates) takes no
token: it is logged and answered as ever, and never spends a budget.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from cryptography import x509
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from certs import jws
from certs.errors import CertsError
from certs.pki import reasons
from certs.pki.keys import PrivateKey
from certs.pki.validate import TrustAnchors
from matcher.errors import GalleryError, MatcherError, TemplateFormatError
from matcher.face.template import FaceTemplate
from matcher.fingerprint.template import FingerprintTemplate
from node.errors import NodeError
from node.exchange import params
from node.exchange.admission import RefusalBudget
from node.exchange.messages import (
    Outcome,
    QueryPayload,
    ReplyPayload,
    Strength,
    TemplateItem,
    b64url,
    new_nonce,
)
from node.exchange.references import HitReferences
from node.exchange.replay import ReplayError, ReplayGuard
from node.service_errors import RetryLaterError, StoreUnavailableError
from policy.decision import Decision, PolicyEngine
from policy.quota import QuotaStoreError
from policy.restrictions import Restrictions, filter_shareable

log = logging.getLogger(__name__)

#: Reason of an ``error`` reply: the responder could not search (ask again later).
SEARCH_FAILED = "search_unavailable"


@dataclass(frozen=True)
class Candidate:
    """A gallery record that reached the decision threshold: reference, score, estimated FMR."""

    record_ref: str
    score: float
    fmr: float


@dataclass(frozen=True)
class Probe:
    """A query's templates decoded for the search: fingerprint views (``fingerprints``) or one
    face template (``face``). Lives in the answering call only, like the query."""

    modality: str
    fingerprints: tuple[FingerprintTemplate, ...] = ()
    face: FaceTemplate | None = None

    @property
    def views(self) -> int:
        """Searches the probe costs: its finger views, or 1 for a face."""
        return 1 if self.face is not None else len(self.fingerprints)


class ProbeSearch(Protocol):
    """Matches a query's templates against the local gallery, in memory, in two steps.

    ``decode`` turns the templates into a :class:`Probe` without reading any gallery record;
    it raises :class:`TemplateFormatError` for a format or version this node does not compare
    and :class:`MatcherError` for an unusable template. Calling the search returns the
    candidates whose score reaches the threshold for ``fmr`` (the policy's target per
    comparison; the node's search makes it stricter where its FPIR target at the gallery's
    size asks for it), best first, at most ``max_candidates``.
    """

    def decode(self, modality: str, templates: Sequence[TemplateItem]) -> Probe: ...

    def __call__(self, probe: Probe, max_candidates: int, fmr: float) -> list[Candidate]: ...


class ExchangeLog(Protocol):
    """Appends exchange events (JSON-ready, no biometric data) to the tamper-evident log:
    ``record`` one, ``record_many`` several in one transaction, in order."""

    def record(self, event: dict[str, Any]) -> None: ...

    def record_many(self, events: Sequence[dict[str, Any]]) -> None: ...


RestrictionLookup = Callable[[Sequence[str]], list[Restrictions]]


class MalformedQueryError(NodeError):
    """A correctly signed payload that is not a valid v1 query."""

    exit_code = 5
    default_reason = "malformed_query"


@dataclass(frozen=True)
class Answer:
    """The signed reply (compact JWS) and its payload."""

    token: str
    reply: ReplyPayload


#: Refusal reasons that are this node's own state, not the peer's doing: its trust list or CRL
#: past their grace (a peer's certificate checked against them is refused ``stale_*``).
OWN_STATE_REASONS = frozenset({reasons.STALE_TRUST_LIST, reasons.STALE_CRL})


def own_fault(stage: str, reason: str) -> bool:
    """Whether a refusal (``stage``, ``reason``) is caused by this node's own state: its
    credentials refused (stage ``credentials``, reasons ``own_*``, as
    :class:`~node.exchange.pki_watch.PkiWatch` reports them) or a peer's certificate checked
    against its own stale trust list or CRL. Such a refusal charges the peer nothing."""
    return stage == "credentials" or reason.startswith("own_") or reason in OWN_STATE_REASONS


def strength_of(fmr: float) -> Strength:
    """The match strength band of a hit whose score has estimated false match rate ``fmr``."""
    if fmr <= params.STRONG_MAX_FMR:
        return Strength.STRONG
    if fmr <= params.MODERATE_MAX_FMR:
        return Strength.MODERATE
    return Strength.WEAK


#: Domain of :func:`case_ref_digest` (the hit references' is ``bdx-ref-v3``: the one secret
#: serves both, the two never collide).
CASE_REF_DOMAIN = b"bdx-case-v1"
#: Characters of a ``case_ref_hmac`` kept (base64url): 132 bits, as a hit reference.
CASE_REF_CHARS = 22


def case_ref_digest(secret: bytes, requester: str, case_ref: str) -> str:
    """``base64url(HMAC-SHA256(secret, "bdx-case-v1" | 0 | requester | 0 | case_ref))``, its
    first :data:`CASE_REF_CHARS` characters: what the responder's exchange log keeps of a
    requester's case reference. The requesting officer's text (``CaseRef``'s alphabet admits
    ``SMITH.JOHN-1980``) never lands in this node's append-only log, kept for
    ``exchange_log_days``; the entry still matches a case reference the requester quotes
    (the same digest, under this node's secret: nobody without it can test guesses).
    Correlation with the requester's own log goes by ``query_id`` anyway."""
    message = b"\0".join((CASE_REF_DOMAIN, requester.encode(), case_ref.encode()))
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return b64url(digest)[:CASE_REF_CHARS]


class Responder:
    """Answers peers' queries for one node (see the module docstring for the steps)."""

    def __init__(
        self,
        *,
        country: str,
        trust: TrustAnchors,
        signing_key: PrivateKey,
        signing_chain: Sequence[x509.Certificate],
        policy: PolicyEngine,
        replay: ReplayGuard,
        hits: HitReferences,
        search: ProbeSearch,
        restrictions: RestrictionLookup,
        exchange_log: ExchangeLog,
        clock: Callable[[], datetime] | None = None,
        refusals: RefusalBudget | None = None,
    ) -> None:
        self.country = country
        self.trust = trust
        self._signing = (signing_key, list(signing_chain))
        self.policy = policy
        self.replay = replay
        self.hits = hits
        self.search = search
        self.restrictions = restrictions
        self.log = exchange_log
        self.clock = clock or (lambda: datetime.now(UTC))
        self.refusals = refusals or RefusalBudget()
        # Refusals caused by this node's own state: never 429, but logged one by one only up
        # to a budget of their own (a stale CRL let any member append ~500 entries a second).
        self.own_refusals = RefusalBudget()
        self._summaries_lock = threading.Lock()
        self._unlogged_summaries: list[dict[str, Any]] = []  # handed out, their append failed
        self._other_budgets: list[RefusalBudget] = []  # counted elsewhere (terms requests)

    @property
    def signing_key(self) -> PrivateKey:
        return self._signing[0]

    @property
    def signing_chain(self) -> list[x509.Certificate]:
        return self._signing[1]

    def use_signing(self, key: PrivateKey, chain: Sequence[x509.Certificate]) -> None:
        """Sign the replies from now on with ``key`` and ``chain`` (a renewed certificate),
        the two swapped together."""
        self._signing = (key, list(chain))

    def case_ref_digest(self, requester: str, case_ref: str) -> str:
        """The ``case_ref_hmac`` this node logs for the case reference ``case_ref`` of a
        query from ``requester`` (:func:`case_ref_digest` under the node's secret)."""
        return case_ref_digest(self.hits.secret, requester, case_ref)

    def _case_ref_fields(self, query: QueryPayload) -> dict[str, str]:
        """What ``query_received`` keeps of the requester's case reference: its keyed digest
        (``case_ref_hmac``), never the officer's text; nothing without one."""
        if query.case_ref is None:
            return {}
        return {"case_ref_hmac": self.case_ref_digest(query.requester, query.case_ref)}

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "node": self.country, "at": self.clock().isoformat(), **fields}

    def refused_unverified(self, peer: str | None, stage: str, reason: str) -> None:
        """Log a query refused before its signature could be checked (``peer`` None when the
        TLS certificate itself was refused): nothing is signed, the HTTP layer answers 4xx.
        Beyond the peer's refusal budget it is only counted and :class:`RetryLaterError` is
        raised (429) instead, unless this node's own state refused it (:func:`own_fault`):
        that is answered as it is, and beyond a budget of its own only counted."""
        own = own_fault(stage, reason)
        budget = self.own_refusals if own else self.refusals
        if not budget.take(peer, reason, self.clock()):
            self._record([])  # a summary whose window closed meanwhile
            if own:
                return
            raise RetryLaterError(
                f"too many refused queries from {peer or 'this client'}; slow down",
                retry_after_s=params.REFUSAL_RETRY_AFTER_S,
            )
        self._record([self._event("query_refused", peer=peer, stage=stage, reason=reason)])

    def _record(self, events: Sequence[dict[str, Any]], *, closing: bool = False) -> None:
        """Append ``events`` in one transaction, after the ``refusals_suppressed`` events whose
        window closed (every one with ``closing``). Summaries an append failed to log are
        kept for the next one: the budgets forget what they hand out."""
        with self._summaries_lock:
            budgets = (self.refusals, self.own_refusals, *self._other_budgets)
            due = [
                *self._unlogged_summaries,
                *(s for b in budgets for s in b.summaries(self._event, closing=closing)),
            ]
            self._unlogged_summaries = []
        if not (due or events):
            return
        try:
            self.log.record_many([*due, *events])
        except BaseException:
            with self._summaries_lock:
                self._unlogged_summaries[:0] = due
            raise

    def count_refusals(self, budget: RefusalBudget) -> None:
        """Log ``budget``'s ``refusals_suppressed`` events as this responder's own: with its
        next entries, each housekeeping round and when the node stops, kept on a failed
        append (the peer port's other requests, as :class:`~node.exchange.terms.TermsDesk`)."""
        with self._summaries_lock:
            if all(b is not budget for b in self._other_budgets):
                self._other_budgets.append(budget)

    def record(self, events: Sequence[dict[str, Any]]) -> None:
        """Append ``events`` in one transaction after the summaries due (:meth:`_record`)."""
        self._record(events)

    def flush_refusal_summaries(self, *, closing: bool = False) -> None:
        """Append the ``refusals_suppressed`` events whose window closed (every one with
        ``closing``: the node stops)."""
        self._record([], closing=closing)

    def record_dropped(self, dropped: Mapping[str, int], reason: str) -> None:
        """Log one ``queries_dropped`` event per peer of ``dropped`` (how many of its queries
        this node took and will not answer, and why)."""
        self._record(
            [
                self._event("queries_dropped", peer=peer, count=count, reason=reason)
                for peer, count in sorted(dropped.items())
            ]
        )

    def verify(self, token: str, tls_country: str) -> QueryPayload:
        """Steps 1–2: the verified query, or a typed error (nothing signed, nothing matched)."""
        now = self.clock()
        try:
            verified = jws.verify(
                token, self.trust, expected_country=tls_country, now=now, typ=params.QUERY_TYP
            )
        except CertsError as exc:
            self.refused_unverified(tls_country, "signature", exc.reason)
            raise
        try:
            return QueryPayload.from_wire(verified.payload)
        except (ValidationError, ValueError) as exc:
            self.refused_unverified(tls_country, "message", "malformed_query")
            detail = str(exc).splitlines()[0]
            raise MalformedQueryError(
                f"the signed payload is not a valid query: {detail}"
            ) from None

    def answer(self, token: str, tls_country: str) -> Answer:
        """Verify, decide, search and sign the reply to one query token."""
        query = self.verify(token, tls_country)
        return self.answer_verified(query)

    def answer_verified(self, query: QueryPayload) -> Answer:
        """Steps 3–8 for a query whose signature and form were verified."""
        events: list[dict[str, Any]] = []
        try:
            return self._answer(query, events)
        except SQLAlchemyError as exc:  # the replay, quota or reference tables: this node's fault
            log.error("query %s: node database failed (%s)", query.query_id, type(exc).__name__)
            return self._fail(query, events, "database_unavailable", "store")
        finally:
            self._record(events)

    def _answer(self, query: QueryPayload, events: list[dict[str, Any]]) -> Answer:
        now = self.clock()
        received = self._event(
            "query_received",
            query_id=str(query.query_id),
            peer=query.requester,
            purpose=query.purpose,
            modality=query.modality,
            templates=len(query.templates),
            **self._case_ref_fields(query),
        )
        events.append(received)
        if query.responder != self.country:
            return self._refuse(query, events, "wrong_recipient", "recipient")
        try:
            self.replay.check(query.requester, query.nonce, query.created, now)
        except ReplayError as exc:
            return self._refuse(query, events, exc.reason, "replay")
        try:
            decision = self.policy.decide_inbound(
                query.requester, query.purpose, query.modality, now
            )
        except QuotaStoreError as exc:  # no decision could be made: this node's failure
            log.error("query %s: quota ledger failed (%s)", query.query_id, exc.reason)
            return self._fail(query, events, exc.reason, "policy")
        events.append(
            {**decision.to_record(), "query_id": str(query.query_id), "node": self.country}
        )
        if not decision.allowed:
            reason = decision.refusal.value if decision.refusal else "policy"
            return self._refuse(query, events, reason)
        try:
            probe = self.search.decode(query.modality, query.templates)
        except TemplateFormatError as exc:
            log.info("query %s: template refused (%s)", query.query_id, exc.reason)
            return self._refuse(query, events, "unsupported_template", "template", decision)
        except MatcherError as exc:
            log.info("query %s: template unusable (%s)", query.query_id, exc.reason)
            return self._refuse(query, events, "unusable_template", "template", decision)
        received["views"] = probe.views
        try:  # the decision stands in the log before any gallery record is read
            self._record(events)
        except SQLAlchemyError as exc:
            log.error("query %s: exchange log failed (%s)", query.query_id, type(exc).__name__)
            return self._fail(query, events, "log_unavailable", "log", decision)
        events.clear()
        try:
            return self._search_and_reply(query, probe, events, decision)
        except SQLAlchemyError as exc:  # restrictions or references: this node's fault
            log.error("query %s: node database failed (%s)", query.query_id, type(exc).__name__)
            return self._fail(query, events, "database_unavailable", "store", decision)

    def _search_and_reply(
        self, query: QueryPayload, probe: Probe, events: list[dict[str, Any]], decision: Decision
    ) -> Answer:
        """Steps 6–7 for a query the policy allowed (``decision``), its templates decoded
        (``probe``) and its decision logged."""
        max_candidates = decision.max_candidates or 1
        fmr = decision.fmr if decision.fmr is not None else params.MODERATE_MAX_FMR
        try:
            candidates = self.search(probe, max_candidates, fmr)
        except (GalleryError, StoreUnavailableError) as exc:  # this node's failure, not the query's
            log.error("query %s: search failed (%s)", query.query_id, exc.reason)
            return self._fail(query, events, exc.reason, "search", decision)
        except TemplateFormatError as exc:  # e.g. the gallery of its format dropped meanwhile
            log.info("query %s: template refused (%s)", query.query_id, exc.reason)
            return self._refuse(
                query, events, "unsupported_template", "template", decision, logged=True
            )
        except MatcherError as exc:
            log.info("query %s: template unusable (%s)", query.query_id, exc.reason)
            return self._refuse(
                query, events, "unusable_template", "template", decision, logged=True
            )
        refs = [c.record_ref for c in candidates]
        kept, dropped = filter_shareable(
            candidates, self.restrictions(refs) if refs else [], query.requester, query.purpose
        )
        if dropped:
            events.append(
                self._event(
                    "hits_suppressed",
                    query_id=str(query.query_id),
                    peer=query.requester,
                    count=len(dropped),
                    reasons=sorted({reason for _, reason in dropped}),
                )
            )
        if kept:
            best = kept[0]
            reference = self.hits.issue(query.query_id, query.requester, best.record_ref)
            reply = self._reply(
                query, Outcome.HIT, reference=reference, strength=strength_of(best.fmr)
            )
        else:
            reply = self._reply(query, Outcome.NO_HIT)
        events.append(
            self._event(
                "reply_sent",
                query_id=str(query.query_id),
                peer=query.requester,
                outcome=reply.outcome.value,
                reference=reply.reference,
                strength=reply.strength.value if reply.strength else None,
            )
        )
        return self._sign(reply)

    def _reply(self, query: QueryPayload, outcome: Outcome, **fields: Any) -> ReplyPayload:
        return ReplyPayload(
            query_id=query.query_id,
            requester=query.requester,
            responder=self.country,
            created=self.clock(),
            nonce=new_nonce(),
            outcome=outcome,
            **fields,
        )

    def _refuse(
        self,
        query: QueryPayload,
        events: list[dict[str, Any]],
        reason: str,
        stage: str = "policy",
        charged: Decision | None = None,
        *,
        logged: bool = False,
    ) -> Answer:
        """A signed refusal. A probe refused after the policy allowed it (its templates
        unsupported or unusable) gives back the search it took from the daily quota
        (``charged``), as a failure does. Beyond the peer's refusal budget it is signed all
        the same (the requester is owed it), but only counted for the peer's
        ``refusals_suppressed`` event: none of the query's events is logged one by one. A
        query whose unit could not be given back is always logged: its events are the only
        record of the charge; so is one whose decision was ``logged`` already (its outcome
        is owed to that entry)."""
        fields = self._give_back(query, charged) if charged is not None else {}
        reply = self._reply(query, Outcome.REFUSED, reason=reason)
        still_charged = fields.get("quota_returned") is False
        if (
            not still_charged
            and not logged
            and not self.refusals.take(query.requester, reason, self.clock())
        ):
            events.clear()
            return self._sign(reply)
        return self._ended(query, events, reply, "query_refused", stage, reason, **fields)

    def _fail(
        self,
        query: QueryPayload,
        events: list[dict[str, Any]],
        cause: str,
        stage: str,
        charged: Decision | None = None,
    ) -> Answer:
        """A signed ``error`` reply when this node could not answer (gallery, search processes,
        quota ledger or its database unavailable): the requester learns it may ask again
        later; the cause and ``stage`` stay in this node's log. The search an allowed
        decision (``charged``) took from the peer's daily quota is given back, and the
        event says so (``quota``: the count afterwards; ``quota_returned`` false when the
        ledger could not be updated)."""
        fields = self._give_back(query, charged) if charged is not None else {}
        reply = self._reply(query, Outcome.ERROR, reason=SEARCH_FAILED)
        return self._ended(query, events, reply, "query_failed", stage, cause, **fields)

    def _give_back(self, query: QueryPayload, charged: Decision) -> dict[str, Any]:
        """Return the search ``charged`` took from the daily quota; the event's fields
        (``quota``: the count afterwards; ``quota_returned`` false when the ledger failed)."""
        try:
            return {"quota": self.policy.return_search(charged), "quota_returned": True}
        except (QuotaStoreError, SQLAlchemyError) as exc:
            log.error(
                "query %s: its search was not given back to the quota (%s)",
                query.query_id,
                type(exc).__name__,
            )
            return {"quota_returned": False}

    def _ended(
        self,
        query: QueryPayload,
        events: list[dict[str, Any]],
        reply: ReplyPayload,
        kind: str,
        stage: str,
        reason: str,
        **fields: Any,
    ) -> Answer:
        """Log why ``query`` ended before a search result (event ``kind``, with ``fields``),
        then sign ``reply``."""
        events.append(
            self._event(
                kind,
                query_id=str(query.query_id),
                peer=query.requester,
                stage=stage,
                reason=reason,
                **fields,
            )
        )
        return self._sign(reply)

    def _sign(self, reply: ReplyPayload) -> Answer:
        key, chain = self._signing
        token = jws.sign(reply.wire(), key, chain, typ=params.REPLY_TYP)
        return Answer(token, reply)
