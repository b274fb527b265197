"""Read and edit subjects and their template records (operators' gallery housekeeping).

Deleting a subject touches the gallery as well and lives in :mod:`node.services.records`;
:func:`delete_subjects` deletes many, each exactly as that single deletion does.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from node.db.models import Encounter, Modality, RecordState, Subject, TemplateRecord
from node.errors import NotFoundError
from node.repositories.audit import AuditRepository
from node.repositories.records import RecordRepository
from node.repositories.subjects import SubjectRepository
from node.restrictions import SharingRestrictions
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
        done.deleted.append((external_id, removed))
    return done


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
        """Set the same restrictions on every record of a subject."""
        subject = self._subject(external_id)
        rows = self.records.of_subject(subject.id)
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
        row.restrictions = restrictions.model_dump(mode="json")
        self.audit.record(actor, "record.restrict", reference, {"restrictions": row.restrictions})
        self.session.commit()
        return row

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
