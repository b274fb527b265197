"""Resolving a hit reference for follow-up (:class:`node.services.hits.HitService`) on SQLite
and PostgreSQL: the reference issued by the exchange's own :class:`HitReferences`, the subject
then enrolled or erased, the resolution recorded in the audit trail. (Served between two real
nodes, through the API and the CLI: tests/exchange/test_hit_follow_up.py.)"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime

import pytest
from node_support import enrol
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from node.errors import NotFoundError
from node.exchange.references import HitReferences, well_formed
from node.repositories.audit import AuditRepository
from node.repositories.subjects import SubjectRepository
from node.service_errors import InternalServiceError
from node.services.galleries import GallerySet, subject_id_of, subject_key
from node.services.hits import RESOLVE_ACTION, HitService, HitSubjectState
from node.services.records import RecordService


def issue(engine: Engine, sessions: sessionmaker[Session], external_id: str) -> tuple[str, str]:
    """A reference to ``external_id`` as the responder issues it for TH's query; and the
    query id."""
    with sessions() as session:
        subject = SubjectRepository(session).by_external_id(external_id)
        assert subject is not None
        key = subject_key(subject.id)
    query_id = uuid.uuid4()
    return HitReferences(engine, secrets.token_bytes(32)).issue(query_id, "TH", key), str(query_id)


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
