"""Template records stay consistent across the database and the real gallery store,
including after a crash between the two writes (states built as a crash leaves them)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from matcher.errors import TemplateFormatError
from matcher.gallery import FieldSpec, GallerySchema
from node.db.models import AuditEvent, Encounter, Modality, RecordState, Subject, TemplateRecord
from node.errors import NotFoundError
from node.restrictions import SharingRestrictions
from node.services.galleries import GallerySet, gallery_name, gallery_writer
from node.services.records import NewRecord, RecordService
from node.settings import Settings

SCHEMA = GallerySchema("face", "test-embedding", 1, {"embedding": FieldSpec("float32", (4,))})


def new(subject: str, n: int = 1, **kw: object) -> list[NewRecord]:
    return [
        NewRecord(
            subject_external_id=subject,
            modality=Modality.FACE,
            format=SCHEMA.format,
            format_version=SCHEMA.format_version,
            **kw,  # type: ignore[arg-type]
        )
        for _ in range(n)
    ]


def embeddings(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)


def enrol(
    session: Session, galleries: GallerySet, items: Sequence[NewRecord]
) -> list[TemplateRecord]:
    write = gallery_writer(galleries, SCHEMA, {"embedding": embeddings(len(items))})
    return RecordService(session, galleries).enrol(items, write, actor="user:op")


def states(session: Session) -> dict[str, RecordState]:
    session.expire_all()
    rows = session.execute(select(TemplateRecord.reference, TemplateRecord.state))
    return {ref: state for ref, state in rows}


def test_enrol_writes_both_sides(session: Session, galleries: GallerySet) -> None:
    rows = enrol(session, galleries, new("case-1", 2, source="batch-7", quality=80))
    refs = {r.reference for r in rows}
    assert all(r.state is RecordState.ACTIVE for r in rows)
    assert galleries.references() == refs
    assert all(len(r) == 32 and int(r, 16) >= 0 for r in refs) and len(refs) == 2
    assert "case-1" not in "".join(refs)
    gallery = galleries.galleries()[gallery_name(SCHEMA)]
    record = gallery.lookup(rows[0].reference)
    assert record.subject == f"s{rows[0].subject_id}"
    np.testing.assert_array_equal(record.arrays["embedding"], embeddings(2)[0])
    assert session.scalar(select(func.count()).select_from(Encounter)) == 1


def test_failed_gallery_write_leaves_nothing(session: Session, galleries: GallerySet) -> None:
    """Not the records, nor the subject and encounter they made (a subject with no record was
    listed and counted, an encounter kept its source); a subject that had records keeps them."""
    enrol(session, galleries, new("case-0"))
    bad = gallery_writer(galleries, SCHEMA, {"embedding": np.zeros((3, 5), np.float32)})
    items = new("case-1", 2, source="load-1") + new("case-0", source="load-1")
    with pytest.raises(TemplateFormatError):
        RecordService(session, galleries).enrol(items, bad, actor="t")
    assert len(states(session)) == 1 and len(galleries.references()) == 1
    assert session.scalars(select(Subject.external_id)).all() == ["case-0"]
    assert session.scalar(select(func.count()).select_from(Encounter)) == 0


def test_a_second_enrolment_joins_a_named_encounter(
    session: Session, galleries: GallerySet
) -> None:
    """A booking's face, then its fingers: one encounter with both records (the second was
    refused by the encounter's unique name, and answered as a deleted subject)."""
    face = enrol(session, galleries, new("case-1", encounter_external_id="booking-7"))
    fingers = enrol(session, galleries, new("case-1", 2, encounter_external_id="booking-7"))
    other = enrol(session, galleries, new("case-2", encounter_external_id="booking-7"))
    encounters = session.execute(select(Encounter.id, Encounter.external_id)).all()
    assert len(encounters) == 2  # one per subject: names are per subject
    assert {r.encounter_id for r in face + fingers} == {face[0].encounter_id}
    assert other[0].encounter_id != face[0].encounter_id


