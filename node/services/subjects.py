"""Read and edit subjects and their template records (operators' gallery housekeeping).

Deleting a subject touches the gallery as well and lives in :mod:`node.services.records`;
:func:`delete_subjects` deletes many, each exactly as that single deletion does.

:func:`~node.services.merging.merge_subjects` merges a duplicate enrolment into the subject
kept; restricting a subject takes the same row lock as a merge's commit.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from node.db.models import Encounter, Modality, RecordState, Subject, TemplateRecord
from node.errors import NotFoundError
from node.repositories.audit import AuditRepository
from node.repositories.records import RecordRepository
from node.repositories.subjects import SubjectRepository
from node.restrictions import SharingRestrictions
from node.service_errors import ConflictError
from node.services.records import GalleryIndex, RecordService

#: The audit actions of the reads of subjects and records, as ``hit.list`` and ``query.list``
#: record their listings: a page of subjects (the page asked and how many subjects it
#: returned), one subject (its external id, as ``subject.delete`` names it, and how many
#: records and encounters were shown), one template record (its reference, as
#: ``record.restrict`` names it). Never a template.
SUBJECT_LIST_ACTION = "subject.list"
SUBJECT_SHOW_ACTION = "subject.show"
RECORD_SHOW_ACTION = "record.show"


class SubjectState(enum.StrEnum):
    """Where a subject stands. ``active``: enrolled. ``deleting``: a deletion of the subject
    has begun (audited, its records flagged ``deleting`` and out of every search) and not
    finished, because the gallery could not be written: the same deletion sent again finishes
    it, and so does the running node each ``gallery_erase_interval_s`` once the gallery is
    writable (:mod:`node.services.erasure`). A subject whose deletion finished is not found."""

    ACTIVE = "active"
    DELETING = "deleting"


@dataclass(frozen=True)
class SubjectDetail:
    subject: Subject
    encounters: Sequence[Encounter]
    records: Sequence[TemplateRecord]

    @property
    def state(self) -> SubjectState:
        deleting = any(r.state is RecordState.DELETING for r in self.records)
        return SubjectState.DELETING if deleting else SubjectState.ACTIVE


@dataclass(frozen=True)
class SubjectListing:
    """A subject of a page: its number of records and its state."""

    subject: Subject
    records: int
    state: SubjectState


@dataclass
class GalleryStatistics:
    subjects: int = 0
    records_by_state: dict[str, int] = field(default_factory=dict)
    active_by_modality: dict[str, int] = field(default_factory=dict)
    active_by_finger_position: dict[int, int] = field(default_factory=dict)


@dataclass
class BulkDeletion:
    """What a bulk deletion did: the subjects deleted with their templates removed, in the
    order asked, and the external ids not found (never enrolled, deleted already, or being
    deleted by another call)."""

    deleted: list[tuple[str, int]] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)


def delete_subjects(
    session: Session, gallery: GalleryIndex, external_ids: Sequence[str], *, actor: str
) -> BulkDeletion:
    """Delete each of ``external_ids`` (a repeated one once) as ``DELETE /subjects/{id}``
    does (:meth:`RecordService.delete_subject`: its ``subject.delete`` audit event, its
    commits, its gallery removal; a subject left ``deleting`` by a failed gallery write is
    finished). An unknown subject is reported in ``not_found`` and the others are deleted.
    Any other failure (the gallery or the database unwritable) stops at that subject: those
    before it stay deleted, it stays as a single deletion's failure leaves it, those after
    are untouched; the same list sent again deletes the rest and reports the deleted ones
    as not found (idempotent in effect)."""
    done = BulkDeletion()
    service = RecordService(session, gallery)
    for external_id in dict.fromkeys(external_ids):
        try:
            removed = service.delete_subject(external_id, actor=actor)
        except NotFoundError:
            session.rollback()
            done.not_found.append(external_id)
            continue
        SubjectService(session).retire_deleted(external_id)
        done.deleted.append((external_id, removed))
    return done


#: The audit action of a rename (target: the old external id; details: the new one).
SUBJECT_RENAME_ACTION = "subject.rename"


def _used(external_id: str) -> ConflictError:
    return ConflictError(
        f"the external id {external_id!r} names a subject or did once (ids are never given "
        "again); nothing was renamed",
        reason="external_id_used",
    )


def _restrictable(
    session: Session, rows: Sequence[TemplateRecord], target: str, *, merged: bool
) -> list[TemplateRecord]:
    """The records of ``rows`` a restriction is set on: all but those ``deleting`` (a deletion
    or a merge took them, and a restriction would go with them; after a merge the kept
    subject's copies hold theirs). Restricting more is always safe, so a subject whose
    deletion failed and that was enrolled again since is restricted (its new records) as any
    other. None left is :class:`ConflictError` ``subject_deleting``, nothing restricted;
    ``merged``: ``target`` was merged into another subject (its external id retired so)."""
    left = [r for r in rows if r.state is not RecordState.DELETING]
    if left or not rows:
        return left
    session.rollback()
    if merged:
        raise ConflictError(
            f"{target!r} was merged into another subject; nothing was restricted (restrict "
            "the subject it was merged into)",
            reason="subject_deleting",
        )
    raise ConflictError(
        f"{target!r} is being deleted; nothing was restricted", reason="subject_deleting"
    )


class SubjectService:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.subjects = SubjectRepository(session)
        self.records = RecordRepository(session)
        self.audit = AuditRepository(session)

    def page(self, *, limit: int, after_id: int = 0, actor: str) -> list[SubjectListing]:
        """Subjects with ``id > after_id`` in id order, each with its number of records and
        its state; recorded as ``actor``'s listing (:data:`SUBJECT_LIST_ACTION`)."""
        subjects = self.subjects.page(limit=limit, after_id=after_id)
        counts = self.records.count_by_subject(s.id for s in subjects)
        deleting = self.records.subjects_in_state((s.id for s in subjects), RecordState.DELETING)
        rows = [
            SubjectListing(
                s,
                counts.get(s.id, 0),
                SubjectState.DELETING if s.id in deleting else SubjectState.ACTIVE,
            )
            for s in subjects
        ]
        details = {"limit": limit, "after": after_id, "returned": len(rows)}
        self.audit.record(actor, SUBJECT_LIST_ACTION, None, details)
        self.session.commit()
        return rows

    def _subject(self, external_id: str) -> Subject:
        subject = self.subjects.by_external_id(external_id)
        if subject is None:
            raise NotFoundError(f"no subject {external_id!r}", reason="unknown_subject")
        return subject

    def _locked(self, external_id: str) -> Subject:
        """Subject ``external_id`` under its row lock (:meth:`SubjectRepository.lock`), read
        again under it: :class:`NotFoundError` ``unknown_subject`` (the lock released) when a
        deletion or a rename that this waited for took the id away meanwhile."""
        subject = self._subject(external_id)
        subject_id = subject.id
        if self.subjects.lock(subject):
            self.session.expire_all()  # as they are now, under the lock
            current = self.subjects.by_external_id(external_id)
            if current is not None and current.id == subject_id:
                return current
        self.session.rollback()
        raise NotFoundError(f"no subject {external_id!r}", reason="unknown_subject")

    def detail(self, external_id: str, *, actor: str) -> SubjectDetail:
        """A subject with its encounters and records; recorded as ``actor``'s reading
        (:data:`SUBJECT_SHOW_ACTION`). A subject not found records nothing."""
        subject = self._subject(external_id)
        detail = SubjectDetail(
            subject=subject,
            encounters=self.subjects.encounters_of(subject),
            records=self.records.of_subject(subject.id),
        )
        details = {"records": len(detail.records), "encounters": len(detail.encounters)}
        self.audit.record(actor, SUBJECT_SHOW_ACTION, external_id, details)
        self.session.commit()
        return detail

    def show_record(self, reference: str, *, actor: str) -> TemplateRecord:
        """A template record (its metadata: never the template); recorded as ``actor``'s
        reading (:data:`RECORD_SHOW_ACTION`). A record not found records nothing."""
        row = self.record(reference)
        self.audit.record(actor, RECORD_SHOW_ACTION, reference)
        self.session.commit()
        return row

    def record(self, reference: str) -> TemplateRecord:
        row = self.records.by_reference(reference)
        if row is None:
            raise NotFoundError(f"no template record {reference!r}", reason="unknown_record")
        return row

    def restrict_subject(
        self, external_id: str, restrictions: SharingRestrictions, *, actor: str
    ) -> Sequence[TemplateRecord]:
        """Set the same restrictions on every record of a subject not ``deleting``, under its
        row lock (a merge's commit takes it to copy the restrictions: one or the other goes
        first); the records restricted. :class:`ConflictError` ``subject_deleting`` when every
        record is ``deleting`` (the subject is being deleted or was merged into another):
        nothing changes."""
        subject = self._locked(external_id)
        merged = self.subjects.retired_as(external_id) == "merged"
        rows = _restrictable(
            self.session, self.records.of_subject(subject.id), external_id, merged=merged
        )
        value = restrictions.model_dump(mode="json")
        for row in rows:
            row.restrictions = value
        self.audit.record(actor, "subject.restrict", external_id, {"restrictions": value})
        self.session.commit()
        return rows

    def restrict_record(
        self,
        reference: str,
        restrictions: SharingRestrictions,
        *,
        actor: str,
        subject: str | None = None,
    ) -> TemplateRecord:
        """Set one record's restrictions; with ``subject``, only if the record is one of that
        subject's (else not found, ``unknown_record``, and nothing changes or is recorded)."""
        row = self.record(reference)
        if subject is not None and row.subject_id != self._subject(subject).id:
            raise NotFoundError(
                f"record {reference!r} is not one of subject {subject!r}'s",
                reason="unknown_record",
            )
        owner = self.subjects.by_id(row.subject_id)
        merged = False
        if owner is not None:  # as restrict_subject: a merge's commit takes it too
            merged = self.subjects.retired_as(owner.external_id) == "merged"
            self.subjects.lock(owner)
        self.session.expire_all()  # as it is now, under the lock
        try:
            row = self.record(reference)  # deleted meanwhile: not found
        except NotFoundError:
            self.session.rollback()
            raise
        _restrictable(self.session, [row], reference, merged=merged)
        row.restrictions = restrictions.model_dump(mode="json")
        self.audit.record(actor, "record.restrict", reference, {"restrictions": row.restrictions})
        self.session.commit()
        return row

    def retire_deleted(self, external_id: str) -> None:
        """Note that a deleted subject's external id names nobody now: no rename takes it."""
        self.subjects.retire(external_id, "deleted")
        self.session.commit()

    def rename(self, external_id: str, new: str, *, actor: str) -> Subject:
        """Give subject ``external_id`` the external id ``new``, audited as
        :data:`SUBJECT_RENAME_ACTION`. Its numeric id, records, encounters and hit references
        stay (a hit reference resolves to it under the new id). ``new`` must never have named
        a subject (:meth:`SubjectRepository.ever_used`): else :class:`ConflictError`
        ``external_id_used``, nothing changed. The old id is retired. A subject being enrolled
        into or deleted (a record not ``active``) is :class:`ConflictError` ``subject_busy``,
        nothing changed, as a merge refuses it: a deletion finished later would delete it
        under the new id, which no ``subject.delete`` event names."""
        subject = self._locked(external_id)
        if any(r.state is not RecordState.ACTIVE for r in self.records.of_subject(subject.id)):
            self.session.rollback()
            raise ConflictError(
                f"subject {external_id!r} is being enrolled into or deleted; nothing was "
                "renamed, try again once it is done",
                reason="subject_busy",
            )
        if self.subjects.ever_used(new):
            self.session.rollback()
            raise _used(new)
        subject.external_id = new
        try:
            self.session.flush()
        except IntegrityError:  # enrolled meanwhile
            self.session.rollback()
            raise _used(new) from None
        self.subjects.retire(external_id, "renamed")
        self.audit.record(actor, SUBJECT_RENAME_ACTION, external_id, {"external_id": new})
        self.session.commit()
        return subject

    def statistics(self) -> GalleryStatistics:
        stats = GalleryStatistics(subjects=self.subjects.count())
        for modality, state, finger, n in self.records.counts():
            by_state = stats.records_by_state
            by_state[state.value] = by_state.get(state.value, 0) + n
            if state is not RecordState.ACTIVE:
                continue
            by_mod = stats.active_by_modality
            by_mod[modality.value] = by_mod.get(modality.value, 0) + n
            if modality is Modality.FINGERPRINT and finger is not None:
                by_finger = stats.active_by_finger_position
                by_finger[finger] = by_finger.get(finger, 0) + n
        return stats
