"""Read and edit subjects and their template records (operators' gallery housekeeping).

Deleting a subject touches the gallery as well and lives in :mod:`node.services.records`;
:func:`delete_subjects` deletes many, each exactly as that single deletion does.

:func:`merge_subjects` merges a duplicate enrolment into the subject kept. The gallery keys
each template by its subject (``s<id>``, what searches return), and its segments are
immutable, so the duplicate's records are moved as an enrolment and a deletion are made,
each step durable before the next:

1. copies of the duplicate's records (new random references, the same metadata and sharing
   restrictions) are inserted ``pending`` under the kept subject; commit;
2. their templates, read back from the gallery, are appended under the kept subject's key;
3. the merge itself, one transaction: the copies become ``active``, the duplicate's records
   ``deleting``, its encounters the kept subject's, the hit references issued on it
   (``exchange_hits.record_ref``) resolve to the kept subject, and ``subject.merge`` is
   audited with both external ids; the old records leave every search, under the locks
   (searches find the duplicate until then, the kept subject after); commit;
4. the duplicate's records are removed from the gallery and deleted with the duplicate's
   subject row, as a deletion's last step (its numeric id is never given again: migration
   0006). A gallery that cannot be written here leaves them ``deleting``, out of every
   search (unsettled, as a failed deletion's), for the erasure task to finish
   (:mod:`node.services.erasure`), and answers :class:`StoreUnavailableError` saying the
   merge was done.

Step 3 copies each original's restrictions to its copy again, as they are then, under both
subjects' row locks, which :meth:`SubjectService.restrict_subject` and
:meth:`SubjectService.restrict_record` take too: a restriction set during steps 1 and 2 is
kept, and one asked after step 3 is refused (the originals are ``deleting``). A restriction
of the kept subject during steps 1 and 2 covers the copies too: step 3 then gives each copy
what both its own and its original's allow.

A failure before step 3's commit undoes steps 1 and 2 (nothing merged; run it again), and so
does the start-up reconcile after a crash there: the copies name their originals
(``merge_of``, cleared by step 3's commit), so reconcile removes them from both stores rather
than activating them as an interrupted enrolment's, and the merge is run again.

Sharing restrictions are not merged: each copy keeps its original's, and a subject's hits are
shared only as every one of its active records' restrictions allow
(:mod:`node.exchange.search`), so the merged subject is restricted by the union of both
subjects' restrictions and no record becomes shareable with more peers.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from matcher.gallery import GallerySchema, Record, RecordBatch
from node.db.models import Encounter, Modality, RecordState, Subject, TemplateRecord
from node.errors import NotFoundError
from node.repositories.audit import AuditRepository
from node.repositories.records import RecordRepository
from node.repositories.subjects import SubjectRepository
from node.restrictions import SharingRestrictions
from node.service_errors import ConflictError, InvalidRequestError, StoreUnavailableError
from node.services.galleries import GallerySet, subject_key
from node.services.records import _DELETIONS, GalleryIndex, RecordService, new_reference

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


#: The audit action of a merge (target: the subject kept; details: the duplicate's external id
#: and how many records, encounters and hit references moved).
SUBJECT_MERGE_ACTION = "subject.merge"


@dataclass(frozen=True)
class MergeResult:
    keep: str
    duplicate: str
    records: int
    encounters: int
    hit_references: int


def merge_subjects(
    session: Session, galleries: GallerySet, keep: str, duplicate: str, *, actor: str
) -> MergeResult:
    """Merge subject ``duplicate`` into ``keep`` (see the module doc). Raises
    :class:`InvalidRequestError` ``same_subject`` for a subject merged into itself,
    :class:`NotFoundError` ``unknown_subject`` when either is not enrolled,
    :class:`ConflictError` when either is being enrolled into or deleted (``subject_busy``,
    nothing changed: try again) or ``missing_from_gallery`` when the gallery lacks one of the
    duplicate's templates (it lost data: nothing merged), and the gallery's or database's
    errors."""
    if keep == duplicate:
        raise InvalidRequestError(
            f"subject {keep!r} cannot be merged into itself", reason="same_subject"
        )
    subjects = SubjectRepository(session)
    records = RecordRepository(session)
    kept, dup = _enrolled(subjects, keep), _enrolled(subjects, duplicate)
    for subject in sorted((kept, dup), key=lambda s: s.id):  # one lock order: no deadlock
        if not subjects.lock(subject):  # deleted meanwhile
            session.rollback()
            raise _busy()
    keep_id, dup_id = kept.id, dup.id  # the objects expire in step 3
    originals = list(records.of_subject(dup_id))
    if any(r.state is not RecordState.ACTIVE for r in originals) or any(
        r.state is RecordState.DELETING for r in records.of_subject(keep_id)
    ):
        session.rollback()
        raise _busy()
    targets = subjects.encounter_targets(dup_id, keep_id)
    batches = _templates(galleries, [r.reference for r in originals])
    copies = [_copy(row, keep_id, targets) for row in originals]
    new_refs = [c.reference for c in copies]
    old_refs = [r.reference for r in originals]
    galleries.unsettle(new_refs)  # before the gallery holds them
    for row in copies:
        session.add(row)
    session.commit()  # step 1
    try:
        by_old = dict(zip(old_refs, new_refs, strict=True))
        for found in batches:  # step 2
            galleries.append(found.schema, found.batch(by_old, subject_key(keep_id)))
        # Held as a deletion's: the erasure task leaves them to this call's step 4.
        _DELETIONS.hold(old_refs)
        try:
            copied = {c.reference: c.restrictions for c in copies}
            moved = _merge_commit(session, galleries, kept, dup, by_old, targets, copied, actor)
        except BaseException:
            _DELETIONS.release(old_refs)
            raise
    except BaseException:
        session.rollback()
        galleries.remove(new_refs)
        records.delete(new_refs)
        session.commit()
        galleries.settle(new_refs)
        raise
    galleries.settle(new_refs)
    try:  # step 4, as a deletion's last
        galleries.remove(old_refs)
        records.delete(old_refs)
        emptied = subjects.by_id(dup_id)
        if emptied is not None:
            subjects.delete_if_empty(emptied)
        session.commit()
    except StoreUnavailableError as exc:
        # As a deletion whose gallery write failed: the old records stay ``deleting`` and
        # unsettled (every search drops them, also where the gallery still returns them)
        # until a finished removal settles them (the erasure task, or reconcile).
        session.rollback()
        _DELETIONS.release(old_refs)
        raise StoreUnavailableError(
            f"subject {duplicate!r} was merged into {keep!r} (audited as subject.merge), "
            f"but its old records could not be removed ({exc.message}): they are out of "
            "every search and the node removes them once the gallery is writable; do not "
            "merge again",
            reason=exc.reason,
        ) from None
    except BaseException:
        session.rollback()
        _DELETIONS.release(old_refs)
        raise
    _DELETIONS.release(old_refs)
    galleries.settle(old_refs)
    return MergeResult(keep, duplicate, len(copies), *moved)


def _enrolled(subjects: SubjectRepository, external_id: str) -> Subject:
    subject = subjects.by_external_id(external_id)
    if subject is None:
        raise NotFoundError(f"no subject {external_id!r}", reason="unknown_subject")
    return subject


def _busy() -> ConflictError:
    return ConflictError(
        "a subject of the merge is being enrolled into or deleted; nothing was merged, try "
        "again once it is done",
        reason="subject_busy",
    )


@dataclass(frozen=True)
class _Found:
    """Templates read back from one gallery, of one per-record shape."""

    schema: GallerySchema
    records: list[Record] = field(default_factory=list)

    def batch(self, references: dict[str, str], subject: str) -> RecordBatch:
        """These templates under new ``references`` (old to new) and one ``subject`` key."""
        return RecordBatch.build(
            [references[r.reference] for r in self.records],
            [subject] * len(self.records),
            [r.position for r in self.records],
            {name: np.stack([r.arrays[name] for r in self.records]) for name in self.schema.fields},
            format=self.schema.format,
            format_version=self.schema.format_version,
        )


def _templates(galleries: GallerySet, references: list[str]) -> list[_Found]:
    """The templates of ``references`` read back from the gallery, one batch per gallery and
    per-record shape (segments pad their arrays to their own widths)."""
    found: dict[tuple[str, tuple[object, ...]], _Found] = {}
    seen: set[str] = set()
    for name, gallery in galleries.galleries().items():
        with galleries.reading(gallery.schema) as held:
            if held is None:
                continue
            ids = held.locate(references)
            for ref, gid in zip(references, ids.tolist(), strict=True):
                if gid < 0:
                    continue
                record = held.lookup(ref)
                shapes = tuple((k, v.shape) for k, v in sorted(record.arrays.items()))
                found.setdefault((name, shapes), _Found(held.schema)).records.append(record)
                seen.add(ref)
    if missing := set(references) - seen:
        raise ConflictError(
            f"the gallery lacks {len(missing)} of the duplicate's templates; nothing was "
            "merged (`bdx gallery reconcile --list-missing` names the records to re-enrol)",
            reason="missing_from_gallery",
        )
    return list(found.values())


def _copy(row: TemplateRecord, keep_id: int, targets: dict[int, int]) -> TemplateRecord:
    return TemplateRecord(
        reference=new_reference(),
        subject_id=keep_id,
        encounter_id=None if row.encounter_id is None else targets.get(row.encounter_id),
        modality=row.modality,
        finger_position=row.finger_position,
        format=row.format,
        format_version=row.format_version,
        quality=row.quality,
        restrictions=row.restrictions,
        source=row.source,
        state=RecordState.PENDING,
        merge_of=row.reference,  # a copy of an uncommitted merge: reconcile removes it
    )


def _merge_commit(
    session: Session,
    galleries: GallerySet,
    kept: Subject,
    dup: Subject,
    by_old: dict[str, str],
    targets: dict[int, int],
    copied: dict[str, dict[str, Any]],
    actor: str,
) -> tuple[int, int]:
    """Step 3 of a merge, one transaction: (encounters moved, hit references re-pointed).
    Raises :class:`ConflictError` when an enrolment or deletion changed either subject since
    step 1 (the caller undoes the copies).

    Each copy takes its original's restrictions as they are now, under both subjects' row
    locks, which a restriction takes too (:meth:`SubjectService.restrict_subject`,
    :meth:`SubjectService.restrict_record`): one set since step 1 is not lost. A copy
    restricted itself since step 1 (its restrictions not those ``copied`` then: the kept
    subject restricted during the merge) takes the union of both (:func:`_strictest`).

    The duplicate's old records leave every search (unsettled) only after the locks, just
    before the commit that makes the copies ``active``: a search while this waits for a
    lock finds the duplicate, one after the commit the kept subject (the copies are settled
    by the caller), never both."""
    subjects = SubjectRepository(session)
    records = RecordRepository(session)
    old_refs, new_refs = list(by_old), list(by_old.values())
    # Read before the expiry below: a subject deleted meanwhile cannot be loaded again.
    keep_id, keep_external_id = kept.id, kept.external_id
    dup_id, dup_external_id = dup.id, dup.external_id
    try:
        for subject in sorted((kept, dup), key=lambda s: s.id):
            if not subjects.lock(subject):  # deleted meanwhile
                raise _busy()
        session.expire_all()  # read the rows as they are now, under the locks
        originals = {r.reference: r for r in records.of_subject(dup_id)}
        held = set(originals)
        copies = {
            r.reference: r for r in records.in_state(RecordState.PENDING, references=new_refs)
        }
        for old, new in by_old.items():
            if old in originals and new in copies:  # else refused just below
                now, before = copies[new].restrictions, copied[new]
                original = originals[old].restrictions
                copies[new].restrictions = original if now == before else _strictest(now, original)
                copies[new].merge_of = None  # committed with the merge: a record as any
        session.flush()
        active = records.set_state(new_refs, RecordState.ACTIVE, only=RecordState.PENDING)
        flagged = records.set_state(old_refs, RecordState.DELETING, only=RecordState.ACTIVE)
        if held != set(old_refs) or active != len(new_refs) or flagged != len(old_refs):
            raise _busy()
        moved = [e for e, target in targets.items() if e == target]
        encounters = subjects.move_encounters(moved, keep_id)
        hits = subjects.repoint_hits(subject_key(dup_id), subject_key(keep_id))
        subjects.retire(dup_external_id, "merged")
        details = {
            "duplicate": dup_external_id,
            "records": len(new_refs),
            "encounters": encounters,
            "hit_references": hits,
        }
        AuditRepository(session).record(actor, SUBJECT_MERGE_ACTION, keep_external_id, details)
        session.flush()
        galleries.unsettle(old_refs)
        try:
            session.commit()
        except BaseException:
            galleries.settle(old_refs)
            raise
    except IntegrityError:
        session.rollback()
        raise _busy() from None
    except BaseException:
        session.rollback()
        raise
    return encounters, hits


def _strictest(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Stored restrictions that allow a peer only what both ``first`` and ``second`` allow:
    either's ``no_exchange_consent``, the peers and purposes both list. A record holds one
    ``asylum_nationality``: two different ones are never shared (``no_exchange_consent``),
    and so are restrictions that cannot be read (fail closed, as a search reads them)."""
    try:
        a = SharingRestrictions.model_validate(first)
        b = SharingRestrictions.model_validate(second)
    except ValueError:
        return SharingRestrictions(no_exchange_consent=True).model_dump(mode="json")

    def both(x: list[Any] | None, y: list[Any] | None) -> list[Any] | None:
        return y if x is None else x if y is None else sorted(set(x) & set(y))

    clash = None not in (a.asylum_nationality, b.asylum_nationality) and (
        a.asylum_nationality != b.asylum_nationality
    )
    return SharingRestrictions(
        no_exchange_consent=a.no_exchange_consent or b.no_exchange_consent or clash,
        asylum_nationality=a.asylum_nationality or b.asylum_nationality,
        peers=both(a.peers, b.peers),
        purposes=both(a.purposes, b.purposes),
    ).model_dump(mode="json")


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