def test_reconcile_removes_what_undone_enrolments_left(
    session: Session, galleries: GallerySet
) -> None:
    """Subjects and encounters an enrolment made and left without records (a crash undid it
    before they were cleaned up) go at the next reconcile, and are counted."""
    enrol(session, galleries, new("case-0", source="load-0"))
    session.add(Subject(external_id="case-9"))
    session.commit()
    case0 = session.scalars(select(Subject).where(Subject.external_id == "case-0")).one()
    session.add(Encounter(subject_id=case0.id, source="load-1"))
    session.commit()
    report = RecordService(session, galleries).reconcile()
    assert report.emptied_subjects == ["case-9"] and len(report.emptied_encounters) == 1
    assert session.scalars(select(Subject.external_id)).all() == ["case-0"]
    assert session.scalars(select(Encounter.source)).all() == ["load-0"]


def test_restrictions_are_stored_as_validated_json(session: Session, galleries: GallerySet) -> None:
    r = SharingRestrictions(asylum_nationality="sy", purposes=["asylum"])
    rows = enrol(session, galleries, new("case-1", restrictions=r))
    session.expire_all()
    stored = session.get(TemplateRecord, rows[0].id)
    assert stored is not None
    assert SharingRestrictions.model_validate(stored.restrictions) == r
    assert stored.restrictions["asylum_nationality"] == "SY"


class ProcessKilled(BaseException):
    """Stands for SIGKILL: nothing after the raise point runs, not even clean-up."""


def crash_before_gallery_write(session: Session, galleries: GallerySet, subject: str) -> str:
    """Step 1 of enrol done, then the process died."""
    holder: list[str] = []

    def die(rows: Sequence[TemplateRecord]) -> None:
        holder.append(rows[0].reference)
        raise ProcessKilled

    service = RecordService(session, galleries)
    service.gallery = _NoUndo()  # a dead process undoes nothing
    with pytest.raises(ProcessKilled):
        service.enrol(new(subject), die, actor="t")
    session.rollback()
    return holder[0]


class _NoUndo:
    def references(self) -> set[str]:
        return set()

    def remove(self, references: Sequence[str]) -> None:
        raise ProcessKilled


def test_reconcile_rolls_back_pending_without_gallery_entry(
    session: Session, galleries: GallerySet
) -> None:
    ref = crash_before_gallery_write(session, galleries, "case-1")
    assert states(session) == {ref: RecordState.PENDING}
    report = RecordService(session, galleries).reconcile()
    assert report.rolled_back == [ref]
    assert states(session) == {}


def test_reconcile_completes_pending_with_gallery_entry(
    session: Session, galleries: GallerySet
) -> None:
    rows = enrol(session, galleries, new("case-1"))
    ref = rows[0].reference
    RecordService(session, galleries).records.set_state([ref], RecordState.PENDING)
    session.commit()  # as if the process died after the gallery append
    report = RecordService(session, galleries).reconcile()
    assert report.completed == [ref]
    assert states(session) == {ref: RecordState.ACTIVE}
    assert galleries.references() == {ref}


def test_reconcile_rolls_back_a_source_as_a_whole(session: Session, galleries: GallerySet) -> None:
    """A file whose first append (its fingers) was done but not its second (its face) when the
    process died: every pending row of that source is undone, so a re-run enrols it whole.
    Another source that was complete finishes as before."""
    whole = enrol(session, galleries, new("case-1", 2, source="file:a"))
    half = enrol(session, galleries, new("case-2", 2, source="file:b"))
    service = RecordService(session, galleries)
    service.records.set_state([r.reference for r in whole + half], RecordState.PENDING)
    session.commit()
    galleries.remove([half[1].reference])  # the second append never happened
    report = service.reconcile()
    assert sorted(report.completed) == sorted(r.reference for r in whole)
    assert sorted(report.rolled_back) == sorted(r.reference for r in half)
    assert report.orphans_removed == [half[0].reference]
    assert galleries.references() == {r.reference for r in whole}


