"""Merge a duplicate enrolment into the subject kept (operators' gallery housekeeping).

:func:`merge_subjects` merges subject ``duplicate`` into ``keep``. The gallery keys
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
subjects' row locks, which the restrict methods of
:class:`~node.services.subjects.SubjectService` take too: a restriction set during steps 1
and 2 is kept, and one asked after step 3 is refused (the originals are ``deleting``). A restriction
of the kept subject during steps 1 and 2 covers the copies too: step 3 then gives each copy
what both its own and its original's allow.

A failure before step 3's commit undoes steps 1 and 2 (nothing merged; run it again), and so
does the start-up reconcile after a crash there: the copies name their originals
(``merge_of``, cleared by step 3's commit), so reconcile removes them from both stores rather
than activating them as an interrupted enrolment's, and the merge is run again.

Each copy keeps its original's restrictions (made stricter only by a restriction of the kept
subject set meanwhile), and a subject's hits are shared only as every one of its active
records' restrictions allow (:mod:`node.exchange.search`), so the merged subject is restricted
by the union of both subjects' restrictions and no record becomes shareable with more peers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from matcher.gallery import GallerySchema, Record, RecordBatch
from node.db.models import RecordState, Subject, TemplateRecord
from node.errors import NotFoundError
from node.repositories.audit import AuditRepository
from node.repositories.records import RecordRepository
from node.repositories.subjects import SubjectRepository
from node.restrictions import SharingRestrictions
from node.service_errors import ConflictError, InvalidRequestError, StoreUnavailableError
from node.services.galleries import GallerySet, subject_key
from node.services.records import _DELETIONS, new_reference

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
