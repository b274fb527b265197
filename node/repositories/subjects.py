"""Subjects and their encounters."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Executable, exists, func, select, update
from sqlalchemy import delete as sa_delete
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from node.db.models import AuditEvent, Encounter, RetiredExternalId, Subject, TemplateRecord
from node.exchange.references import exchange_hits


class SubjectRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def by_external_id(self, external_id: str) -> Subject | None:
        query = select(Subject).where(Subject.external_id == external_id)
        return self.session.scalars(query).one_or_none()

    def by_id(self, subject_id: int) -> Subject | None:
        return self.session.get(Subject, subject_id)

    def get_or_create(self, external_id: str) -> Subject:
        """The subject of ``external_id``, created if needed. Two requests creating the same
        one at once both get it: the insert does nothing on a conflict (it waits for the other
        transaction's write, as either database orders writes) and the row is read back."""
        subject = self.by_external_id(external_id)
        if subject is None:
            self.session.execute(_insert_missing(self.session, external_id))
            subject = self.by_external_id(external_id)
            if subject is None:  # pragma: no cover - the insert or the other one made it
                raise RuntimeError(f"subject {external_id!r} neither inserted nor found")
        return subject

    def page(self, *, limit: int, after_id: int = 0) -> Sequence[Subject]:
        query = select(Subject).where(Subject.id > after_id).order_by(Subject.id).limit(limit)
        return self.session.scalars(query).all()

    def count(self) -> int:
        return self.session.scalar(select(func.count()).select_from(Subject)) or 0

    def encounters_of(self, subject: Subject) -> Sequence[Encounter]:
        query = select(Encounter).where(Encounter.subject_id == subject.id).order_by(Encounter.id)
        return self.session.scalars(query).all()

    def encounter(self, subject_id: int, external_id: str, source: str | None) -> int:
        """The id of the subject's encounter ``external_id`` (a booking, a visa file), made
        if needed: a second image enrolled into it joins it (the unique name refused it).
        Two enrolments making it at once both get it, as :meth:`get_or_create` does."""
        query = select(Encounter.id).where(
            Encounter.subject_id == subject_id, Encounter.external_id == external_id
        )
        found = self.session.scalar(query)
        if found is None:
            values = {"subject_id": subject_id, "external_id": external_id, "source": source}
            unique = [Encounter.subject_id, Encounter.external_id]
            self.session.execute(
                _insert(self.session, Encounter)
                .values(values)
                .on_conflict_do_nothing(index_elements=unique)
            )
            found = self.session.scalar(query)
            if found is None:  # pragma: no cover - the insert or the other one made it
                raise RuntimeError("encounter neither inserted nor found")
        return found

    def add_encounter(self, encounter: Encounter) -> Encounter:
        self.session.add(encounter)
        self.session.flush()
        return encounter

    def delete(self, subject: Subject) -> None:
        """Delete the subject (its encounters and records by cascade). A row another request
        deleted already is fine: the subject is gone either way."""
        self.session.execute(sa_delete(Subject).where(Subject.id == subject.id))
        self.session.expunge(subject)

    def without_records(self) -> Sequence[Subject]:
        """Subjects that hold no record (an undone enrolment's, left before it dropped them)."""
        empty = ~exists().where(TemplateRecord.subject_id == Subject.id)
        return self.session.scalars(select(Subject).where(empty).order_by(Subject.id)).all()

    def delete_if_empty(self, subject: Subject) -> bool:
        """Delete ``subject`` if it holds no record, decided under its row lock: an enrolment
        that commits records for it meanwhile keeps it (its insert waits for the lock on
        PostgreSQL; SQLite has one writer). Whether it was deleted."""
        self.lock(subject)
        held = select(TemplateRecord.id).where(TemplateRecord.subject_id == subject.id).limit(1)
        if self.session.scalar(held) is not None:
            return False
        self.delete(subject)
        return True

    def delete_empty_encounters(self, ids: Iterable[int] | None = None) -> list[int]:
        """Delete the encounters (of ``ids``; all when None) that hold no record; their ids.
        An encounter is made by one enrolment with its records, so one without any is what
        an undone enrolment left."""
        empty = ~exists().where(TemplateRecord.encounter_id == Encounter.id)
        query = select(Encounter.id).where(empty)
        if ids is not None:
            query = query.where(Encounter.id.in_(list(ids)))
        found = list(self.session.scalars(query).all())
        if found:
            self.session.execute(sa_delete(Encounter).where(Encounter.id.in_(found)))
        return found

    def encounter_targets(self, duplicate_id: int, keep_id: int) -> dict[int, int]:
        """For a merge of subject ``duplicate_id`` into ``keep_id``: each of the duplicate's
        encounters and the encounter its records go to in the kept subject, itself (moved by
        :meth:`move_encounters`) or the kept subject's encounter of the same external id (an
        encounter name is unique per subject: a booking enrolled under both)."""
        kept = {
            external_id: encounter_id
            for encounter_id, external_id in self.session.execute(
                select(Encounter.id, Encounter.external_id).where(
                    Encounter.subject_id == keep_id, Encounter.external_id.is_not(None)
                )
            )
        }
        query = select(Encounter.id, Encounter.external_id).where(
            Encounter.subject_id == duplicate_id
        )
        return {
            encounter_id: kept.get(external_id, encounter_id) if external_id else encounter_id
            for encounter_id, external_id in self.session.execute(query)
        }

    def move_encounters(self, ids: Iterable[int], keep_id: int) -> int:
        """Give the encounters ``ids`` to subject ``keep_id``; how many moved."""
        listed = list(ids)
        if not listed:
            return 0
        result = self.session.execute(
            update(Encounter).where(Encounter.id.in_(listed)).values(subject_id=keep_id)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def repoint_hits(self, from_key: str, to_key: str) -> int:
        """Make the hit references issued on gallery subject key ``from_key`` resolve to
        ``to_key`` (``exchange_hits.record_ref``; the stored mapping is all a resolution
        reads, :class:`~node.exchange.references.HitReferences`); how many."""
        result = self.session.execute(
            update(exchange_hits)
            .where(exchange_hits.c.record_ref == from_key)
            .values(record_ref=to_key)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def retire(self, external_id: str, how: str) -> None:
        """Note that ``external_id`` names no subject any more (``how``: renamed, merged,
        deleted); one noted before stays as it was."""
        if self.session.get(RetiredExternalId, external_id) is None:
            self.session.add(RetiredExternalId(external_id=external_id, how=how))
            self.session.flush()

    def retired_as(self, external_id: str) -> str | None:
        """How ``external_id`` was retired (:meth:`retire`), or None."""
        retired = self.session.get(RetiredExternalId, external_id)
        return None if retired is None else retired.how

    def ever_used(self, external_id: str) -> bool:
        """Whether ``external_id`` names a subject or ever did: noted by :meth:`retire`, or
        the target of a deletion still in the audit trail (one whose note a crash lost)."""
        if self.by_external_id(external_id) is not None:
            return True
        if self.session.get(RetiredExternalId, external_id) is not None:
            return True
        deleted = select(AuditEvent.id).where(
            AuditEvent.action == "subject.delete", AuditEvent.target == external_id
        )
        return self.session.scalar(deleted.limit(1)) is not None

    def lock(self, subject: Subject) -> bool:
        """Lock the subject's row until the transaction ends; whether the row is still there
        (a deletion that committed while this waited took it away: the caller must not read
        the expired object again, which would raise).

        PostgreSQL: ``SELECT ... FOR UPDATE``. SQLite locks no row, and the driver begins no
        transaction for a read, so the caller's reads would be made outside the transaction
        of its writes and another writer could commit between them: a write that changes
        nothing (the row's ``created_at`` set to itself) begins the transaction and takes the
        database's write lock first, as ``HitRepository.lock_for_outcome`` does; the reads
        after it and the writes are then one transaction that every other writer waits for."""
        if self.session.get_bind().dialect.name == "sqlite":
            done = self.session.execute(
                update(Subject)
                .where(Subject.id == subject.id)
                .values(created_at=Subject.created_at)
                .execution_options(synchronize_session=False)
            )
            return bool(getattr(done, "rowcount", 0))
        query = select(Subject.id).where(Subject.id == subject.id).with_for_update()
        return self.session.scalar(query) is not None


def _insert(session: Session, model: type[Subject] | type[Encounter]) -> Any:
    """An INSERT of ``model`` in the session's dialect (one that has ``ON CONFLICT``)."""
    dialect = session.get_bind().dialect.name
    return (sqlite_insert if dialect == "sqlite" else postgresql_insert)(model)


def _insert_missing(session: Session, external_id: str) -> Executable:
    """``INSERT ... ON CONFLICT (external_id) DO NOTHING`` in the session's dialect."""
    return (
        _insert(session, Subject)
        .values(external_id=external_id)
        .on_conflict_do_nothing(index_elements=[Subject.external_id])
    )
