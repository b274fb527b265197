"""What a change of rules allows or denies: ``bdx policy diff OLD NEW``.

Every (direction, peer, purpose, modality) combination allowed by either version is compared;
quota, candidate limit, threshold and hours changes are listed beside them. Each change says
whether it *widens* (allows more exchange), *narrows* (allows less) or is *neutral*.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from policy.rules import MINUTES_PER_DAY, Modality, PeerRule, Policy

Effect = Literal["widens", "narrows", "neutral"]
Combo = tuple[str, str, str]  # (peer, purpose, modality)


@dataclass(frozen=True)
class Change:
    direction: Literal["inbound", "outbound", "policy"]
    peer: str
    what: str
    old: str
    new: str
    effect: Effect

    def __str__(self) -> str:
        sign = {"widens": "+", "narrows": "-", "neutral": "~"}[self.effect]
        where = f"{self.direction} {self.peer}".strip()
        return f"{sign} {where}: {self.what}: {self.old} -> {self.new}"


def _inbound_allowed(policy: Policy) -> set[Combo]:
    return {
        (peer, p.value, m.value)
        for peer, rule in policy.peers.items()
        for p in rule.purposes
        for m in rule.modalities
    }


def _outbound_allowed(policy: Policy) -> set[Combo]:
    return {
        (peer, p.value, m.value)
        for peer, rule in policy.outbound.items()
        for p in rule.purposes
        for m in rule.modalities
    }


def _numeric(
    direction: Literal["inbound"],
    peer: str,
    what: str,
    old: float | None,
    new: float | None,
    more_is_wider: bool,
) -> Change | None:
    if old == new:
        return None
    if old is None or new is None:
        effect: Effect = "widens" if (new is not None) == more_is_wider else "narrows"
    else:
        effect = "widens" if (new > old) == more_is_wider else "narrows"
    return Change(direction, peer, what, str(old), str(new), effect)


def diff_policies(old: Policy, new: Policy) -> list[Change]:
    """All changes from ``old`` to ``new``, grouped by direction and peer, sorted."""
    changes: list[Change] = []
    if old.country != new.country:
        changes.append(Change("policy", "", "country", old.country, new.country, "neutral"))
    if old.version != new.version:
        changes.append(Change("policy", "", "version", old.version, new.version, "neutral"))
    sides: list[tuple[Literal["inbound", "outbound"], Callable[[Policy], set[Combo]]]] = [
        ("inbound", _inbound_allowed),
        ("outbound", _outbound_allowed),
    ]
    for direction, allowed in sides:
        before, after = allowed(old), allowed(new)
        for peer, purpose, modality in sorted(after - before):
            what = f"{purpose}/{modality}"
            changes.append(Change(direction, peer, what, "refused", "allowed", "widens"))
        for peer, purpose, modality in sorted(before - after):
            what = f"{purpose}/{modality}"
            changes.append(Change(direction, peer, what, "allowed", "refused", "narrows"))
    for peer in sorted(set(old.peers) & set(new.peers)):
        a, b = old.peers[peer], new.peers[peer]
        for m in Modality:
            c = _numeric(
                "inbound",
                peer,
                f"daily quota {m.value}",
                a.daily_quota.get(m),
                b.daily_quota.get(m),
                more_is_wider=True,
            )
            if c and m in a.modalities and m in b.modalities:
                changes.append(c)
            # FMR target: a higher FMR lets more candidates through as hits.
            c = _numeric(
                "inbound",
                peer,
                f"fmr {m.value}",
                old.fmr(peer, m),
                new.fmr(peer, m),
                more_is_wider=True,
            )
            if c:
                changes.append(c)
        c = _numeric(
            "inbound",
            peer,
            "max candidates",
            old.max_candidates(peer),
            new.max_candidates(peer),
            more_is_wider=True,
        )
        if c:
            changes.append(c)
        old_hours = ", ".join(str(w) for w in a.hours) or "always"
        new_hours = ", ".join(str(w) for w in b.hours) or "always"
        if (old_hours, a.timezone) != (new_hours, b.timezone):
            changes.append(
                Change(
                    "inbound",
                    peer,
                    "hours of service",
                    f"{old_hours} {a.timezone}",
                    f"{new_hours} {b.timezone}",
                    _hours_effect(a, b),
                )
            )
    return changes


def _covered(rule: PeerRule) -> frozenset[int]:
    """Minutes of the day (in the rule's zone) when the rule answers; every one if no hours."""
    if not rule.hours:
        return frozenset(range(MINUTES_PER_DAY))
    return frozenset().union(*(w.minutes() for w in rule.hours))


def _hours_effect(old: PeerRule, new: PeerRule) -> Effect:
    """Fewer minutes of service narrow, more widen; a shift (or a change of zone with partial
    hours on both sides, whose overlap moves with daylight saving) is neutral."""
    a, b = _covered(old), _covered(new)
    full = frozenset(range(MINUTES_PER_DAY))
    if old.timezone != new.timezone and full not in (a, b):
        return "neutral"
    if b < a:
        return "narrows"
    if b > a:
        return "widens"
    return "neutral"