def test_reconcile_finishes_an_interrupted_subject_delete(
    session: Session, galleries: GallerySet
) -> None:
    rows = enrol(session, galleries, new("case-1", 2))
    keep = enrol(session, galleries, new("case-2"))
    refs = [r.reference for r in rows]
    RecordService(session, galleries).records.set_state(refs, RecordState.DELETING)
    session.commit()  # died before the gallery removal
    report = RecordService(session, galleries).reconcile()
    assert sorted(report.deleted) == sorted(refs)
    assert galleries.references() == {keep[0].reference}
    assert states(session) == {keep[0].reference: RecordState.ACTIVE}
    assert session.scalars(select(Subject.external_id)).all() == ["case-2"]


def test_stranded_deletions_are_finished_a_bounded_batch_at_a_time(
    session: Session, galleries: GallerySet
) -> None:
    """Rows a failed deletion left ``deleting`` waited for a retry or a restart; the running
    node finishes them, at most ``limit`` a round, oldest first, with their subjects."""
    stuck = [enrol(session, galleries, new(f"case-{i}"))[0] for i in range(3)]
    keep = enrol(session, galleries, new("case-9"))[0]
    service = RecordService(session, galleries)
    service.records.set_state([r.reference for r in stuck], RecordState.DELETING)
    session.commit()  # as a deletion whose gallery write failed leaves them
    assert service.finish_stranded_deletions(limit=2) == 2
    assert galleries.references() == {stuck[2].reference, keep.reference}
    assert session.scalars(select(Subject.external_id)).all() == ["case-2", "case-9"]
    assert service.finish_stranded_deletions(limit=2) == 1
    assert service.finish_stranded_deletions(limit=2) == 0
    assert states(session) == {keep.reference: RecordState.ACTIVE}
    assert session.scalars(select(Subject.external_id)).all() == ["case-9"]
    done = select(AuditEvent).where(AuditEvent.action == "records.reconcile")
    events = session.scalars(done.order_by(AuditEvent.id))
    assert [e.details for e in events] == [{"deleted": 2}, {"deleted": 1}]


def test_reconcile_removes_gallery_orphans_and_reports_lost_templates(
    session: Session, galleries: GallerySet
) -> None:
    orphan = enrol(session, galleries, new("case-1"))[0].reference
    lost = enrol(session, galleries, new("case-2"))[0].reference
    # a record both hold (with none, the database would not be the gallery's: refused)
    kept = enrol(session, galleries, new("case-3"))[0].reference
    service = RecordService(session, galleries)
    service.records.delete([orphan])
    session.commit()
    galleries.remove([lost])
    report = service.reconcile()
    assert report.orphans_removed == [orphan]
    assert report.missing_from_gallery == [lost]
    assert galleries.references() == {kept}
    assert states(session) == {lost: RecordState.ACTIVE, kept: RecordState.ACTIVE}  # reported
    assert report.emptied_subjects == ["case-1"]  # its only row went above
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "records.reconcile"))
    assert event.one().details == {
        "orphans_removed": 1,
        "missing_from_gallery": 1,
        "emptied_subjects": 1,
    }


def test_records_missing_from_the_gallery_make_the_node_degraded(
    session: Session, galleries: GallerySet, settings: Settings, engine: Engine
) -> None:
    """A database newer than its gallery (the two restored from different moments): the
    start-up reconcile reported its active records without templates in a WARNING among its
    counts, /health said ok, and GET /subjects showed them active while every search of them
    was a no-hit. /health is degraded now and counts them; the node logs an ERROR."""
    from fastapi.testclient import TestClient

    from node.api.app import create_app

    lost = enrol(session, galleries, new("case-2"))[0].reference
    enrol(session, galleries, new("case-3"))
    galleries.remove([lost])
    with TestClient(create_app(settings, engine=engine, gallery=galleries)) as client:
        body = client.get("/health").json()
    assert (body["status"], body["missing_from_gallery"]) == ("degraded", 1)


