"""The outcome of a hit's follow-up in the database, on SQLite and PostgreSQL: migration 0009
adds its columns (and the ``record_ref`` index) keeping every stored hit; the service records
an outcome, changes it, audits each with the one it replaced, filters the listings on it and
refuses it once the subject is deleted; and an outcome is never written over one another
operator recorded meanwhile unseen. (Served between two real nodes, through the API and the
CLI: tests/exchange/test_hit_outcome.py.)"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from node_support import enrol
from sqlalchemy import Engine, MetaData, Table, event, insert, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from test_hit_follow_up_service import issue

from node.db.engine import create_db_engine
from node.db.migrate import alembic_config, current_revision, upgrade
from node.exchange.references import HitOutcome, HitReferences
from node.repositories.audit import AuditRepository
from node.repositories.hits import HitRepository, OutcomeState
from node.service_errors import ConflictError
from node.services.galleries import GallerySet
from node.services.hits import OUTCOME_ACTION, HitService
from node.services.records import RecordService

#: The columns 0009 adds to ``exchange_hits``.
OUTCOME_COLUMNS = {"outcome", "outcome_at", "outcome_by", "note"}
SECRET = b"s" * 32


def _hits(engine: Engine) -> Table:
    metadata = MetaData()
    metadata.reflect(engine, only=("exchange_hits",))
    return metadata.tables["exchange_hits"]


def _row(reference: str, created_at: datetime) -> dict[str, object]:
    return {
        "reference": reference,
        "query_id": str(uuid.uuid4()),
        "requester": "TH",
        "record_ref": "s1",
        "created_at": created_at,
    }


def test_0009_adds_the_outcome_and_the_record_ref_index_keeping_every_hit(
    fresh_db_url: str,
) -> None:
    """A 0008 database with two hits: the upgrade keeps them, pending; the outcome's CHECK
    constraint refuses a value outside the outcomes; the downgrade takes the columns and the
    index away and keeps the hits."""
    engine = create_db_engine(fresh_db_url)
    issued = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    rows = [_row("A" * 22, issued), _row("B" * 22, issued + timedelta(seconds=1))]
    try:
        upgrade(engine, "0008")
        with engine.begin() as conn:
            conn.execute(insert(_hits(engine)), rows)
        with engine.connect() as conn:
            before = [tuple(r) for r in conn.execute(select(_hits(engine)).order_by("reference"))]
        assert not OUTCOME_COLUMNS & {
            c["name"] for c in inspect(engine).get_columns("exchange_hits")
        }

        upgrade(engine, "0009")
        assert current_revision(engine) == "0009"
        insp = inspect(engine)
        assert {c["name"] for c in insp.get_columns("exchange_hits")} >= OUTCOME_COLUMNS
        indexes = {i["name"]: i["column_names"] for i in insp.get_indexes("exchange_hits")}
        assert indexes["ix_exchange_hits_record_ref"] == ["record_ref"]
        assert {"ix_exchange_hits_created_at", "ix_exchange_hits_query_id"} <= set(indexes)
        with Session(engine) as session:
            kept = HitRepository(session).issued(limit=10)
        assert [(h.reference, h.query_id, h.created_at) for h in kept] == [
            (r["reference"], r["query_id"], r["created_at"]) for r in rows
        ]
        assert {h.state for h in kept} == {OutcomeState.PENDING}
        assert {h.outcome_at for h in kept} == {None}
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(
                insert(_hits(engine)).values({**_row("C" * 22, issued), "outcome": "maybe"})
            )
        with engine.begin() as conn:
            conn.execute(
                insert(_hits(engine)).values({**_row("D" * 22, issued), "outcome": "withdrawn"})
            )

        command.downgrade(alembic_config(engine), "0008")
        insp = inspect(engine)
        assert not OUTCOME_COLUMNS & {c["name"] for c in insp.get_columns("exchange_hits")}
        names = {i["name"] for i in insp.get_indexes("exchange_hits")}
        assert "ix_exchange_hits_record_ref" not in names
        assert "ix_exchange_hits_created_at" in names
        with engine.connect() as conn:
            after = [tuple(r) for r in conn.execute(select(_hits(engine)).order_by("reference"))]
        assert after[:2] == before and [r[0] for r in after[2:]] == ["D" * 22]
    finally:
        engine.dispose()


def test_an_outcome_is_not_written_over_one_recorded_meanwhile(engine: Engine) -> None:
    """Two operators read the pending hit; the second's write finds the first's outcome and
    changes nothing, so that its audit record cannot name a stale outcome as replaced."""
    reference = HitReferences(engine, SECRET).issue(uuid.uuid4(), "TH", "s1")
    at = datetime.now(UTC)
    with Session(engine) as first, Session(engine) as second:
        seen_first = HitRepository(first).by_reference(reference)
        seen_second = HitRepository(second).by_reference(reference)
        assert seen_first is not None and seen_second is not None
        assert HitRepository(first).record_outcome(
            seen_first, HitOutcome.CONFIRMED, at=at, by="user:anna", note="file 1"
        )
        first.commit()
        stale = HitRepository(second).record_outcome(
            seen_second, HitOutcome.NOT_CONFIRMED, at=at, by="user:ben", note=None
        )
        assert stale is False
        second.rollback()
        fresh = HitRepository(second).by_reference(reference)
        assert fresh is not None
        assert (fresh.outcome, fresh.outcome_by, fresh.note) == (
            HitOutcome.CONFIRMED,
            "user:anna",
            "file 1",
        )
        assert fresh.outcome_at == at
        later = at + timedelta(seconds=1)
        assert HitRepository(second).record_outcome(
            fresh, HitOutcome.NOT_CONFIRMED, at=later, by="user:ben", note=None
        )
        second.commit()
    with Session(engine) as session:
        done = HitRepository(session).by_reference(reference)
    assert done is not None
    assert (done.state, done.outcome_at, done.outcome_by, done.note) == (
        OutcomeState.NOT_CONFIRMED,
        later,
        "user:ben",
        None,
    )


def test_the_hits_of_a_subject_are_found_by_index(engine: Engine) -> None:
    """A subject's listing (``GET /subjects/{external_id}/hits``) reads the ``record_ref``
    index rather than every stored hit."""
    if engine.dialect.name != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's; PostgreSQL plans by its statistics")
    statements: list[str] = []

    def capture(conn: object, cursor: object, sql: str, *args: object) -> None:
        statements.append(sql)

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with Session(engine) as session:
            HitRepository(session).of_record("s1", limit=10)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    (sql,) = statements  # the listing's one statement, as the repository sends it
    params = ("s1", 10, 0)
    with engine.connect() as conn:
        plan = " ".join(
            str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)
        )
    assert "ix_exchange_hits_record_ref (record_ref=?)" in plan


def test_the_service_records_changes_audits_and_filters_outcomes(
    engine: Engine, sessions: sessionmaker[Session], galleries: GallerySet
) -> None:
    enrol(sessions, galleries, "case-1", 1)
    first, query_id = issue(engine, sessions, "case-1")
    second, _ = issue(engine, sessions, "case-1", "FR")
    with sessions() as session:
        service = HitService(session)
        done = service.record_outcome(first, HitOutcome.CONFIRMED, note="file 1", actor="user:a")
        assert (done.previous, done.hit.outcome, done.hit.outcome_by) == (
            None,
            HitOutcome.CONFIRMED,
            "user:a",
        )
        changed = service.record_outcome(first, HitOutcome.WITHDRAWN, note=None, actor="user:b")
        assert (changed.previous, changed.hit.state) == (
            HitOutcome.CONFIRMED,
            OutcomeState.WITHDRAWN,
        )
    with sessions() as session:
        service = HitService(session)
        for outcome, expected in (
            (OutcomeState.WITHDRAWN, [first]),
            (OutcomeState.PENDING, [second]),
            (OutcomeState.CONFIRMED, []),
            (None, [first, second]),
        ):
            listed = service.issued(
                requester=None, since=None, outcome=outcome, limit=10, actor="a"
            )
            assert [h.hit.reference for h in listed] == expected, outcome
            mine = service.of_subject("case-1", outcome=outcome, limit=10, actor="a")
            assert [h.hit.reference for h in mine] == expected, outcome
        resolved = service.resolve(first, actor="a").hit
        assert (resolved.outcome, resolved.outcome_by, resolved.note) == (
            HitOutcome.WITHDRAWN,
            "user:b",
            None,
        )
    with sessions() as session:
        RecordService(session, galleries).delete_subject("case-1", actor="user:op")
    with sessions() as session, pytest.raises(ConflictError) as refused:
        HitService(session).record_outcome(second, HitOutcome.CONFIRMED, note=None, actor="a")
    assert refused.value.reason == "subject_deleted"
    with sessions() as session:
        events = AuditRepository(session).list(action=OUTCOME_ACTION)
    assert [(e.actor, e.target, e.details) for e in events] == [
        (
            "user:a",
            first,
            {
                "outcome": "confirmed",
                "previous": None,
                "note": "file 1",
                "requester": "TH",
                "query_id": query_id,
            },
        ),
        (
            "user:b",
            first,
            {
                "outcome": "withdrawn",
                "previous": "confirmed",
                "note": None,
                "requester": "TH",
                "query_id": query_id,
            },
        ),
    ]


def test_an_outcome_is_never_recorded_after_its_subjects_deletion_committed(
    engine: Engine, sessions: sessionmaker[Session], galleries: GallerySet
) -> None:
    """A deletion of the subject is run just before the outcome's write, after its checks
    (the subject enrolled, not being deleted): it must wait for the outcome's transaction,
    so that the outcome is on record before the deletion, never after it. (On SQLite the
    checks were read outside the write's transaction, and the deletion committed between.)"""
    enrol(sessions, galleries, "case-1", 1)
    reference, _ = issue(engine, sessions, "case-1")
    deletion: list[object] = []

    def delete() -> None:
        try:
            with sessions() as session:
                RecordService(session, galleries).delete_subject("case-1", actor="user:op")
            deletion.append("done")
        except Exception as exc:  # reported by the assertion below
            deletion.append(exc)

    deleting = threading.Thread(target=delete)

    def delete_before_the_write(conn: object, cursor: object, sql: str, *args: object) -> None:
        if sql.startswith("UPDATE exchange_hits SET outcome=") and deleting.ident is None:
            deleting.start()
            deleting.join(DELETION_WAIT_S)  # done by now, unless it waits for the outcome

    event.listen(engine, "before_cursor_execute", delete_before_the_write)
    try:
        with sessions() as session:
            done = HitService(session).record_outcome(
                reference, HitOutcome.CONFIRMED, note=None, actor="user:a"
            )
    finally:
        event.remove(engine, "before_cursor_execute", delete_before_the_write)
        deleting.join()
    assert deletion == ["done"]
    assert done.hit.outcome is HitOutcome.CONFIRMED
    with sessions() as session:
        events = AuditRepository(session).list(limit=1000)
    order = [e.action for e in events if e.action in (OUTCOME_ACTION, "subject.delete")]
    assert order == [OUTCOME_ACTION, "subject.delete"]


#: Seconds the test above gives a deletion to commit before the outcome's write goes on.
DELETION_WAIT_S = 2.0


def test_an_outcome_expected_elsewhere_is_refused_and_nothing_recorded(
    engine: Engine, sessions: sessionmaker[Session], galleries: GallerySet
) -> None:
    enrol(sessions, galleries, "case-1", 1)
    reference, _ = issue(engine, sessions, "case-1")
    with sessions() as session:
        HitService(session).record_outcome(
            reference, HitOutcome.CONFIRMED, note="file 1", actor="user:a", expected=None
        )
    with sessions() as session, pytest.raises(ConflictError) as refused:
        HitService(session).record_outcome(
            reference,
            HitOutcome.WITHDRAWN,
            note=None,
            actor="user:b",
            expected=OutcomeState.PENDING,
        )
    assert refused.value.reason == "outcome_changed"
    assert "confirmed" in str(refused.value)
    with sessions() as session:
        done = HitService(session).record_outcome(
            reference,
            HitOutcome.WITHDRAWN,
            note=None,
            actor="user:b",
            expected=OutcomeState.CONFIRMED,
        )
        assert done.previous is HitOutcome.CONFIRMED
    with sessions() as session:
        events = AuditRepository(session).list(action=OUTCOME_ACTION)
    assert [(e.actor, e.details["outcome"]) for e in events] == [
        ("user:a", "confirmed"),
        ("user:b", "withdrawn"),
    ]
