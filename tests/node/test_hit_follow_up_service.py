"""Resolving a hit reference for follow-up (:class:`node.services.hits.HitService`) on SQLite
and PostgreSQL: the reference issued by the exchange's own :class:`HitReferences`, the subject
then enrolled or erased, the resolution recorded in the audit trail; and listing the stored
hits by subject and by requesting country since a time, each listing recorded. (Served between
two real nodes, through the API and the CLI: tests/exchange/test_hit_follow_up.py.)"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from node_support import enrol
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session, sessionmaker

from node.errors import NotFoundError
from node.exchange.references import HitReferences, exchange_hits, well_formed
from node.repositories.audit import AuditRepository
from node.repositories.subjects import SubjectRepository
from node.service_errors import InternalServiceError
from node.services.galleries import GallerySet, subject_id_of, subject_key
from node.services.hits import LIST_ACTION, RESOLVE_ACTION, HitService, HitSubjectState
from node.services.records import RecordService


def issue(
    engine: Engine, sessions: sessionmaker[Session], external_id: str, requester: str = "TH"
) -> tuple[str, str]:
    """A reference to ``external_id`` as the responder issues it for ``requester``'s query;
    and the query id."""
    with sessions() as session:
        subject = SubjectRepository(session).by_external_id(external_id)
        assert subject is not None
        key = subject_key(subject.id)
    query_id = uuid.uuid4()
    issued = HitReferences(engine, secrets.token_bytes(32)).issue(query_id, requester, key)
    return issued, str(query_id)


def test_a_reference_resolves_to_its_subject_and_the_resolution_is_recorded(
    engine: Engine, sessions: sessionmaker[Session], galleries: GallerySet
) -> None:
    enrol(sessions, galleries, "case-1", 2)
    before = datetime.now(UTC)
    reference, query_id = issue(engine, sessions, "case-1")
    with sessions() as session:
        found = HitService(session).resolve(reference, actor="user:op")
        assert found.subject is not None and found.subject.external_id == "case-1"
        assert (found.hit.query_id, found.hit.requester) == (query_id, "TH")
        assert found.hit.created_at.tzinfo is not None  # SQLite hands it back without a zone
        assert before <= found.hit.created_at <= datetime.now(UTC)
        assert found.state is HitSubjectState.ACTIVE and len(found.records) == 2
    with sessions() as session:
        (event,) = AuditRepository(session).list(action=RESOLVE_ACTION)
        assert (event.actor, event.target) == ("user:op", reference)
        assert event.details == {
            "requester": "TH",
            "query_id": query_id,
            "subject": "case-1",
            "state": "active",
        }


def test_a_subject_erased_since_is_deleted_never_another_person(
    engine: Engine, sessions: sessionmaker[Session], galleries: GallerySet
) -> None:
    """Subject ids are never re-used: a subject enrolled after the erasure is not the one the
    reference names."""
    enrol(sessions, galleries, "case-1", 1)
    reference, _ = issue(engine, sessions, "case-1")
    with sessions() as session:
        RecordService(session, galleries).delete_subject("case-1", actor="user:op")
    enrol(sessions, galleries, "case-2", 1)
    with sessions() as session:
        found = HitService(session).resolve(reference, actor="user:op")
        assert (found.subject, found.records, found.state) == (None, (), HitSubjectState.DELETED)
    with sessions() as session:
        (event,) = AuditRepository(session).list(action=RESOLVE_ACTION)
        assert event.details["subject"] is None and event.details["state"] == "deleted"


@pytest.mark.parametrize("reference", ["A" * 22, "A" * 21, "A" * 23, "A" * 20 + "==", ""])
def test_a_reference_never_issued_is_not_found_and_not_recorded(
    engine: Engine, sessions: sessionmaker[Session], reference: str
) -> None:
    with sessions() as session, pytest.raises(NotFoundError) as raised:
        HitService(session).resolve(reference, actor="user:op")
    assert raised.value.reason == "unknown_reference"
    with sessions() as session:
        assert AuditRepository(session).list(action=RESOLVE_ACTION) == []


def test_a_stored_hit_that_names_no_subject_key_is_an_internal_error(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    """The responder stores subject keys only: anything else is this node's fault, said so
    rather than answered as some subject or as deleted."""
    reference = HitReferences(engine, secrets.token_bytes(32)).issue(uuid.uuid4(), "TH", "rec-1")
    with sessions() as session, pytest.raises(InternalServiceError):
        HitService(session).resolve(reference, actor="user:op")


def test_references_and_subject_keys_have_one_shape() -> None:
    assert well_formed("A-_z09" + "B" * 16) and not well_formed("A" * 21 + "=")
    assert not well_formed("A" * 22 + "\n") and not well_formed("Ａ" * 22)
    assert [subject_id_of(subject_key(n)) for n in (1, 42)] == [1, 42]
    for key in ("s", "s0", "s01", "42", "s-1", "s1 ", "s٣", "rec-1"):
        assert subject_id_of(key) is None, key


def test_stored_hits_are_listed_by_subject_and_by_requester_since_a_time(
    engine: Engine, sessions: sessionmaker[Session], galleries: GallerySet
) -> None:
    enrol(sessions, galleries, "case-1", 1)
    enrol(sessions, galleries, "case-2", 1)
    t0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
    hits = [
        issue(engine, sessions, "case-1")[0],
        issue(engine, sessions, "case-2")[0],
        issue(engine, sessions, "case-1", "FR")[0],
    ]
    with engine.begin() as conn:  # issued an hour apart, the first at t0
        for n, ref in enumerate(hits):
            at = t0 + timedelta(hours=n)
            conn.execute(
                update(exchange_hits).where(exchange_hits.c.reference == ref).values(created_at=at)
            )
    with sessions() as session:
        service = HitService(session)
        mine = service.of_subject("case-1", limit=10, actor="user:op")
        assert [(h.hit.reference, h.hit.requester) for h in mine] == [
            (hits[0], "TH"),
            (hits[2], "FR"),
        ]
        assert mine[0].hit.created_at == t0
        assert {(h.subject.external_id if h.subject else None, h.state) for h in mine} == {
            ("case-1", HitSubjectState.ACTIVE)
        }
        page = service.of_subject("case-1", limit=1, offset=1, actor="user:op")
        assert [h.hit.reference for h in page] == [hits[2]]
        th = service.issued(requester="TH", since=t0 + timedelta(minutes=30), limit=10, actor="a")
        assert [h.hit.reference for h in th] == [hits[1]]
        assert th[0].subject is not None and th[0].subject.external_id == "case-2"
        # `since` is inclusive; no requester: every country's.
        every = service.issued(requester=None, since=t0 + timedelta(hours=1), limit=10, actor="a")
        assert [h.hit.reference for h in every] == hits[1:]
        paged = service.issued(requester=None, since=None, limit=2, offset=1, actor="a")
        assert [h.hit.reference for h in paged] == hits[1:]
    with sessions() as session:
        events = AuditRepository(session).list(action=LIST_ACTION)
        assert [(e.actor, e.target, e.details["returned"]) for e in events] == [
            ("user:op", "case-1", 2),
            ("user:op", "case-1", 1),
            ("a", "TH", 1),
            ("a", None, 2),
            ("a", None, 2),
        ]
        assert events[2].details == {
            "requester": "TH",
            "since": "2026-03-01T12:30:00+00:00",
            "outcome": None,
            "limit": 10,
            "after": None,
            "offset": 0,
            "returned": 1,
        }
    with sessions() as session:
        RecordService(session, galleries).delete_subject("case-2", actor="user:op")
    with sessions() as session:
        service = HitService(session)
        (gone,) = service.issued(requester="TH", since=t0 + timedelta(hours=1), limit=10, actor="a")
        assert (gone.hit.reference, gone.subject, gone.state) == (
            hits[1],
            None,
            HitSubjectState.DELETED,
        )
        with pytest.raises(NotFoundError) as raised:
            service.of_subject("case-2", limit=10, actor="user:op")
        assert raised.value.reason == "unknown_subject"
    with sessions() as session:
        assert len(AuditRepository(session).list(action=LIST_ACTION)) == 6