def test_reconcile_refuses_to_empty_the_gallery_for_another_database(
    session: Session, galleries: GallerySet, tmp_path: Path
) -> None:
    """`bdx gallery load` run without BDX_DATABASE_URL on a PostgreSQL node made a fresh
    SQLite database, and its reconcile removed every gallery record (exit 0); the real node
    then answered no-hit for everyone and erased the templates."""
    from node.db.engine import create_db_engine, session_factory
    from node.db.migrate import upgrade
    from node.service_errors import StoresDisagreeError

    refs = {r.reference for r in enrol(session, galleries, new("case-1", 3))}
    other = create_db_engine(f"sqlite:///{tmp_path / 'other.sqlite3'}")
    upgrade(other)
    try:
        with session_factory(other)() as wrong:
            with pytest.raises(StoresDisagreeError) as refused:
                RecordService(wrong, galleries).reconcile()
            assert (refused.value.reason, refused.value.exit_code) == ("too_many_orphans", 7)
            assert "--remove-orphans" in refused.value.message
            assert galleries.references() == refs
            assert wrong.scalar(select(func.count()).select_from(AuditEvent)) == 0
            report = RecordService(wrong, galleries).reconcile(remove_orphans=True)
            assert sorted(report.orphans_removed) == sorted(refs)
    finally:
        other.dispose()
    assert galleries.references() == set()


def test_reconcile_of_a_consistent_node_changes_nothing(
    session: Session, galleries: GallerySet
) -> None:
    enrol(session, galleries, new("case-1", 3))
    report = RecordService(session, galleries).reconcile()
    assert not any(report.summary().values())


def test_delete_subject_everywhere(session: Session, galleries: GallerySet) -> None:
    gone = [r.reference for r in enrol(session, galleries, new("case-1", 2, source="b1"))]
    other = enrol(session, galleries, new("case-2"))
    removed = RecordService(session, galleries).delete_subject("case-1", actor="user:op")
    assert removed == 2
    assert galleries.references() == {other[0].reference}
    assert set(states(session)) == {other[0].reference}
    assert session.scalar(select(func.count()).select_from(Encounter)) == 0
    assert not set(gone) & galleries.references()
    with pytest.raises(NotFoundError) as info:
        RecordService(session, galleries).delete_subject("case-1", actor="t")
    assert info.value.reason == "unknown_subject"


def test_an_erased_subjects_id_is_never_given_again(
    session: Session, galleries: GallerySet
) -> None:
    """Hit references resolve to the gallery key ``s<id>``: after the newest subject is
    erased, the next one enrolled gets a new id (SQLite re-used it without AUTOINCREMENT)."""
    enrol(session, galleries, new("case-1"))
    erased = enrol(session, galleries, new("case-2"))[0].subject_id
    RecordService(session, galleries).delete_subject("case-2", actor="user:op")
    later = enrol(session, galleries, new("case-3"))[0]
    assert later.subject_id > erased
    assert galleries.galleries()[gallery_name(SCHEMA)].lookup(later.reference).subject != (
        f"s{erased}"
    )


def test_gallery_set_reopens_what_it_wrote(
    session: Session, galleries: GallerySet, tmp_path: Path
) -> None:
    rows = enrol(session, galleries, new("case-1", 2))
    galleries.close()
    with GallerySet.open(tmp_path / "galleries") as reopened:
        assert reopened.references() == {r.reference for r in rows}
        assert reopened.stats()[gallery_name(SCHEMA)].records == 2


def test_restrictions_name_only_the_agreements_purposes() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        SharingRestrictions(purposes=["visa_application"])  # type: ignore[list-item]


def test_unreadable_stored_restrictions_fail_closed(
    session: Session, galleries: GallerySet, engine: Engine
) -> None:
    """Restrictions stored before a rule tightened (or edited by hand) that no longer parse:
    the record is never shared, and a hit on it stays a plain no-hit for the requester (it was
    an error that told the requester this record matched)."""
    from sqlalchemy import update

    from node.exchange.search import RecordRestrictions
    from policy.restrictions import check_record

    rows = enrol(session, galleries, new("case-1", restrictions=SharingRestrictions()))
    sid = rows[0].subject_id
    for stored in ({"purposes": ["visa_application"]}, {"peers": ["not a country"]}):
        session.execute(
            update(TemplateRecord)
            .where(TemplateRecord.id == rows[0].id)
            .values(restrictions=stored)
        )
        session.commit()
        (got,) = RecordRestrictions(engine)([f"s{sid}"])
        assert got.unreadable
        assert check_record(got, "TH", "border_control").reason == "record restrictions unreadable"


