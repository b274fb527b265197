"""Template records across two stores: metadata rows in the database, arrays in the gallery.

A record exists in both or in neither, also when the process dies between the two writes.
The protocol (each step durable before the next):

enrol
    1. insert the rows in state ``pending`` with fresh random references; commit;
    2. append the templates to the gallery under those references;
    3. flip the rows to ``active``; commit.
delete (a subject and everything of it)
    1. flip its rows to ``deleting``; commit;
    2. remove those references from the gallery;
    3. delete the subject, its encounters and rows; commit.

:meth:`RecordService.reconcile` (run at start-up and by ``bdx gallery reconcile``) finishes or
undoes whatever a crash interrupted: ``pending`` rows whose reference is in the gallery become
``active`` (step 2 happened), the others are deleted (it did not), and with them every pending
row of the same ``source`` (one file of a bulk load is enrolled whole or not at all, though its
fingers and face go to two gallery appends), whose templates are then orphans; the pending
copies of a merge that did not commit (``merge_of``, :func:`node.services.merging.merge_subjects`)
are deleted, and their templates removed as orphans, whatever the gallery holds; ``deleting``
rows are removed from the gallery and deleted, with their subject once it has no rows left;
gallery entries with no row at all are removed, unless they are more than an interrupted write
leaves (:mod:`node.services.params`): then it refuses, the database being the wrong one or
empty, until the operator asks for their removal (``bdx gallery reconcile --remove-orphans``).
Rows ``active`` but missing from the gallery cannot come from this protocol (the gallery lost
data): they are reported, never silently dropped. :func:`missing_records` lists them with the
subject to re-enrol, changing nothing (``bdx gallery reconcile --list-missing``, also beside a
running node).

A deletion that fails after step 1 (the gallery cannot be written) leaves its rows
``deleting``: the same deletion sent again finishes them, and so does the running node's
erasure task each round (:meth:`RecordService.finish_stranded_deletions`).

Search treats only ``active`` references as results, so a template between steps 2 and 3 of
enrol, or between 1 and 2 of delete, is never reported.

References are random (128 bits, hex), never derived from personal data.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from node.db.models import Encounter, Modality, RecordState, Subject, TemplateRecord
from node.errors import NotFoundError
from node.repositories.audit import AuditRepository
from node.repositories.records import RecordRepository
from node.repositories.subjects import SubjectRepository
from node.restrictions import SharingRestrictions
from node.service_errors import ConflictError, DatabaseUnavailableError, StoresDisagreeError
from node.services import params

REFERENCE_BYTES = 16


class GalleryIndex(Protocol):
    """What this service needs from the gallery store besides the append itself."""

    def references(self) -> set[str]:
        """Every reference the gallery holds."""
        ...

    def remove(self, references: Sequence[str]) -> None:
        """Remove these references durably; references it does not hold are ignored."""
        ...


log = logging.getLogger(__name__)

#: Appends the templates of these pending rows (in order) to the gallery, durably, or raises.
GalleryWrite = Callable[[Sequence[TemplateRecord]], None]


def new_reference() -> str:
    return secrets.token_hex(REFERENCE_BYTES)


@dataclass(frozen=True)
class NewRecord:
    """Metadata of a template to enrol; the template itself goes to the gallery write."""

    subject_external_id: str
    modality: Modality
    format: str
    format_version: int
    finger_position: int | None = None
    quality: int | None = None
    restrictions: SharingRestrictions = field(default_factory=SharingRestrictions)
    source: str | None = None
    encounter_external_id: str | None = None


@dataclass
class ReconcileReport:
    completed: list[str] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    orphans_removed: list[str] = field(default_factory=list)
    missing_from_gallery: list[str] = field(default_factory=list)
    emptied_subjects: list[str] = field(default_factory=list)  # external ids
    emptied_encounters: list[str] = field(default_factory=list)  # ids

    def summary(self) -> dict[str, int]:
        return {name: len(values) for name, values in vars(self).items()}


@dataclass(frozen=True)
class MissingRecord:
    """An active record whose template the gallery lacks: whom to re-enrol, and what."""

    reference: str
    subject: str  # the subject's external id
    modality: str
    finger_position: int | None


def missing_records(
    session: Session, gallery_references: Callable[[], set[str]]
) -> list[MissingRecord]:
    """The active records whose references ``gallery_references()`` lacks, by subject, then
    modality and finger; reads only, so it may run beside the serving node.

    The active rows are read before the gallery: an enrolment appends its templates before
    its rows turn active, so a record enrolled meanwhile is never listed. The rows found
    missing are read again afterwards, in a transaction of their own, and only those still
    active are listed: a deletion flags its rows before it removes their templates."""
    active = RecordRepository(session).references(RecordState.ACTIVE)
    session.rollback()  # ends the read: the next one sees what was committed since
    lacking = active - gallery_references()
    if not lacking:
        return []
    # Every active row, not an IN list of the lacking ones: a database newer than its
    # gallery can lack more of them than SQLite takes bound parameters in one statement.
    query = (
        select(
            TemplateRecord.reference,
            Subject.external_id,
            TemplateRecord.modality,
            TemplateRecord.finger_position,
        )
        .join(Subject, TemplateRecord.subject_id == Subject.id)
        .where(TemplateRecord.state == RecordState.ACTIVE)
    )
    found = [
        MissingRecord(reference, subject, modality.value, finger)
        for reference, subject, modality, finger in session.execute(query)
        if reference in lacking
    ]
    session.rollback()
    return sorted(found, key=lambda m: (m.subject, m.modality, m.finger_position or 0, m.reference))


class RecordService:
    def __init__(self, session: Session, gallery: GalleryIndex) -> None:
        self.session = session
        self.gallery = gallery
        self.records = RecordRepository(session)
        self.subjects = SubjectRepository(session)
        self.audit = AuditRepository(session)

    def enrol(
        self, new: Sequence[NewRecord], write: GalleryWrite, *, actor: str
    ) -> list[TemplateRecord]:
        """Enrol ``new`` (one gallery append for all); returns the active rows in order."""
        encounters: dict[tuple[int, str | None, str | None], int] = {}
        references: list[str] = []
        subject_ids: set[int] = set()
        try:
            rows = []
            for item in new:  # each row is flushed: a foreign key fails here, not at commit
                rows.append(self._pending_row(item, encounters))
                references.append(rows[-1].reference)
                subject_ids.add(rows[-1].subject_id)
                _unsettle(self.gallery, references[-1:])  # before the gallery holds them
            self.session.commit()
        except IntegrityError:  # the subject was deleted between its look-up and this insert
            self.session.rollback()
            _settle(self.gallery, references)
            raise ConflictError(
                "the subject was deleted while its records were enrolled; enrol again",
                reason="subject_deleted",
            ) from None
        made = (subject_ids, set(encounters.values()))
        try:
            write(rows)
        except BaseException:
            # Undo both sides; if this fails too, the rows stay pending for reconcile().
            self.session.rollback()
            self._undo(references, *made)
            raise
        done = self._activate(new, references, made, actor)
        if done != len(references):
            # A deletion of the subject took rows of this enrolment (deleted them, or flagged
            # them ``deleting`` and is removing them): undo the rest, never revive them.
            self.session.rollback()
            self._undo(references, *made)
            raise ConflictError(
                "the subject was deleted while its records were enrolled; enrol again",
                reason="subject_deleted",
            )
        _settle(self.gallery, references)
        for row in rows:
            self.session.refresh(row)
        return rows

    def _activate(
        self,
        new: Sequence[NewRecord],
        references: list[str],
        made: tuple[set[int], set[int]],
        actor: str,
    ) -> int:
        """Step 3: the pending rows become active and the enrolment is audited, in one
        commit. Returns how many rows became active (fewer: a deletion took some).

        A database error here (a lost connection, a lock timeout) left the rows pending with
        the templates in the gallery; an operator's retry enrolled a second copy and a
        restart's reconcile activated both. The enrolment is undone, as a failed gallery write
        is (if the undo fails too, the rows stay pending for reconcile()), unless the commit
        went through and only its reply was lost: then the rows are active and it stands."""
        subjects = sorted({item.subject_external_id for item in new})
        try:
            done = self.records.set_state(references, RecordState.ACTIVE, only=RecordState.PENDING)
            if done == len(references):
                audit: dict[str, object] = {"count": len(references), "subjects": subjects}
                restricted = {  # set at enrolment: on record as a later restrict would be
                    item.subject_external_id: item.restrictions.model_dump(
                        mode="json", exclude_defaults=True
                    )
                    for item in new
                    if item.restrictions != SharingRestrictions()
                }
                if restricted:
                    audit["restrictions"] = dict(sorted(restricted.items()))
                self.audit.record(actor, "records.enrol", None, audit)
                self.session.commit()
            return done
        except SQLAlchemyError as exc:
            self.session.rollback()
            try:
                if self.records.count_in_state(references, RecordState.ACTIVE) == len(references):
                    return len(references)
                self._undo(references, *made)
            except SQLAlchemyError:
                self.session.rollback()
                log.error(
                    "enrolment not undone (%d records stay pending for reconcile)", len(references)
                )
            raise DatabaseUnavailableError(
                f"the database failed while the enrolment was committed ({type(exc).__name__}); "
                "nothing was enrolled, enrol again",
            ) from None

    def _undo(self, references: list[str], subject_ids: set[int], encounter_ids: set[int]) -> None:
        """Remove an enrolment's records from both stores, and the subjects and encounters it
        made that are left without records (listed as subjects with no record otherwise)."""
        self.gallery.remove(references)
        self.records.delete(references)
        self.subjects.delete_empty_encounters(encounter_ids)
        self._drop_emptied_subjects(subject_ids)
        self.session.commit()
        _settle(self.gallery, references)

    def _pending_row(
        self, item: NewRecord, encounters: dict[tuple[int, str | None, str | None], int]
    ) -> TemplateRecord:
        subject = self.subjects.get_or_create(item.subject_external_id)
        encounter_id = None
        if item.encounter_external_id is not None or item.source is not None:
            key = (subject.id, item.encounter_external_id, item.source)
            if key in encounters:  # one encounter per subject and source in a batch
                pass
            elif item.encounter_external_id is not None:  # named: it may exist already
                encounters[key] = self.subjects.encounter(
                    subject.id, item.encounter_external_id, item.source
                )
            else:
                encounters[key] = self.subjects.add_encounter(
                    Encounter(subject_id=subject.id, source=item.source)
                ).id
            encounter_id = encounters[key]
        return self.records.add(
            TemplateRecord(
                reference=new_reference(),
                subject_id=subject.id,
                encounter_id=encounter_id,
                modality=item.modality,
                finger_position=item.finger_position,
                format=item.format,
                format_version=item.format_version,
                quality=item.quality,
                restrictions=item.restrictions.model_dump(mode="json"),
                source=item.source,
                state=RecordState.PENDING,
            )
        )

    def delete_subject(self, external_id: str, *, actor: str) -> int:
        """Delete a subject, its encounters and templates (database and gallery).

        Returns the number of templates removed. Raises :class:`NotFoundError`, or
        :class:`StoreUnavailableError` when the gallery cannot be written: the rows stay
        flagged ``deleting`` (no search result), and a call again finishes them.
        """
        subject = self.subjects.by_external_id(external_id)
        if subject is None:
            raise NotFoundError(f"no subject {external_id!r}", reason="unknown_subject")
        # Deletions of one subject take turns (its row lock on PostgreSQL; SQLite's single
        # writer orders the flagging below): the second finds the rows flagged already and
        # answers not found, not a second deletion in the audit trail.
        self.subjects.lock(subject)
        rows = self.records.of_subject(subject.id)
        references = [row.reference for row in rows if row.state is not RecordState.DELETING]
        # Rows flagged by a deletion whose gallery step failed (the gallery unwritable): no
        # deletion holds them now, and this one finishes them (they were a 404 until restart).
        stranded = _DELETIONS.claim_free(
            [row.reference for row in rows if row.state is RecordState.DELETING]
        )
        _DELETIONS.hold(references)
        _unsettle(self.gallery, references)
        try:
            flagged = self.records.set_state(
                references,
                RecordState.DELETING,
                only=(RecordState.ACTIVE, RecordState.PENDING),
            )
            if flagged == 0 and not stranded:
                raise NotFoundError(
                    f"no subject {external_id!r} with records to delete (another deletion "
                    "holds them)",
                    reason="unknown_subject",
                )
            if flagged:
                # Recorded with the first commit: from here the deletion completes, if need be
                # by a retry or by reconcile after a crash, and the audit trail must already
                # say who asked for it.
                details = {"templates": len(references)}
                self.audit.record(actor, "subject.delete", external_id, details)
            self.session.commit()
        except BaseException:  # the records stay active: searchable again
            self.session.rollback()
            _settle(self.gallery, references)
            _DELETIONS.release([*references, *stranded])
            raise
        if not flagged:  # another deletion flagged them meanwhile: its own to finish
            _settle(self.gallery, references)
            _DELETIONS.release(references)
            references = []
        references += stranded
        try:
            # A failure (StoreUnavailableError when the gallery cannot be written) leaves the
            # rows flagged and out of every search; a retry of the deletion finishes them.
            self.gallery.remove(references)
            # Only the records listed above go: one enrolled meanwhile (committed after the
            # list) keeps its subject, which then goes only with its last record. The subject
            # row is locked first (PostgreSQL; SQLite has one writer), so an enrolment's insert
            # in flight is seen.
            self.records.delete(references)
            self.subjects.delete_if_empty(subject)
            self.session.commit()
        finally:
            _DELETIONS.release(references)
        _settle(self.gallery, references)
        return len(references)

    def finish_stranded_deletions(self, *, limit: int, actor: str = "system") -> int:
        """Finish, as a retry of :meth:`delete_subject` would, deletions that failed after
        their first commit (the gallery could not be written) and that no call of this process
        holds: at most ``limit`` records, oldest first, and their subjects once they hold no
        record. Returns how many records were finished. Raises what :meth:`delete_subject`
        does; the rows then stay flagged (out of every search) for the next try."""
        listed = self.records.in_state(RecordState.DELETING, limit=limit)
        claimed = _DELETIONS.claim_free([row.reference for row in listed])
        self.session.rollback()  # read them again: a deletion may have finished them meanwhile
        try:
            rows = self.records.in_state(RecordState.DELETING, references=claimed)
            references = [row.reference for row in rows]
            self.gallery.remove(references)
            self.records.delete(references)
            self._drop_emptied_subjects({row.subject_id for row in rows}, retire=True)
            if references:  # its subject.delete event is the first attempt's
                self.audit.record(actor, "records.reconcile", None, {"deleted": len(references)})
            self.session.commit()
        except BaseException:
            self.session.rollback()
            raise
        finally:
            _DELETIONS.release(claimed)
        _settle(self.gallery, references)
        return len(references)

    def reconcile(self, *, actor: str = "system", remove_orphans: bool = False) -> ReconcileReport:
        """Bring the database and the gallery back into agreement (see the module docstring).

        Refuses, changing nothing, to remove more gallery records without a database row than
        an interrupted write leaves (:meth:`check_orphans`), unless ``remove_orphans``."""
        report = ReconcileReport()
        in_gallery = self.gallery.references()
        if not remove_orphans:
            self._check_orphans(in_gallery)
        pending = self.records.in_state(RecordState.PENDING)
        # One source (a loaded file, a capture session) completes or rolls back as a whole:
        # a batch whose fingers were appended but not its face is undone, fingers included,
        # so a re-run (which skips sources it holds) enrols the whole file again.
        # A merge's copies (merge_of) go whatever the gallery holds: the merge did not commit.
        enrolled = [r for r in pending if r.merge_of is None]
        cut = {r.source for r in enrolled if r.source is not None and r.reference not in in_gallery}
        for row in pending:
            done = row.merge_of is None and row.reference in in_gallery and row.source not in cut
            (report.completed if done else report.rolled_back).append(row.reference)
        self.records.set_state(report.completed, RecordState.ACTIVE)
        self.records.delete(report.rolled_back)
        # What undone enrolments made and left without records (run before serving or with
        # the gallery's writer lock: no enrolment is in flight to race).
        report.emptied_encounters = [str(i) for i in self.subjects.delete_empty_encounters()]
        for subject in self.subjects.without_records():
            external_id = subject.external_id
            if self.subjects.delete_if_empty(subject):
                report.emptied_subjects.append(external_id)
        self.session.commit()

        deleting = self.records.in_state(RecordState.DELETING)
        report.deleted = [row.reference for row in deleting]
        self.gallery.remove(report.deleted)
        subject_ids = {row.subject_id for row in deleting}
        self.records.delete(report.deleted)
        self._drop_emptied_subjects(subject_ids, retire=True)

        known = self.records.references(RecordState.ACTIVE)
        known |= self.records.references(RecordState.PENDING)
        report.orphans_removed = sorted(in_gallery - known - set(report.deleted))
        self.gallery.remove(report.orphans_removed)
        report.missing_from_gallery = sorted(
            self.records.references(RecordState.ACTIVE) - in_gallery - set(report.completed)
        )
        if any(report.summary().values()):
            self.audit.record(actor, "records.reconcile", None, _counts(report))
        self.session.commit()
        _settle(self.gallery, [*report.completed, *report.rolled_back, *report.deleted])
        return report

    def check_orphans(self) -> None:
        """Raise :class:`StoresDisagreeError` ``too_many_orphans`` (exit 7) when the gallery
        holds more records without a database row than :data:`params.UNASKED_ORPHANS` or a
        share of it above :data:`params.UNASKED_ORPHAN_SHARE`: the wrong or an empty
        database, whose reconcile would remove (and the node then erase) the whole gallery."""
        self._check_orphans(self.gallery.references())

    def _check_orphans(self, in_gallery: set[str]) -> None:
        known: set[str] = set()
        for state in RecordState:
            known |= self.records.references(state)
        orphans = len(in_gallery - known)
        share = orphans / max(len(in_gallery), 1)
        if orphans <= params.UNASKED_ORPHANS and share <= params.UNASKED_ORPHAN_SHARE:
            return
        why = "it holds no records at all" if not known else "it may be the wrong database"
        raise StoresDisagreeError(
            f"{orphans} of the gallery's {len(in_gallery)} records have no row in the "
            f"database ({why}); reconcile would remove them, so nothing was changed. If the "
            "database is the right one, run `bdx gallery reconcile --remove-orphans`",
            reason="too_many_orphans",
        )

    def _drop_emptied_subjects(self, subject_ids: set[int], *, retire: bool = False) -> None:
        """Delete those of these subjects left without records; with ``retire`` (a deletion
        finished: the subject was enrolled), note their external ids as no rename's to take
        (:meth:`SubjectRepository.retire`; a merged one stays noted as merged)."""
        for subject_id in subject_ids:
            subject = self.session.get(Subject, subject_id)
            if subject is None:
                continue
            external_id = subject.external_id
            if self.subjects.delete_if_empty(subject) and retire:
                self.subjects.retire(external_id, "deleted")


class _Deletions:
    """References a :meth:`RecordService.delete_subject` call of this process holds, between
    its first commit (rows flagged ``deleting``) and its last. The gallery has one writer
    process, so rows ``deleting`` that no call holds were left by a deletion that failed after
    its first commit (a gallery write, the last commit): a retry of it, or the running node's
    erasure task (:meth:`RecordService.finish_stranded_deletions`), finishes them (a crash
    leaves them to the start-up reconcile). Holds are counted, as two calls may list the same
    active rows before one of them flags them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: Counter[str] = Counter()

    def hold(self, references: Sequence[str]) -> None:
        with self._lock:
            self._held.update(references)

    def claim_free(self, references: Sequence[str]) -> list[str]:
        """Hold those of ``references`` that no call holds; returns them."""
        with self._lock:
            free = [r for r in references if not self._held[r]]
            self._held.update(free)
            return free

    def release(self, references: Sequence[str]) -> None:
        with self._lock:
            self._held.subtract(references)
            self._held = +self._held  # drop the counts at zero


_DELETIONS = _Deletions()


def _unsettle(gallery: GalleryIndex, references: Sequence[str]) -> None:
    """Tell a gallery set that tracks them that ``references`` are between commits."""
    mark = getattr(gallery, "unsettle", None)
    if mark is not None:
        mark(references)


def _settle(gallery: GalleryIndex, references: Sequence[str]) -> None:
    mark = getattr(gallery, "settle", None)
    if mark is not None:
        mark(references)


def _counts(report: ReconcileReport) -> dict[str, Any]:
    return {k: v for k, v in report.summary().items() if v}
