"""Following up a hit: an operator turns a reference this node issued back into its subject.

A peer's officer gets a hit and an opaque reference, never personal data
(:mod:`node.exchange.references`). The requesting country then asks through formal channels
(EU Prüm: personal data only after a confirmed hit, through a separate channel), quoting the
reference. This node's operator resolves it here: the subject it names, the query it answered,
the requesting country, when it was issued, and where the subject stands now (a subject erased
since is ``deleted``: nothing is left to disclose).

Every resolution is a disclosure step, recorded in the audit trail as ``hit.resolve`` (target:
the reference; details: the requesting country, the query, the subject and its state) in the
transaction that reads it; the trail is mirrored to the tamper-evident exchange log
(:mod:`node.audit.actions`), where the data-protection auditor reviews it. A resolution whose
record does not commit is not answered. A reference this node never issued, or one not shaped
like one, is not found (and not recorded: nothing was disclosed).

Operators also list the stored hits, a page at a time: those that name one subject (a data
subject's access request, the data-protection officer: which countries got a hit on whom, and
when), and those issued to a requesting country since a time (the follow-up queue). A listing
discloses links too: each is recorded as ``hit.list`` (target: the subject's external id, or the
requesting country; details: the filter, the page asked for and how many hits it returned, not
the references, so that the audit trail does not keep more reference -> subject links than the
resolutions already put there: of a page's ``after`` cursor, only its issue time). A page
continues after the last hit of the one before (:class:`node.repositories.hits.HitCursor`),
so that recording outcomes while working the ``pending`` queue page by page skips none. A
subject not enrolled (deleted, or never) is not found, as in
``GET /subjects/{external_id}``, and not recorded.

A hit is a candidate only: a forensic examiner here confirms or rejects the match before any
personal data is released (EU Prüm). The operator records that outcome on the reference
(:meth:`HitService.record_outcome`): ``confirmed``, ``not_confirmed`` (a false hit) or
``withdrawn`` (the requesting country withdrew its follow-up), with who and when, and an
optional short note (a file number; never personal data: it is copied into the audit trail,
though not into the append-only exchange log the trail is mirrored to, so that one typed by
mistake can be erased: :data:`node.audit.actions.UNLOGGED_DETAILS`).
Listings and resolutions show it (``pending`` while none is recorded), and the follow-up queue
filters on it. Each recording is audited as ``hit.outcome`` (target: the reference; details:
the outcome, the one it replaced, the note, the requesting country and the query; not the
subject) in the transaction that writes it; an outcome may be changed (a mistaken entry), and
the change's record names the outcome it replaced. The subject must still be enrolled: once
deleted, or its deletion begun, the follow-up is over (nothing is left to examine or to
disclose, as a resolution says ``deleted``), and the reference is a conflict
(``subject_deleted``, ``subject_deleting``) with nothing recorded. The last recording wins,
unless the operator says which outcome she saw (``expected``; ``pending``: none): another
one stored meanwhile is then a conflict (``outcome_changed``) and nothing is recorded. The
outcome is kept on the hit's row, which expires with it ``hit_reference_days`` after the hit
was issued whatever its outcome; the audit trail keeps the ``hit.outcome`` events for the
statistics of longer periods.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from node.db.base import utc_now
from node.db.models import RecordState, Subject, TemplateRecord
from node.errors import NotFoundError
from node.exchange.references import HitOutcome, well_formed
from node.repositories.audit import AuditRepository
from node.repositories.hits import HitCursor, HitRepository, IssuedHit, OutcomeState
from node.repositories.records import RecordRepository
from node.repositories.subjects import SubjectRepository
from node.service_errors import ConflictError, InternalServiceError
from node.services.galleries import subject_id_of, subject_key

__all__ = [
    "LIST_ACTION",
    "OUTCOME_ACTION",
    "RESOLVE_ACTION",
    "HitCursor",
    "HitOutcome",
    "HitResolution",
    "HitService",
    "HitSubjectState",
    "ListedHit",
    "OutcomeState",
    "RecordedOutcome",
]

#: The audit trail's action for a resolved reference.
RESOLVE_ACTION = "hit.resolve"
#: The audit trail's action for a listing of stored hits (by subject, or by requester).
LIST_ACTION = "hit.list"
#: The audit trail's action for an examiner's outcome recorded (or changed) on a reference.
OUTCOME_ACTION = "hit.outcome"
#: What a reference this node never issued, or no longer keeps, is told.
_UNKNOWN_REFERENCE = (
    "this node issued no such reference, or its follow-up period (hit_reference_days) is over"
)


class HitSubjectState(enum.StrEnum):
    """Where the subject a hit named stands now: ``active`` and ``deleting`` as in
    :class:`node.services.subjects.SubjectState`; ``deleted``: erased since the hit (subject
    ids are never re-used, so no other person stands behind the reference)."""

    ACTIVE = "active"
    DELETING = "deleting"
    DELETED = "deleted"


@dataclass(frozen=True)
class HitResolution:
    hit: IssuedHit
    subject: Subject | None  # None: deleted since
    records: Sequence[TemplateRecord]

    @property
    def state(self) -> HitSubjectState:
        if self.subject is None:
            return HitSubjectState.DELETED
        if any(r.state is RecordState.DELETING for r in self.records):
            return HitSubjectState.DELETING
        return HitSubjectState.ACTIVE


@dataclass(frozen=True)
class ListedHit:
    """A stored hit of a listing, with its subject now (None: deleted since) and its state."""

    hit: IssuedHit
    subject: Subject | None
    state: HitSubjectState


@dataclass(frozen=True)
class RecordedOutcome:
    """A hit with the outcome just recorded, and the one it replaced (None: pending)."""

    hit: IssuedHit
    previous: HitOutcome | None


class HitService:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.hits = HitRepository(session)
        self.subjects = SubjectRepository(session)
        self.records = RecordRepository(session)
        self.audit = AuditRepository(session)

    def resolve(self, reference: str, *, actor: str) -> HitResolution:
        """The hit ``reference`` names and its subject now, recorded as ``actor``'s
        resolution. :class:`NotFoundError` (``unknown_reference``) when this node never issued
        it."""
        hit = self._hit(reference)
        subject = self.subjects.by_id(_subject_id(hit))
        records = () if subject is None else self.records.of_subject(subject.id)
        found = HitResolution(hit, subject, records)
        details = {
            "requester": hit.requester,
            "query_id": hit.query_id,
            "subject": None if subject is None else subject.external_id,
            "state": found.state.value,
        }
        self.audit.record(actor, RESOLVE_ACTION, reference, details)
        self.session.commit()
        return found

    def record_outcome(
        self,
        reference: str,
        outcome: HitOutcome,
        *,
        note: str | None,
        actor: str,
        expected: OutcomeState | None = None,
    ) -> RecordedOutcome:
        """Record the examiner's ``outcome`` of the hit ``reference`` as ``actor``'s, replacing
        any recorded before, and its audit record, in one transaction; with ``expected``, only
        if the outcome stored is still that one (``pending``: none), so that an operator who
        read a hit pending does not unknowingly replace what another recorded meanwhile.
        :class:`NotFoundError` (``unknown_reference``) as :meth:`resolve`;
        :class:`ConflictError` (``subject_deleted``, ``subject_deleting``) once the subject is
        deleted or its deletion has begun, (``outcome_changed``) when the stored outcome is
        not ``expected``."""
        while True:
            # The checks and the write are one transaction, which a deletion waits for: the
            # write lock first on SQLite, the subject's row lock on PostgreSQL, and the subject
            # read again after it (a deletion that committed meanwhile took the row away).
            self.hits.lock_for_outcome()
            try:
                hit = self._hit(reference)
            except NotFoundError:
                self.session.rollback()
                raise
            subject = self.subjects.by_id(_subject_id(hit))
            if subject is not None:
                self.subjects.lock(subject)
                if not self.hits.subjects([subject.id]):
                    subject = None
            if subject is None:
                self.session.rollback()  # the lock, at once
                raise ConflictError(
                    "the subject of this hit was deleted since: its follow-up is over, nothing "
                    "is left to examine or disclose",
                    reason="subject_deleted",
                )
            if self.records.subjects_in_state([subject.id], RecordState.DELETING):
                self.session.rollback()
                raise ConflictError(
                    "the subject of this hit is being deleted: its follow-up is over, nothing "
                    "is left to examine or disclose",
                    reason="subject_deleting",
                )
            if expected is not None and hit.state is not expected:
                self.session.rollback()
                raise ConflictError(
                    f"the outcome stored is {hit.state.value} (recorded {hit.outcome_at} by "
                    f"{hit.outcome_by}), not {expected.value}: nothing recorded; read the hit "
                    "again before changing it",
                    reason="outcome_changed",
                )
            at = utc_now()
            if self.hits.record_outcome(hit, outcome, at=at, by=actor, note=note):
                break
            self.session.rollback()  # recorded meanwhile, or expired: read it again
        details = {
            "outcome": outcome.value,
            "previous": None if hit.outcome is None else hit.outcome.value,
            "note": note,
            "requester": hit.requester,
            "query_id": hit.query_id,
        }
        self.audit.record(actor, OUTCOME_ACTION, reference, details)
        self.session.commit()
        done = replace(hit, outcome=outcome, outcome_at=at, outcome_by=actor, note=note)
        return RecordedOutcome(done, hit.outcome)

    def of_subject(
        self,
        external_id: str,
        *,
        outcome: OutcomeState | None = None,
        limit: int,
        after: HitCursor | None = None,
        offset: int = 0,
        actor: str,
    ) -> list[ListedHit]:
        """The hits stored for subject ``external_id`` whose follow-up stands at ``outcome``
        (any, when None), oldest first after the cursor ``after`` (from the first, when None)
        and ``offset`` more, recorded as ``actor``'s listing.
        :class:`NotFoundError` (``unknown_subject``) when no such subject is enrolled."""
        subject = self.subjects.by_external_id(external_id)
        if subject is None:
            raise NotFoundError(f"no subject {external_id!r}", reason="unknown_subject")
        key = subject_key(subject.id)
        hits = self.hits.of_record(key, outcome=outcome, limit=limit, after=after, offset=offset)
        deleting = self.records.subjects_in_state([subject.id], RecordState.DELETING)
        state = HitSubjectState.DELETING if deleting else HitSubjectState.ACTIVE
        listed = [ListedHit(hit, subject, state) for hit in hits]
        details = {
            "subject": external_id,
            "outcome": None if outcome is None else outcome.value,
            "limit": limit,
            "after": _cursor_time(after),
            "offset": offset,
        }
        self._record_listing(actor, external_id, details, listed)
        return listed

    def issued(
        self,
        *,
        requester: str | None,
        since: datetime | None,
        outcome: OutcomeState | None = None,
        limit: int,
        after: HitCursor | None = None,
        offset: int = 0,
        actor: str,
    ) -> list[ListedHit]:
        """The hits stored for ``requester`` (any, when None) issued at or after ``since``
        (any time, when None) whose follow-up stands at ``outcome`` (any, when None), oldest
        first, paged as :meth:`of_subject`, each with its subject now; recorded as ``actor``'s
        listing."""
        hits = self.hits.issued(
            requester=requester,
            since=since,
            outcome=outcome,
            limit=limit,
            after=after,
            offset=offset,
        )
        ids = [_subject_id(hit) for hit in hits]
        subjects = self.hits.subjects(ids)
        deleting = self.records.subjects_in_state(subjects.keys(), RecordState.DELETING)
        listed = []
        for hit, subject_id in zip(hits, ids, strict=True):
            subject = subjects.get(subject_id)
            if subject is None:
                state = HitSubjectState.DELETED
            elif subject_id in deleting:
                state = HitSubjectState.DELETING
            else:
                state = HitSubjectState.ACTIVE
            listed.append(ListedHit(hit, subject, state))
        details: dict[str, Any] = {"requester": requester, "limit": limit}
        details["after"] = _cursor_time(after)
        details["offset"] = offset
        details["since"] = None if since is None else since.isoformat()
        details["outcome"] = None if outcome is None else outcome.value
        self._record_listing(actor, requester, details, listed)
        return listed

    def _hit(self, reference: str) -> IssuedHit:
        hit = self.hits.by_reference(reference) if well_formed(reference) else None
        if hit is None:
            raise NotFoundError(_UNKNOWN_REFERENCE, reason="unknown_reference")
        return hit

    def _record_listing(
        self, actor: str, target: str | None, details: dict[str, Any], listed: list[ListedHit]
    ) -> None:
        self.audit.record(actor, LIST_ACTION, target, {**details, "returned": len(listed)})
        self.session.commit()


def _cursor_time(after: HitCursor | None) -> str | None:
    """What a listing's audit record keeps of its cursor: the issue time, not the reference."""
    return None if after is None else after.created_at.isoformat()


def _subject_id(hit: IssuedHit) -> int:
    subject_id = subject_id_of(hit.record_ref)
    if subject_id is None:  # the responder stores subject keys only
        raise InternalServiceError(
            "the stored hit names no subject of this node", reason="bad_hit_record"
        )
    return subject_id