def test_a_deletion_is_audited_with_its_first_commit(
    session: Session, galleries: GallerySet
) -> None:
    """The process dies after the rows were flagged for deletion: reconcile will finish it,
    and the audit trail already says who deleted which subject (it held only the system's
    reconcile before)."""
    enrol(session, galleries, new("case-1", 2))
    service = RecordService(session, galleries)
    service.gallery = _NoUndo()  # dies at the gallery removal
    with pytest.raises(ProcessKilled):
        service.delete_subject("case-1", actor="user:op")
    session.rollback()
    events = session.execute(select(AuditEvent.actor, AuditEvent.action, AuditEvent.target)).all()
    assert ("user:op", "subject.delete", "case-1") in events
    RecordService(session, galleries).reconcile()
    assert states(session) == {}


def test_an_enrolment_is_audited_with_its_subjects(session: Session, galleries: GallerySet) -> None:
    enrol(session, galleries, new("case-1", 2) + new("case-2"))
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "records.enrol")).one()
    assert event.details == {"count": 3, "subjects": ["case-1", "case-2"]}


def test_restrictions_given_at_enrolment_are_in_its_audit_event(
    session: Session, galleries: GallerySet
) -> None:
    """They were stored on the records but not audited, where a later restrict is."""
    from node.restrictions import SharingRestrictions

    asylum = SharingRestrictions(asylum_nationality="SY", peers=["MY"])
    enrol(session, galleries, new("case-1", restrictions=asylum) + new("case-2"))
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "records.enrol")).one()
    assert event.details == {
        "count": 2,
        "subjects": ["case-1", "case-2"],
        "restrictions": {"case-1": {"asylum_nationality": "SY", "peers": ["MY"]}},
    }


def test_a_subject_deleted_while_its_records_are_enrolled(
    session: Session, galleries: GallerySet, sessions: sessionmaker[Session]
) -> None:
    """The deletion takes the enrolment's pending rows with it: the enrolment answers a
    typed conflict and leaves nothing behind (it answered 500 and left its templates in the
    gallery without rows)."""
    from node.service_errors import ConflictError

    enrol(session, galleries, new("case-1"))
    append = galleries.append

    def delete_first(*args: object) -> None:
        with sessions() as other:
            RecordService(other, galleries).delete_subject("case-1", actor="user:op2")
        append(*args)  # type: ignore[arg-type]

    galleries.append = delete_first  # type: ignore[method-assign]
    try:
        with pytest.raises(ConflictError) as err:
            enrol(session, galleries, new("case-1"))
    finally:
        del galleries.append
    assert err.value.reason == "subject_deleted"
    assert states(session) == {} and galleries.references() == set()
    assert not any(RecordService(session, galleries).reconcile().summary().values())


def test_a_record_enrolled_after_the_deletion_listed_its_records_keeps_the_subject(
    session: Session, galleries: GallerySet, sessions: sessionmaker[Session]
) -> None:
    """A deletion removes the records it listed; one committed after that keeps its subject
    (the cascade used to delete it, leaving its template in the gallery)."""
    first = enrol(session, galleries, new("case-1"))[0].reference
    service = RecordService(session, galleries)
    remove = galleries.remove
    later: list[str] = []

    def enrol_then_remove(references: Sequence[str]) -> None:
        with sessions() as other:
            later.extend(r.reference for r in enrol(other, galleries, new("case-1")))
        remove(references)

    galleries.remove = enrol_then_remove  # type: ignore[method-assign]
    try:
        service.delete_subject("case-1", actor="user:op")
    finally:
        del galleries.remove
    assert states(session) == {later[0]: RecordState.ACTIVE}
    assert galleries.references() == {later[0]} and first not in galleries.references()
    assert session.scalars(select(Subject.external_id)).all() == ["case-1"]


