"""Reads of users, subjects and records are recorded in the audit trail, as ``hit.list``,
``query.list``, ``quota.show`` and ``token.list`` are: ``GET /users`` and ``bdx users list``
(``user.list``: every user's token ids), ``GET /subjects`` and ``bdx subjects list``
(``subject.list``), ``GET /subjects/{id}`` and ``bdx subjects show`` (``subject.show``),
``GET /records/{ref}`` (``record.show``); never a token, hash or template. A refused read
records nothing; ``GET /users/me`` and ``GET /gallery/statistics`` (aggregates) are not
recorded. Over a real uvicorn server and the CLIs, on both databases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from node_support import bearer, cli, enrol
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from node.db.models import ApiToken, AuditEvent, Role, TemplateRecord
from node.services.galleries import GallerySet
from node.services.users import local_actor

READS = ("user.list", "subject.list", "subject.show", "record.show")


@pytest.fixture
def http(live_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server, timeout=30) as client:
        yield client


def recorded(sessions: sessionmaker[Session], since: int) -> list[tuple[str, str, Any, Any]]:
    """(actor, action, target, details) of the audit events after id ``since``."""
    with sessions() as s:
        rows = s.scalars(
            select(AuditEvent).where(AuditEvent.id > since).order_by(AuditEvent.id)
        ).all()
        return [(e.actor, e.action, e.target, e.details) for e in rows]


def last_id(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return max(s.scalars(select(AuditEvent.id)).all(), default=0)


def test_reading_users_is_audited_without_secrets(
    http: httpx.Client,
    make_token: Any,
    sessions: sessionmaker[Session],
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`GET /users` and `bdx users list` show every user's token ids: each is recorded as
    ``user.list`` (how many users and tokens), never a token or its hash; a refused one and
    `GET /users/me` are not."""
    root_token = make_token(Role.ADMIN, name="root")
    anna = make_token(Role.OFFICER, name="anna")
    make_token(Role.OFFICER, name="anna")
    with sessions() as s:
        hashes = s.scalars(select(ApiToken.token_hash)).all()
    start = last_id(sessions)
    r = http.get("/users", headers=bearer(root_token))
    assert r.status_code == 200 and len(r.json()) == 2
    assert http.get("/users", headers=bearer(anna)).status_code == 403
    assert http.get("/users/me", headers=bearer(root_token)).status_code == 200
    monkeypatch.setenv("BDX_DATABASE_URL", db_url)
    code, out, err = cli(["users", "list", "--json"], capsys)
    assert code == 0, err
    assert {u["name"]: len(u["tokens"]) for u in json.loads(out)} == {"root": 1, "anna": 2}
    details = {"returned": 2, "tokens": 3}
    events = recorded(sessions, start)
    assert events == [
        ("user:root", "user.list", None, details),
        (local_actor(), "user.list", None, details),
    ]
    text = json.dumps(events)
    assert all(t not in text for t in (root_token, anna, *hashes))


def test_reading_subjects_and_records_is_audited(
    http: httpx.Client,
    live_server: str,
    make_token: Any,
    sessions: sessionmaker[Session],
    galleries: GallerySet,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A page of subjects, a subject and a record, over the API or with `bdx subjects
    list/show`, are recorded (``subject.list``: the page and how many; ``subject.show``: the
    subject's id and how many records and encounters; ``record.show``: the reference), never
    a template; a subject or record not found, a refused read and the gallery's statistics
    are not."""
    monkeypatch.delenv("BDX_TOKEN", raising=False)
    enrol(sessions, galleries, "case-1", 2)
    enrol(sessions, galleries, "case-2", 1)
    with sessions() as s:
        ref = s.scalars(select(TemplateRecord.reference).order_by(TemplateRecord.id)).first()
    token = make_token(Role.OPERATOR, name="opa")
    officer = bearer(make_token(Role.OFFICER, name="anna"))
    op = bearer(token)
    start = last_id(sessions)
    assert http.get("/subjects", params={"limit": 1}, headers=op).status_code == 200
    assert http.get("/subjects/case-1", headers=op).status_code == 200
    assert http.get(f"/records/{ref}", headers=op).status_code == 200
    assert http.get("/subjects/nobody", headers=op).status_code == 404
    assert http.get("/records/nothing", headers=op).status_code == 404
    for path in ("/subjects", "/subjects/case-1", f"/records/{ref}"):
        assert http.get(path, headers=officer).status_code == 403
    assert http.get("/gallery/statistics", headers=op).status_code == 200
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    options = ["--url", live_server, "--token-file", str(token_file)]
    assert cli(["subjects", "list", *options], capsys)[0] == 0
    assert cli(["subjects", "show", "case-2", "--json", *options], capsys)[0] == 0
    assert cli(["subjects", "show", "nobody", *options], capsys)[0] == 4
    shown = {"records": 2, "encounters": 1}
    assert recorded(sessions, start) == [
        ("user:opa", "subject.list", None, {"limit": 1, "after": 0, "returned": 1}),
        ("user:opa", "subject.show", "case-1", shown),
        ("user:opa", "record.show", ref, {}),
        ("user:opa", "subject.list", None, {"limit": 100, "after": 0, "returned": 2}),
        ("user:opa", "subject.show", "case-2", {"records": 1, "encounters": 1}),
    ]
