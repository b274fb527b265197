"""Record-level sharing restrictions, enforced for every peer query.

A gallery record may carry restrictions (strings stored with the record):

``asylum_nationality:XX``
    The person is an asylum seeker or refugee of nationality ``XX``: the record is never
    reported as a hit to ``XX`` (the peer gets a no-hit), whatever the purpose.
``peers:AA,BB``
    Only these peer countries may receive a hit on this record.
``purposes:p1,p2``
    Only queries made for these purposes may receive a hit on this record.
``no_exchange_consent``
    The consent under which the record was collected does not cover exchange: never shared.

Several restrictions combine: a record is shareable only if every one of them allows it.
:func:`parse_restrictions` validates the strings (operators set them; bad ones are refused with
a clear error). A suppressed record is reported as a no-hit; the reason is logged locally only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from policy.errors import PolicyError
from policy.rules import Purpose, known_country


class RestrictionError(PolicyError):
    """A restriction string is malformed."""

    exit_code = 3
    default_reason = "bad_restriction"


@dataclass(frozen=True)
class Restrictions:
    """Parsed restrictions of one record (empty means: shareable under the policy)."""

    asylum_nationalities: frozenset[str] = frozenset()
    peers: frozenset[str] | None = None
    purposes: frozenset[Purpose] | None = None
    no_exchange_consent: bool = False
    #: The stored restrictions could not be read: the record is never shared (fail closed).
    unreadable: bool = False

    def to_strings(self) -> list[str]:
        out = [f"asylum_nationality:{c}" for c in sorted(self.asylum_nationalities)]
        if self.peers is not None:
            out.append("peers:" + ",".join(sorted(self.peers)))
        if self.purposes is not None:
            out.append("purposes:" + ",".join(sorted(p.value for p in self.purposes)))
        if self.no_exchange_consent:
            out.append("no_exchange_consent")
        return out


@dataclass(frozen=True)
class RecordVerdict:
    shareable: bool
    reason: str | None = None


def _countries(text: str, what: str) -> frozenset[str]:
    codes = [c.strip() for c in text.split(",") if c.strip()]
    if not codes:
        raise RestrictionError(f"{what}: needs at least one country code")
    for c in codes:
        try:
            known_country(c)
        except ValueError:
            raise RestrictionError(f"{what}: {c!r} is not an ISO 3166-1 alpha-2 code") from None
    return frozenset(codes)


def parse_restrictions(items: Iterable[str]) -> Restrictions:
    """Parse restriction strings; raises :class:`RestrictionError` on the first bad one."""
    nationalities: set[str] = set()
    peers: frozenset[str] | None = None
    purposes: frozenset[Purpose] | None = None
    no_consent = False
    for raw in items:
        item = raw.strip()
        kind, _, value = item.partition(":")
        if kind == "asylum_nationality":
            nationalities |= _countries(value, item)
            if len(_countries(value, item)) != 1:
                raise RestrictionError(f"{item}: exactly one nationality per restriction")
        elif kind == "peers":
            found = _countries(value, item)
            peers = found if peers is None else peers & found
        elif kind == "purposes":
            names = [p.strip() for p in value.split(",") if p.strip()]
            try:
                found_p = frozenset(Purpose(p) for p in names)
            except ValueError as exc:
                raise RestrictionError(f"{item}: {exc}") from exc
            if not found_p:
                raise RestrictionError(f"{item}: needs at least one purpose")
            purposes = found_p if purposes is None else purposes & found_p
        elif item == "no_exchange_consent":
            no_consent = True
        else:
            known = "asylum_nationality:XX, peers:AA,BB, purposes:p1,p2, no_exchange_consent"
            raise RestrictionError(f"unknown restriction {item!r} (known: {known})")
    return Restrictions(frozenset(nationalities), peers, purposes, no_consent)


def check_record(restrictions: Restrictions, peer: str, purpose: str) -> RecordVerdict:
    """May a hit on a record with ``restrictions`` be reported to ``peer`` for ``purpose``?"""
    if restrictions.unreadable:
        return RecordVerdict(False, "record restrictions unreadable")
    if restrictions.no_exchange_consent:
        return RecordVerdict(False, "consent does not cover exchange")
    if peer in restrictions.asylum_nationalities:
        return RecordVerdict(False, "protected record: requester is the person's nationality")
    if restrictions.peers is not None and peer not in restrictions.peers:
        return RecordVerdict(False, "record restricted to other peers")
    if restrictions.purposes is not None and purpose not in {
        p.value for p in restrictions.purposes
    }:
        return RecordVerdict(False, "record restricted to other purposes")
    return RecordVerdict(True)


T = TypeVar("T")


def filter_shareable(
    candidates: Sequence[T],
    restrictions: Sequence[Restrictions],
    peer: str,
    purpose: str,
) -> tuple[list[T], list[tuple[T, str]]]:
    """Split ``candidates`` (with their ``restrictions``, same order) into shareable ones and
    suppressed ones with the reason. Candidates are the top-k of a search, not the gallery."""
    if len(candidates) != len(restrictions):
        raise ValueError("candidates and restrictions differ in length")
    kept: list[T] = []
    dropped: list[tuple[T, str]] = []
    for cand, restr in zip(candidates, restrictions, strict=True):
        verdict = check_record(restr, peer, purpose)
        if verdict.shareable:
            kept.append(cand)
        else:
            dropped.append((cand, verdict.reason or "restricted"))
    return kept, dropped
