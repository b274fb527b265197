"""``bdx subjects rename OLD NEW`` and ``PUT /subjects/{id}/external-id``: an operator corrects
a subject's external id through a running node; an id that ever named a subject is never
given again."""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from node_support import bearer, cli, enrol
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session, sessionmaker

from node.db.engine import create_db_engine
from node.db.migrate import upgrade
from node.db.models import AuditEvent, RetiredExternalId, Role, Subject
from node.exchange.references import HitReferences
from node.repositories.subjects import SubjectRepository
from node.services.erasure import finish_deletions
from node.services.galleries import GallerySet, subject_key
from node.services.records import RecordService

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def operator(
    live_server: str,
    make_token: object,
    sessions: sessionmaker[Session],
    galleries: GallerySet,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> list[str]:
    """Connection options of an operator; the node holds case-1 (2 records), case-2, case-3."""
    monkeypatch.delenv("BDX_TOKEN", raising=False)
    enrol(sessions, galleries, "case-1", 2)
    enrol(sessions, galleries, "case-2", 1)
    enrol(sessions, galleries, "case-3", 1)
    path = tmp_path / "token"
    path.write_text(make_token(Role.OPERATOR) + "\n")  # type: ignore[operator]
    return ["--url", live_server, "--token-file", str(path)]


def _id(sessions: sessionmaker[Session], external_id: str) -> int | None:
    with sessions() as s:
        return s.scalar(select(Subject.id).where(Subject.external_id == external_id))


def test_rename_keeps_records_and_hit_references(
    operator: list[str],
    engine: Engine,
    sessions: sessionmaker[Session],
    capsys: pytest.CaptureFixture[str],
) -> None:
    subject_id = _id(sessions, "case-1")
    assert subject_id is not None
    reference = HitReferences(engine, secrets.token_bytes(32)).issue(
        uuid.uuid4(), "TH", subject_key(subject_id)
    )
    code, out, err = cli(["subjects", "rename", "case-1", "case 1b", "--json", *operator], capsys)
    assert code == 0, err
    assert json.loads(out) == {"external_id": "case 1b", "previous": "case-1"}
    assert _id(sessions, "case 1b") == subject_id and _id(sessions, "case-1") is None
    code, out, err = cli(["subjects", "show", "case 1b", "--json", *operator], capsys)
    assert code == 0 and len(json.loads(out)["records"]) == 2
    code, _, err = cli(["subjects", "show", "case-1", *operator], capsys)
    assert code == 4
    code, out, err = cli(["subjects", "reference", reference, "--json", *operator], capsys)
    assert code == 0 and json.loads(out)["subject"] == "case 1b", err
    with sessions() as s:
        events = list(s.scalars(select(AuditEvent).where(AuditEvent.action == "subject.rename")))
    assert [(e.target, e.details) for e in events] == [("case-1", {"external_id": "case 1b"})]
    # the old id is retired: no rename takes it back
    code, _, err = cli(["subjects", "rename", "case-2", "case-1", *operator], capsys)
    assert code == 3 and "[external_id_used]" in err
    code, out, _ = cli(["subjects", "rename", "case 1b", "case-1c", *operator], capsys)
    assert code == 0 and out == "renamed subject case 1b to case-1c\n"


def test_an_id_in_use_or_used_once_is_refused(
    operator: list[str], sessions: sessionmaker[Session], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(["subjects", "rename", "case-1", "case-2", *operator], capsys)
    assert code == 3 and "[external_id_used]" in err  # taken
    code, _, err = cli(["subjects", "delete", "case-3", "--yes", *operator], capsys)
    assert code == 0, err
    code, _, err = cli(["subjects", "rename", "case-1", "case-3", *operator], capsys)
    assert code == 3 and "[external_id_used]" in err  # deleted
    code, _, err = cli(["subjects", "merge", "case-1", "case-2", "--yes", *operator], capsys)
    assert code == 0, err
    code, _, err = cli(["subjects", "rename", "case-1", "case-2", *operator], capsys)
    assert code == 3 and "[external_id_used]" in err  # merged away
    assert _id(sessions, "case-1") is not None
    with sessions() as s:
        assert s.scalar(select(AuditEvent).where(AuditEvent.action == "subject.rename")) is None


def test_a_deletion_from_the_audit_trail_alone_is_refused_too(
    operator: list[str], sessions: sessionmaker[Session], capsys: pytest.CaptureFixture[str]
) -> None:
    with sessions() as s:  # deleted before ids were retired (migration 0013)
        s.add(AuditEvent(actor="old", action="subject.delete", target="case-0", details={}))
        s.commit()
    code, _, err = cli(["subjects", "rename", "case-1", "case-0", *operator], capsys)
    assert code == 3 and "[external_id_used]" in err


def test_rename_refusals(
    operator: list[str],
    make_token: object,
    sessions: sessionmaker[Session],
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = cli(["subjects", "rename", "ghost", "case-9", *operator], capsys)
    assert code == 4 and "[unknown_subject]" in err
    code, _, err = cli(["subjects", "rename", "case-1", "case-1", *operator], capsys)
    assert code == 2
    code, _, err = cli(["subjects", "rename", "case-1", "a/b", *operator], capsys)
    assert code == 2 and "not an external id" in err
    # An argument whose bytes are not UTF-8 (b"new\xff": a lone surrogate) is no id either.
    code, _, err = cli(["subjects", "rename", "case-1", "new\udcff", *operator], capsys)
    assert code == 2 and "not an external id" in err
    url = operator[1]
    officer = make_token(Role.OFFICER)  # type: ignore[operator]
    refused = httpx.put(
        url + "/subjects/case-1/external-id",
        json={"external_id": "case-9"},
        headers=bearer(officer),
    )
    assert refused.status_code == 403
    code, _, err = cli(
        ["subjects", "rename", "case-1", "case-9", *operator[:2], "--token", officer], capsys
    )
    assert code == 5 and "[wrong_role]" in err
    token = Path(operator[3]).read_text().strip()
    bad = httpx.put(
        url + "/subjects/case-1/external-id", json={"external_id": " x"}, headers=bearer(token)
    )
    assert bad.status_code == 422
    assert _id(sessions, "case-1") is not None and _id(sessions, "case-9") is None


def test_migration_retires_the_ids_of_subjects_deleted_before_it(fresh_db_url: str) -> None:
    engine = create_db_engine(fresh_db_url)
    try:
        upgrade(engine, "0012")
        with engine.begin() as conn:
            conn.execute(insert(Subject.__table__).values(id=5, external_id="kept", created_at=NOW))
            for target in ("gone", "gone", "kept"):  # kept: enrolled again since
                conn.execute(
                    insert(AuditEvent.__table__).values(
                        occurred_at=NOW,
                        actor="op",
                        action="subject.delete",
                        target=target,
                        details={},
                    )
                )
        upgrade(engine)
        with Session(engine) as s:
            rows = s.scalars(select(RetiredExternalId)).all()
            assert [(r.external_id, r.how) for r in rows] == [("gone", "deleted")]
            assert rows[0].retired_at == NOW
    finally:
        engine.dispose()


def _block_writes(galleries: GallerySet) -> list[Path]:
    """Make each gallery's next write fail (EISDIR), as a full or read-only disk would."""
    blockers = []
    for gallery in galleries.galleries().values():
        blocker = gallery.directory / f"tomb-{gallery.generation + 1:010d}.npy"
        blocker.mkdir()
        blockers.append(blocker)
    return blockers


@pytest.mark.parametrize("finish", ["erasure task", "reconcile"])
def test_a_subject_being_deleted_is_not_renamed_and_its_id_is_retired(
    finish: str,
    operator: list[str],
    sessions: sessionmaker[Session],
    galleries: GallerySet,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A rename of a subject whose deletion had begun was accepted: the erasure task then
    deleted it under the new id, which was never retired (a rename could take it)."""
    blockers = _block_writes(galleries)
    code, _, err = cli(["subjects", "delete", "case-1", "--yes", *operator], capsys)
    assert code == 7 and "[storage_error]" in err
    code, _, err = cli(["subjects", "rename", "case-1", "case-1b", *operator], capsys)
    assert code == 3 and "[subject_busy]" in err, err
    assert _id(sessions, "case-1") is not None and _id(sessions, "case-1b") is None
    for blocker in blockers:
        blocker.rmdir()
    if finish == "erasure task":
        assert finish_deletions(galleries, sessions) == 2
    else:
        with sessions() as s:
            assert len(RecordService(s, galleries).reconcile().deleted) == 2
    assert _id(sessions, "case-1") is None
    with sessions() as s:
        retired = s.get(RetiredExternalId, "case-1")
        assert retired is not None and retired.how == "deleted"
        assert s.scalar(select(AuditEvent).where(AuditEvent.action == "subject.rename")) is None


@pytest.mark.parametrize("other", ["restrict", "rename", "merge"])
def test_a_subject_deleted_while_waited_for_is_not_found(
    other: str,
    operator: list[str],
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A restriction, rename or merge that waited for the subject's row lock while a deletion
    removed the row read the expired subject again: 500 internal_error (ObjectDeletedError)
    instead of not found (restrict, rename) or busy (merge)."""
    url, token = operator[1], Path(operator[3]).read_text().strip()
    deleting, go = threading.Event(), threading.Event()
    delete_if_empty = SubjectRepository.delete_if_empty

    def paused(self: SubjectRepository, subject: Subject) -> bool:  # holds the deletion open
        done = delete_if_empty(self, subject)
        deleting.set()
        go.wait(30)
        return done

    monkeypatch.setattr(SubjectRepository, "delete_if_empty", paused)
    calls = {
        "restrict": ("PUT", "/subjects/case-2/restrictions", {"no_exchange_consent": True}),
        "rename": ("PUT", "/subjects/case-2/external-id", {"external_id": "case-2b"}),
        "merge": ("POST", "/subjects/case-1/merge", {"duplicate": "case-2"}),
    }
    method, path, body = calls[other]
    answers: dict[str, httpx.Response] = {}

    def ask(name: str, method: str, path: str, body: object = None) -> None:
        answers[name] = httpx.request(
            method, url + path, json=body, headers=bearer(token), timeout=60
        )

    deletion = threading.Thread(target=ask, args=("delete", "DELETE", "/subjects/case-2"))
    deletion.start()
    try:
        assert deleting.wait(30)
        waiting = threading.Thread(target=ask, args=(other, method, path, body))
        waiting.start()
        time.sleep(1)  # it found the subject and waits for its lock
    finally:
        go.set()
        deletion.join()
    waiting.join()
    assert answers["delete"].status_code == 200, answers["delete"].text
    status, reason = (409, "subject_busy") if other == "merge" else (404, "unknown_subject")
    assert answers[other].status_code == status, answers[other].text
    assert answers[other].json()["error"] == reason
    assert _id(sessions, "case-2") is None and _id(sessions, "case-2b") is None
    assert _id(sessions, "case-1") is not None
