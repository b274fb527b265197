"""Decisions under a :class:`~policy.rules.Policy`, each carrying every check and its outcome.

A decision is taken *before* any gallery data is read. It lists each check in order (peer known,
purpose, modality, hours of service, daily quota) with whether it passed and why; the first
failing check is the refusal reason. :meth:`Decision.to_record` is what goes into the exchange
log: references and rule outcomes only, never biometric or personal data.

The static checks (:func:`evaluate_inbound`, :func:`evaluate_outbound`) read only the rules.
:class:`PolicyEngine` adds the daily quota, consumed atomically in the database
(:class:`~policy.quota.QuotaLedger`) only when every static check passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, Literal
from zoneinfo import ZoneInfo

from policy.quota import QuotaLedger
from policy.rules import Modality, Policy, Purpose


class Refusal(StrEnum):
    """Why a request is refused; stable codes that peers and auditors see."""

    UNKNOWN_PEER = "unknown_peer"
    UNKNOWN_PURPOSE = "unknown_purpose"
    PURPOSE_NOT_ALLOWED = "purpose_not_allowed"
    UNKNOWN_MODALITY = "unknown_modality"
    MODALITY_NOT_ALLOWED = "modality_not_allowed"
    OUTSIDE_SERVICE_HOURS = "outside_service_hours"
    QUOTA_EXHAUSTED = "quota_exhausted"


@dataclass(frozen=True)
class Check:
    """One rule applied: ``name`` (e.g. ``purpose``), whether it ``passed``, and a sentence."""

    name: str
    passed: bool
    detail: str
    refusal: Refusal | None = None


Direction = Literal["inbound", "outbound"]


@dataclass(frozen=True)
class Decision:
    """The outcome of applying the policy to one request, with every check and its reason."""

    direction: Direction
    peer: str
    purpose: str
    modality: str
    policy_version: str
    at: datetime
    checks: tuple[Check, ...]
    max_candidates: int | None = None
    fmr: float | None = None
    quota: dict[str, Any] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def refusal(self) -> Refusal | None:
        return next((c.refusal for c in self.checks if not c.passed), None)

    @property
    def reasons(self) -> list[str]:
        return [f"{'pass' if c.passed else 'FAIL'} {c.name}: {c.detail}" for c in self.checks]

    def with_check(self, check: Check, **changes: Any) -> Decision:
        return replace(self, checks=(*self.checks, check), **changes)

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready summary for the exchange log (no biometric or personal data)."""
        return {
            "type": "policy_decision",
            "direction": self.direction,
            "peer": self.peer,
            "purpose": self.purpose,
            "modality": self.modality,
            "policy_version": self.policy_version,
            "at": self.at.astimezone(UTC).isoformat(),
            "allowed": self.allowed,
            "refusal": self.refusal.value if self.refusal else None,
            "checks": [
                {"name": c.name, "passed": c.passed, "detail": c.detail} for c in self.checks
            ],
            "max_candidates": self.max_candidates,
            "fmr": self.fmr,
            "quota": self.quota,
        }


def _enum(cls: type[StrEnum], value: str) -> StrEnum | None:
    try:
        return cls(value)
    except ValueError:
        return None


def _membership(
    name: str,
    value: str,
    vocabulary: type[StrEnum],
    allowed: frozenset[Any],
    unknown: Refusal,
    not_allowed: Refusal,
) -> Check:
    """Whether ``value`` is a known member of ``vocabulary`` and in ``allowed``."""
    member = _enum(vocabulary, value)
    if member is None:
        known = ", ".join(x.value for x in vocabulary)
        return Check(name, False, f"{value!r} is not a known {name} ({known})", unknown)
    if member not in allowed:
        listed = ", ".join(sorted(x.value for x in allowed)) or "none"
        return Check(name, False, f"{value} is not allowed (allowed: {listed})", not_allowed)
    return Check(name, True, f"{value} is allowed")


def _purpose_modality_checks(
    purposes: frozenset[Purpose], modalities: frozenset[Modality], purpose: str, modality: str
) -> list[Check]:
    return [
        _membership(
            "purpose",
            purpose,
            Purpose,
            purposes,
            Refusal.UNKNOWN_PURPOSE,
            Refusal.PURPOSE_NOT_ALLOWED,
        ),
        _membership(
            "modality",
            modality,
            Modality,
            modalities,
            Refusal.UNKNOWN_MODALITY,
            Refusal.MODALITY_NOT_ALLOWED,
        ),
    ]


def evaluate_inbound(
    policy: Policy, peer: str, purpose: str, modality: str, at: datetime | None = None
) -> Decision:
    """Static checks of a query received from ``peer`` (no quota consumed)."""
    now = at or datetime.now(UTC)
    base = Decision("inbound", peer, purpose, modality, policy.version, now, ())
    rule = policy.peers.get(peer)
    if rule is None:
        known = ", ".join(sorted(policy.peers)) or "none"
        return base.with_check(
            Check(
                "peer", False, f"{peer} has no inbound rule (peers: {known})", Refusal.UNKNOWN_PEER
            )
        )
    checks = [Check("peer", True, f"{peer} has an inbound rule")]
    checks += _purpose_modality_checks(rule.purposes, rule.modalities, purpose, modality)
    if rule.hours:
        local = now.astimezone(ZoneInfo(rule.timezone))
        windows = ", ".join(str(w) for w in rule.hours)
        inside = any(w.contains(local.time()) for w in rule.hours)
        checks.append(
            Check(
                "hours",
                inside,
                f"{local:%H:%M} {rule.timezone} "
                f"{'is within' if inside else 'is outside'} {windows}",
                None if inside else Refusal.OUTSIDE_SERVICE_HOURS,
            )
        )
    m = _enum(Modality, modality)
    if m is not None and m in rule.modalities and rule.daily_quota.get(Modality(m)) == 0:
        checks.append(  # no search can be granted; the ledger need not be asked
            Check(
                "quota",
                False,
                f"daily quota of 0 {modality} searches: none allowed",
                Refusal.QUOTA_EXHAUSTED,
            )
        )
    fmr = policy.fmr(peer, Modality(modality)) if m is not None else None
    return Decision(
        "inbound",
        peer,
        purpose,
        modality,
        policy.version,
        now,
        tuple(checks),
        max_candidates=policy.max_candidates(peer),
        fmr=fmr,
    )