def test_two_requests_create_one_subject(sessions: sessionmaker[Session]) -> None:
    """Two enrolments of a new external id at once: both get the same subject (the second
    insert waited for the first and did nothing), where the second was an IntegrityError."""
    import threading

    from node.repositories.subjects import SubjectRepository

    got: list[int] = []
    with sessions() as first:
        mine = SubjectRepository(first).get_or_create("dup-1")  # inserted, not committed

        def second() -> None:
            with sessions() as s:
                got.append(SubjectRepository(s).get_or_create("dup-1").id)
                s.commit()

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)  # it waits on the first's write
        first.commit()
        thread.join(30)
        assert got == [mine.id]


def test_a_subject_deleted_twice_at_once(
    session: Session, galleries: GallerySet, sessions: sessionmaker[Session]
) -> None:
    """Two deletions of one subject racing: the second finds the rows the first flagged and
    answers not found; the first completes, and the audit trail holds one deletion (both
    answered 200 and both were audited; before that it was a StaleDataError 500)."""
    enrol(session, galleries, new("case-1", 2))
    remove = galleries.remove
    nested = {"done": False}

    def other_deletion_meanwhile(references: Sequence[str]) -> None:
        if not nested["done"]:
            nested["done"] = True
            with sessions() as other, pytest.raises(NotFoundError):
                RecordService(other, galleries).delete_subject("case-1", actor="user:op2")
        remove(references)

    galleries.remove = other_deletion_meanwhile  # type: ignore[method-assign]
    try:
        assert RecordService(session, galleries).delete_subject("case-1", actor="user:op") == 2
    finally:
        del galleries.remove
    assert nested["done"] and states(session) == {} and galleries.references() == set()
    assert session.scalars(select(Subject.external_id)).all() == []
    deletions = select(AuditEvent.actor).where(AuditEvent.action == "subject.delete")
    assert session.scalars(deletions).all() == ["user:op"]


def test_an_enrolment_never_revives_rows_a_deletion_flagged(
    session: Session, galleries: GallerySet, sessions: sessionmaker[Session]
) -> None:
    """A deletion listed the enrolment's pending rows and flagged them ``deleting`` before the
    enrolment activated them: the enrolment answers 409 and does not flip them to active
    (the deletion then finds them gone)."""
    from node.service_errors import ConflictError

    append = galleries.append

    def flagged_first(*args: object) -> None:
        with sessions() as other:
            RecordService(other, galleries).records.set_state(
                [r.reference for r in other.scalars(select(TemplateRecord))], RecordState.DELETING
            )
            other.commit()
        append(*args)  # type: ignore[arg-type]

    galleries.append = flagged_first  # type: ignore[method-assign]
    try:
        with pytest.raises(ConflictError):
            enrol(session, galleries, new("case-1"))
    finally:
        del galleries.append
    assert states(session) == {} and galleries.references() == set()