def evaluate_outbound(
    policy: Policy, peer: str, purpose: str, modality: str, at: datetime | None = None
) -> Decision:
    """May this country's officers send ``peer`` a query for ``purpose`` and ``modality``?"""
    now = at or datetime.now(UTC)
    base = Decision("outbound", peer, purpose, modality, policy.version, now, ())
    rule = policy.outbound.get(peer)
    if rule is None:
        known = ", ".join(sorted(policy.outbound)) or "none"
        return base.with_check(
            Check(
                "peer",
                False,
                f"no outbound rule for {peer} (may query: {known})",
                Refusal.UNKNOWN_PEER,
            )
        )
    checks = [Check("peer", True, f"outbound queries to {peer} are configured")]
    checks += _purpose_modality_checks(rule.purposes, rule.modalities, purpose, modality)
    return replace(base, checks=tuple(checks))


def quota_day(policy: Policy, peer: str, at: datetime) -> date:
    """The calendar day a query at ``at`` counts against, in the peer rule's time zone."""
    rule = policy.peers.get(peer)
    zone = ZoneInfo(rule.timezone) if rule else ZoneInfo("UTC")
    return at.astimezone(zone).date()


@dataclass(frozen=True)
class QuotaStanding:
    """Where one peer's daily quota of one modality stands on the rule's current ``day`` (in
    the rule's ``timezone``): ``used`` searches granted of ``limit``. ``used`` may exceed a
    limit that a rules change lowered since; ``remaining`` is then 0."""

    peer: str
    modality: Modality
    timezone: str
    day: date
    used: int
    limit: int

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)


class PolicyEngine:
    """Inbound decisions with the daily quota consumed atomically, and outbound decisions.

    ``policy`` may be replaced while decisions run (the node reloads a changed rules file,
    :mod:`node.exchange.rules_reload`); each decision reads it once."""

    def __init__(self, policy: Policy, ledger: QuotaLedger) -> None:
        self.policy = policy
        self.ledger = ledger

    def decide_inbound(
        self, peer: str, purpose: str, modality: str, at: datetime | None = None
    ) -> Decision:
        policy = self.policy  # once: the rules may be replaced meanwhile (a reload)
        decision = evaluate_inbound(policy, peer, purpose, modality, at)
        if not decision.allowed:
            return decision
        rule = policy.peers[peer]
        limit = rule.daily_quota[Modality(modality)]
        day = quota_day(policy, peer, decision.at)
        result = self.ledger.consume(peer, modality, day, limit)
        quota = {"day": day.isoformat(), "used": result.used, "limit": limit}
        if result.granted:
            check = Check("quota", True, f"search {result.used} of {limit} on {day}")
        else:
            check = Check(
                "quota",
                False,
                f"daily quota of {limit} {modality} searches used up on {day}",
                Refusal.QUOTA_EXHAUSTED,
            )
        return decision.with_check(check, quota=quota)

    def return_search(self, decision: Decision) -> dict[str, Any]:
        """Give back the search an inbound ``decision`` took from the daily quota, when this
        node failed to run it: its reply tells the peer to ask again, which must not cost a
        second search. Returns the decision's ``quota`` with the count afterwards ({} when
        the decision took none); raises :class:`~policy.quota.QuotaStoreError`."""
        if not decision.allowed or not decision.quota:
            return {}
        day = date.fromisoformat(decision.quota["day"])
        used = self.ledger.give_back(decision.peer, decision.modality, day)
        return {**decision.quota, "used": used}

    def decide_outbound(
        self, peer: str, purpose: str, modality: str, at: datetime | None = None
    ) -> Decision:
        return evaluate_outbound(self.policy, peer, purpose, modality, at)

    def quota_standings(
        self, at: datetime | None = None
    ) -> tuple[Policy, datetime, list[QuotaStanding]]:
        """The rules in force, the time read and, for every peer and every modality its rule
        allows (by peer, then modality), the daily quota's standing at ``at`` (default: now)
        on the day a query then would count against. Only reads the ledger: nothing is
        consumed."""
        policy = self.policy  # once: the rules may be replaced meanwhile (a reload)
        now = at or datetime.now(UTC)
        days = {peer: quota_day(policy, peer, now) for peer in policy.peers}
        used = self.ledger.used_on(set(days.values()))
        standings = [
            QuotaStanding(
                peer,
                modality,
                rule.timezone,
                days[peer],
                used.get((peer, modality.value, days[peer]), 0),
                rule.daily_quota[modality],
            )
            for peer, rule in sorted(policy.peers.items())
            for modality in sorted(rule.modalities)
        ]
        return policy, now, standings