def test_a_subject_deleted_between_its_look_up_and_the_insert(
    session: Session,
    galleries: GallerySet,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pending row's insert hits the foreign key (each row is flushed at once): a typed
    409, not a raw IntegrityError (a 500)."""
    from node.repositories.subjects import SubjectRepository
    from node.service_errors import ConflictError

    enrol(session, galleries, new("case-1"))
    real = SubjectRepository.get_or_create

    def looked_up_then_deleted(self: SubjectRepository, external_id: str) -> Subject:
        subject = real(self, external_id)
        with sessions() as other:
            RecordService(other, galleries).delete_subject(external_id, actor="user:op2")
        return subject

    monkeypatch.setattr(SubjectRepository, "get_or_create", looked_up_then_deleted)
    with pytest.raises(ConflictError) as err:
        enrol(session, galleries, new("case-1"))
    assert err.value.reason == "subject_deleted"
    assert states(session) == {} and galleries.references() == set()


def test_a_record_with_unreadable_restrictions_can_still_be_inspected(
    session: Session, galleries: GallerySet, client: object, make_token: object
) -> None:
    """Restrictions stored under an earlier rule (a purpose outside the agreement): the
    subject still shows (restrictions null: never shared), where GET answered 500."""
    from sqlalchemy import update

    from node.db.models import Role

    rows = enrol(session, galleries, new("case-1"))
    session.execute(
        update(TemplateRecord)
        .where(TemplateRecord.id == rows[0].id)
        .values(restrictions={"purposes": ["visa_application"]})
    )
    session.commit()
    headers = {"Authorization": f"Bearer {make_token(Role.OPERATOR, name='op')}"}  # type: ignore[operator]
    r = client.get("/subjects/case-1", headers=headers)  # type: ignore[attr-defined]
    assert r.status_code == 200, r.text
    assert r.json()["records"][0]["restrictions"] is None


def _refuse_enrol_audits(engine: Engine) -> list[str]:
    """A trigger that makes the enrolment's last commit fail (its audit event's insert), as a
    lost connection or a lock timeout does; returns the statements that remove it."""
    if engine.dialect.name == "sqlite":
        create = [
            "CREATE TRIGGER no_enrol BEFORE INSERT ON audit_events "
            "WHEN NEW.action = 'records.enrol' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        ]
        return [*create, "DROP TRIGGER no_enrol"]
    create = [
        "CREATE FUNCTION no_enrol() RETURNS trigger AS $$ BEGIN "
        "IF NEW.action = 'records.enrol' THEN RAISE EXCEPTION 'refused'; END IF; "
        "RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER no_enrol BEFORE INSERT ON audit_events "
        "FOR EACH ROW EXECUTE FUNCTION no_enrol()",
    ]
    return [*create, "DROP TRIGGER no_enrol ON audit_events; DROP FUNCTION no_enrol()"]


def test_a_failed_last_commit_undoes_the_enrolment(
    engine: Engine, session: Session, galleries: GallerySet
) -> None:
    """The rows stayed pending with their templates in the gallery (a 500 to the operator),
    the retry enrolled a second copy, and a restart's reconcile activated both."""
    from sqlalchemy import text

    from node.service_errors import DatabaseUnavailableError

    enrol(session, galleries, new("case-0"))
    *create, drop = _refuse_enrol_audits(engine)
    with engine.begin() as conn:
        for statement in create:
            conn.execute(text(statement))
    try:
        with pytest.raises(DatabaseUnavailableError, match="nothing was enrolled"):
            enrol(session, galleries, new("case-1", 2))
    finally:
        with engine.begin() as conn:
            conn.execute(text(drop))
    assert list(states(session).values()) == [RecordState.ACTIVE]  # case-0's record only
    assert len(galleries.references()) == 1 and not galleries.unsettled()
    assert session.scalars(select(Subject.external_id)).all() == ["case-0"]
    again = enrol(session, galleries, new("case-1", 2))  # the operator's retry
    assert len(states(session)) == 3 and galleries.references() == set(states(session))
    assert {r.state for r in again} == {RecordState.ACTIVE}


class _LosesACommitReply(sqlite3.Connection):
    """A driver connection whose armed commit goes through and then fails, as a PostgreSQL
    backend dropped after COMMIT does: the data is committed, the caller sees an error."""

    armed: ClassVar[list[int]] = []  # commits to let pass before the one whose reply is lost

    def commit(self) -> None:
        super().commit()
        if self.armed:
            self.armed[0] -= 1
            if self.armed[0] < 0:
                self.armed.clear()
                raise sqlite3.OperationalError("server closed the connection unexpectedly")


def test_a_commit_whose_reply_was_lost_stands(tmp_path: Path, galleries: GallerySet) -> None:
    """The enrolment was undone although it was committed (and its audit event with it), and
    the operator's retry enrolled it twice."""
    from sqlalchemy import create_engine

    from node.db.engine import session_factory
    from node.db.migrate import upgrade

    engine = create_engine(
        f"sqlite:///{tmp_path / 'lossy.sqlite3'}", connect_args={"factory": _LosesACommitReply}
    )
    upgrade(engine)
    with session_factory(engine)() as session:
        _LosesACommitReply.armed[:] = [1]  # the pending rows' commit passes; activation's fails
        got = enrol(session, galleries, new("case-1", 2))
        assert not _LosesACommitReply.armed  # the failure happened
        assert {r.state for r in got} == {RecordState.ACTIVE}
        assert set(states(session)) == galleries.references() == {r.reference for r in got}
        assert not galleries.unsettled()
        audits = session.scalars(select(AuditEvent.action)).all()
        assert audits.count("records.enrol") == 1
    engine.dispose()
