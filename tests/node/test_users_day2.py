"""Day-2 user administration: enable a disabled user again, change a user's role (never leaving
the node without an active admin over the API), list a user's tokens with their last use (its
write throttled, its failure harmless), over a real uvicorn server and with `bdx users`."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import psycopg
import pytest
import uvicorn
from alembic import command
from fastapi import FastAPI
from node_support import bearer, cli, free_port
from sqlalchemy import Engine, MetaData, delete, event, insert, inspect, select, update
from sqlalchemy.orm import Session, sessionmaker

from node.db.engine import create_db_engine
from node.db.engine import session_factory as sessions_of
from node.db.migrate import alembic_config, current_revision, upgrade
from node.db.models import ApiToken, AuditEvent, Role, User
from node.service_errors import ConflictError, PermissionDeniedError
from node.services.users import TokenUses, UserService, recording_token_uses

TOKEN_FIELDS = {
    "token_id",
    "created_at",
    "expires_at",
    "expires_in",
    "revoked_at",
    "last_used_at",
}


@pytest.fixture
def http(live_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server, timeout=30) as client:
        yield client


@pytest.fixture
def admin(make_token: Any) -> dict[str, str]:
    return bearer(make_token(Role.ADMIN, name="root"))


def error(response: httpx.Response, status: int, reason: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"] == reason, body
    return str(body["detail"])


def events(sessions: sessionmaker[Session], *actions: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(actor, target, details) of the audit events of ``actions``, oldest first."""
    with sessions() as s:
        rows = s.scalars(
            select(AuditEvent).where(AuditEvent.action.in_(actions)).order_by(AuditEvent.id)
        ).all()
        return [(e.actor, f"{e.action} {e.target}", e.details) for e in rows]


def token_row(sessions: sessionmaker[Session], token: str) -> ApiToken:
    with sessions() as s:
        return s.scalars(select(ApiToken).where(ApiToken.token_id == token.split("_")[1])).one()


# ------------------------------------------------------------------------ enable


def test_enable_brings_a_disabled_user_back_under_the_same_name(
    http: httpx.Client,
    admin: dict[str, str],
    make_token: Any,
    sessions: sessionmaker[Session],
) -> None:
    token = make_token(Role.OPERATOR, name="op")
    token_id = token.split("_")[1]
    assert http.post("/users/op/disable", headers=admin).json()["active"] is False
    error(http.get("/subjects", headers=bearer(token)), 401, "user_disabled")

    r = http.post("/users/op/enable", headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["name"], body["role"], body["active"]) == ("op", "operator", True)
    assert [t["token_id"] for t in body["tokens"]] == [token_id]
    assert http.get("/subjects", headers=bearer(token)).status_code == 200
    # Again, as disable again: the same answer, recorded again.
    again = http.post("/users/op/enable", headers=admin).json()
    assert {k: again[k] for k in ("name", "role", "active")} == {
        k: body[k] for k in ("name", "role", "active")
    }
    assert events(sessions, "user.disable", "user.enable") == [
        ("user:root", "user.disable op", {}),
        ("user:root", "user.enable op", {"tokens": [token_id]}),
        ("user:root", "user.enable op", {"tokens": [token_id]}),
    ]


def test_enable_records_only_the_tokens_that_work_again(
    http: httpx.Client, admin: dict[str, str], make_token: Any, sessions: sessionmaker[Session]
) -> None:
    revoked = make_token(Role.OFFICER, name="anna").split("_")[1]
    expired = make_token(Role.OFFICER, name="anna").split("_")[1]
    live = make_token(Role.OFFICER, name="anna").split("_")[1]
    assert http.delete(f"/tokens/{revoked}", headers=admin).status_code == 200
    with sessions() as s:
        past = datetime.now(UTC) - timedelta(seconds=1)
        s.execute(update(ApiToken).where(ApiToken.token_id == expired).values(expires_at=past))
        s.commit()
    assert http.post("/users/anna/disable", headers=admin).status_code == 200
    assert http.post("/users/anna/enable", headers=admin).status_code == 200
    assert events(sessions, "user.enable") == [
        ("user:root", "user.enable anna", {"tokens": [live]})
    ]


def test_enable_an_unknown_user(http: httpx.Client, admin: dict[str, str]) -> None:
    assert "'ghost'" in error(http.post("/users/ghost/enable", headers=admin), 404, "unknown_user")


# ------------------------------------------------------------------------ role


def test_role_change_takes_effect_on_the_users_tokens_and_is_audited(
    http: httpx.Client, admin: dict[str, str], make_token: Any, sessions: sessionmaker[Session]
) -> None:
    token = bearer(make_token(Role.OFFICER, name="anna"))
    assert http.get("/users/me", headers=token).json()["role"] == "officer"
    error(http.get("/subjects", headers=token), 403, "wrong_role")

    r = http.put("/users/anna/role", headers=admin, json={"role": "operator"})
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["role"], r.json()["active"]) == ("anna", "operator", True)
    assert http.get("/users/me", headers=token).json()["role"] == "operator"
    assert http.get("/subjects", headers=token).status_code == 200
    # The same role again: the same answer, recorded again.
    again = http.put("/users/anna/role", headers=admin, json={"role": "operator"})
    assert again.json() == r.json()
    assert events(sessions, "user.role") == [
        ("user:root", "user.role anna", {"previous_role": "officer", "role": "operator"}),
        ("user:root", "user.role anna", {"previous_role": "operator", "role": "operator"}),
    ]


def test_role_of_an_unknown_user(http: httpx.Client, admin: dict[str, str]) -> None:
    r = http.put("/users/ghost/role", headers=admin, json={"role": "auditor"})
    assert "'ghost'" in error(r, 404, "unknown_user")


@pytest.mark.parametrize(
    "body",
    [{"role": "king"}, {"role": "Admin"}, {}, {"role": "auditor", "active": True}],
    ids=["unknown", "capitalised", "missing", "extra_field"],
)
def test_role_refuses_a_bad_body(
    http: httpx.Client,
    admin: dict[str, str],
    make_token: Any,
    sessions: sessionmaker[Session],
    body: dict[str, Any],
) -> None:
    make_token(Role.OFFICER, name="anna")
    error(http.put("/users/anna/role", headers=admin, json=body), 422, "invalid_request")
    with sessions() as s:
        assert s.scalars(select(User.role).where(User.name == "anna")).one() is Role.OFFICER
    assert events(sessions, "user.role") == []


# ------------------------------------------------------------------------ roles allowed


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.OFFICER, Role.AUDITOR])
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/users/anna/enable"), ("PUT", "/users/anna/role"), ("GET", "/users/anna/tokens")],
)
def test_only_admins_manage_users(
    http: httpx.Client,
    make_token: Any,
    sessions: sessionmaker[Session],
    role: Role,
    method: str,
    path: str,
) -> None:
    make_token(Role.OFFICER, name="anna")
    caller = bearer(make_token(role))
    r = http.request(method, path, headers=caller, json={"role": "admin"})
    assert f"role {role.value} may not do this" in error(r, 403, "wrong_role")
    with sessions() as s:
        anna = s.scalars(select(User).where(User.name == "anna")).one()
        assert (anna.role, anna.active) == (Role.OFFICER, True)
    assert events(sessions, "user.role", "user.enable") == []


# ------------------------------------------------------------------------ last admin


def test_the_only_admin_cannot_demote_or_disable_themselves(
    http: httpx.Client, admin: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    r = http.put("/users/root/role", headers=admin, json={"role": "operator"})
    assert "without an active admin" in error(r, 409, "last_admin")
    error(http.post("/users/root/disable", headers=admin), 409, "last_admin")
    # The refusals changed nothing and recorded nothing; root is still the admin.
    assert http.get("/users/me", headers=admin).json() == {"name": "root", "role": "admin"}
    assert events(sessions, "user.role", "user.disable") == []
    # The same role is no demotion: answered, recorded.
    r = http.put("/users/root/role", headers=admin, json={"role": "admin"})
    assert r.status_code == 200 and r.json()["role"] == "admin"


def test_a_disabled_admin_does_not_count(
    http: httpx.Client, admin: dict[str, str], make_token: Any
) -> None:
    make_token(Role.ADMIN, name="old")
    assert http.post("/users/old/disable", headers=admin).status_code == 200
    r = http.put("/users/root/role", headers=admin, json={"role": "auditor"})
    error(r, 409, "last_admin")


@pytest.mark.parametrize("state", ["no_token", "revoked", "expired"])
def test_an_admin_without_a_live_token_does_not_count(
    http: httpx.Client,
    admin: dict[str, str],
    make_token: Any,
    sessions: sessionmaker[Session],
    state: str,
) -> None:
    """root makes second admin, but second holds no token neither revoked nor expired, and
    cannot get one over the API (that needs an admin): root may neither step down nor
    disable themselves. Once second holds a live token, root may."""
    if state == "no_token":
        r = http.post("/users", headers=admin, json={"name": "second", "role": "admin"})
        assert r.status_code == 201, r.text
    else:
        token_id = make_token(Role.ADMIN, name="second").split("_")[1]
        if state == "revoked":
            assert http.delete(f"/tokens/{token_id}", headers=admin).status_code == 200
        else:
            with sessions() as s:
                past = datetime.now(UTC) - timedelta(seconds=1)
                s.execute(
                    update(ApiToken).where(ApiToken.token_id == token_id).values(expires_at=past)
                )
                s.commit()
    r = http.put("/users/root/role", headers=admin, json={"role": "operator"})
    detail = error(r, 409, "last_admin")
    assert "who can use the API" in detail and "issue them a token first" in detail, detail
    error(http.post("/users/root/disable", headers=admin), 409, "last_admin")
    assert http.get("/users/me", headers=admin).json() == {"name": "root", "role": "admin"}
    assert events(sessions, "user.role", "user.disable") == []

    assert http.post("/users/second/tokens", headers=admin, json={}).status_code == 201
    r = http.put("/users/root/role", headers=admin, json={"role": "operator"})
    assert r.status_code == 200 and r.json()["role"] == "operator"


def test_an_admin_steps_down_while_another_stays(
    http: httpx.Client, admin: dict[str, str], make_token: Any, sessions: sessionmaker[Session]
) -> None:
    second = bearer(make_token(Role.ADMIN, name="second"))
    r = http.put("/users/root/role", headers=admin, json={"role": "auditor"})
    assert r.status_code == 200 and r.json()["role"] == "auditor"
    error(http.get("/users", headers=admin), 403, "wrong_role")  # root's token: auditor now
    # second is the last admin now: neither demoted nor disabled, by themselves.
    error(http.post("/users/second/disable", headers=second), 409, "last_admin")
    error(
        http.put("/users/second/role", headers=second, json={"role": "officer"}), 409, "last_admin"
    )
    # Once root is admin again, second may go.
    assert http.put("/users/root/role", headers=second, json={"role": "admin"}).status_code == 200
    assert http.post("/users/second/disable", headers=second).json()["active"] is False
    assert events(sessions, "user.role", "user.disable") == [
        ("user:root", "user.role root", {"previous_role": "admin", "role": "auditor"}),
        ("user:second", "user.role root", {"previous_role": "auditor", "role": "admin"}),
        ("user:second", "user.disable second", {}),
    ]


def test_two_admins_demoting_each_other_at_once_leave_one(
    sessions: sessionmaker[Session],
) -> None:
    """root and second, the only admins, demote each other at the same moment: each check
    saw the other still admin and both changes committed (SQLite runs a read outside any
    transaction; PostgreSQL reads what is committed), leaving no admin. The second change
    runs, in another thread, while the first holds its lock: it waits for the first to
    commit (the join gives up after a second), then sees root alone and is refused."""
    with sessions() as s:
        users = UserService(s)
        for name in ("root", "second"):
            users.add_user(name, Role.ADMIN, actor="t")
            users.issue_token(name, expires_days=1, actor="t")
    outcome: list[str] = []

    def demote_root() -> None:
        with sessions() as s:
            try:
                UserService(s).set_role("root", Role.AUDITOR, actor="user:second")
                outcome.append("demoted")
            except ConflictError as exc:
                outcome.append(exc.reason)

    other = threading.Thread(target=demote_root)

    def meanwhile(*_: object) -> None:
        other.start()
        other.join(timeout=1)

    with sessions() as first:
        event.listen(first, "before_flush", meanwhile, once=True)
        UserService(first).set_role("second", Role.AUDITOR, actor="user:root")
    other.join(timeout=30)
    assert outcome == ["last_admin"]
    with sessions() as s:
        admins = s.scalars(select(User.name).where(User.role == Role.ADMIN)).all()
        assert admins == ["root"]
        assert events(sessions, "user.role") == [
            ("user:root", "user.role second", {"previous_role": "admin", "role": "auditor"})
        ]


def _admins_and_officer(sessions: sessionmaker[Session]) -> tuple[int, str]:
    """root and anna, admins with a token each, and x, an officer: root's user id and
    anna's token."""
    with sessions() as s:
        users = UserService(s)
        root = users.add_user("root", Role.ADMIN, actor="t").id
        users.issue_token("root", expires_days=1, actor="t")
        users.add_user("anna", Role.ADMIN, actor="t")
        token = users.issue_token("anna", expires_days=1, actor="t").token
        users.add_user("x", Role.OFFICER, actor="t")
        return root, token


@pytest.mark.parametrize("meanwhile", ["demoted", "disabled"])
@pytest.mark.parametrize("action", ["make_admin", "make_auditor", "disable"])
def test_an_admin_demoted_while_their_request_runs_changes_nothing(
    sessions: sessionmaker[Session], meanwhile: str, action: str
) -> None:
    """anna's request authenticated her as admin; root demotes or disables her before the
    request's change runs: the change, checked again under the lock, is refused (403
    wrong_role), changes nothing and records nothing (it went through, a promotion too)."""
    root, token = _admins_and_officer(sessions)
    with sessions() as s:
        anna = UserService(s).authenticate(token)
    assert anna.role is Role.ADMIN
    with sessions() as s:
        if meanwhile == "demoted":
            UserService(s).set_role("anna", Role.OPERATOR, actor="user:root", caller=root)
        else:
            UserService(s).disable_user("anna", actor="user:root", caller=root)

    with sessions() as s:
        service = UserService(s)
        with pytest.raises(PermissionDeniedError) as refused:
            if action == "disable":
                service.disable_user("x", actor="user:anna", caller=anna.user_id)
            else:
                role = Role.ADMIN if action == "make_admin" else Role.AUDITOR
                service.set_role("x", role, actor="user:anna", caller=anna.user_id)
        assert refused.value.reason == "wrong_role"
        assert "no longer an active admin" in refused.value.message
    with sessions() as s:
        x = s.scalars(select(User).where(User.name == "x")).one()
        assert (x.role, x.active) == (Role.OFFICER, True)
        # The lock was let go: another change goes through at once.
        UserService(s).set_role("x", Role.AUDITOR, actor="user:root", caller=root)
    assert [e for e in events(sessions, "user.role", "user.disable") if e[0] == "user:anna"] == []


def test_a_role_change_records_the_role_the_user_had_when_it_ran(
    sessions: sessionmaker[Session],
) -> None:
    """The request read anna (an officer) before root made her admin; its own change to
    admin records and answers her role as it was when the change ran: admin, unchanged (it
    recorded officer, read before, and the admin path took no lock)."""
    root, _ = _admins_and_officer(sessions)
    with sessions() as s:
        UserService(s).add_user("bob", Role.OFFICER, actor="t")
    with sessions() as first:
        service = UserService(first)
        assert service.get("bob").role is Role.OFFICER
        with sessions() as other:
            UserService(other).set_role("bob", Role.ADMIN, actor="user:root", caller=root)
        done = service.set_role("bob", Role.ADMIN, actor="user:anna")
        assert (done.user.role, done.previous) == (Role.ADMIN, Role.ADMIN)
    assert events(sessions, "user.role") == [
        ("user:root", "user.role bob", {"previous_role": "officer", "role": "admin"}),
        ("user:anna", "user.role bob", {"previous_role": "admin", "role": "admin"}),
    ]


def test_users_cli_says_an_unchanged_role_is_unchanged(
    session: Session,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BDX_DATABASE_URL", db_url)
    assert cli(["users", "add", "anna", "--role", "officer"], capsys)[0] == 0
    assert cli(["users", "role", "anna", "officer"], capsys)[:2] == (
        0,
        "anna: officer already (unchanged, recorded again)\n",
    )
    code, out, _ = cli(["users", "role", "anna", "officer", "--json"], capsys)
    assert code == 0 and json.loads(out)["previous_role"] == "officer"


def test_openapi_documents_the_new_routes(http: httpx.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    assert paths["/users/{name}/enable"]["post"]["description"] == "Role: admin."
    assert paths["/users/{name}/tokens"]["get"]["description"] == "Role: admin."
    role = paths["/users/{name}/role"]["put"]
    assert role["description"] == "Role: admin."
    assert role["responses"]["409"]["description"].startswith("last_admin")
    body = role["responses"]["409"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ErrorBody"}


# ------------------------------------------------------------------------ tokens


def test_token_listing_shows_ids_times_and_last_use_never_secrets(
    http: httpx.Client,
    admin: dict[str, str],
    make_token: Any,
    app: FastAPI,
    sessions: sessionmaker[Session],
) -> None:
    first = make_token(Role.OFFICER, name="anna")
    second = make_token(Role.OFFICER, name="anna")
    ids = [first.split("_")[1], second.split("_")[1]]
    assert http.delete(f"/tokens/{ids[0]}", headers=admin).status_code == 200

    listing = http.get("/users/anna/tokens", headers=admin).json()
    assert [t["token_id"] for t in listing] == ids
    assert all(set(t) == TOKEN_FIELDS for t in listing)
    assert listing[0]["revoked_at"] is not None and listing[1]["revoked_at"] is None
    assert [t["last_used_at"] for t in listing] == [None, None]
    for t in listing:
        assert datetime.fromisoformat(t["created_at"]) < datetime.fromisoformat(t["expires_at"])
    assert second not in json.dumps(listing) and second.split("_", 2)[2] not in json.dumps(listing)

    before = datetime.now(UTC)
    assert http.get("/users/me", headers=bearer(second)).status_code == 200
    app.state.token_uses.flush(sessions)  # what the node does every TOKEN_USE_INTERVAL_S
    listing = http.get("/users/anna/tokens", headers=admin).json()
    assert listing[0]["last_used_at"] is None
    used = datetime.fromisoformat(listing[1]["last_used_at"])
    assert before <= used <= datetime.now(UTC)
    # /users carries the last use too.
    users = {u["name"]: u for u in http.get("/users", headers=admin).json()}
    assert users["anna"]["tokens"][1]["last_used_at"] == listing[1]["last_used_at"]


def test_token_listing_of_an_unknown_user(http: httpx.Client, admin: dict[str, str]) -> None:
    error(http.get("/users/ghost/tokens", headers=admin), 404, "unknown_user")


def test_a_failed_authentication_records_no_use(
    http: httpx.Client, make_token: Any, sessions: sessionmaker[Session]
) -> None:
    token = make_token(Role.OFFICER, name="anna")
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    error(http.get("/users/me", headers=bearer(forged)), 401, "unknown_token")
    assert token_row(sessions, token).last_used_at is None


@contextmanager
def token_writes(engine: Engine) -> Iterator[list[str]]:
    """The UPDATE statements on api_tokens the engine runs meanwhile."""
    seen: list[str] = []

    def before(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("UPDATE API_TOKENS"):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def test_requests_only_note_the_use_and_a_flush_writes_it_in_one_statement(
    http: httpx.Client,
    make_token: Any,
    app: FastAPI,
    engine: Engine,
    sessions: sessionmaker[Session],
) -> None:
    """Requests write nothing; the flush writes the uses of every token used meanwhile in one
    UPDATE; with nothing used since, the next flush writes nothing."""
    tokens = [make_token(Role.OFFICER, name="anna"), make_token(Role.OFFICER, name="bob")]
    before = datetime.now(UTC)
    with token_writes(engine) as writes:
        for _ in range(5):
            for token in tokens:
                assert http.get("/users/me", headers=bearer(token)).status_code == 200
    assert writes == []
    assert set(app.state.token_uses.pending()) == {t.split("_")[1] for t in tokens}
    assert all(token_row(sessions, t).last_used_at is None for t in tokens)

    with token_writes(engine) as writes:
        assert app.state.token_uses.flush(sessions) == 2
        assert app.state.token_uses.flush(sessions) == 0
    assert len(writes) == 1
    assert app.state.token_uses.pending() == {}
    for token in tokens:
        used = token_row(sessions, token).last_used_at
        assert used is not None and before <= used <= datetime.now(UTC)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_a_flush_never_moves_a_last_use_back(
    session: Session, sessions: sessionmaker[Session]
) -> None:
    """A use noted earlier than the one recorded (two nodes on one database, or a clock set
    back) leaves the recorded one; the latest of the uses noted between flushes is written."""
    clock, uses = Clock(), TokenUses()
    users = UserService(session, clock=clock, uses=uses)
    users.add_user("anna", Role.OFFICER, actor="t")
    issued = users.issue_token("anna", expires_days=30, actor="t")
    start = clock.now
    users.authenticate(issued.token)
    clock.now = start + timedelta(seconds=5)
    users.authenticate(issued.token)
    clock.now = start + timedelta(seconds=3)  # noted after the later one: not kept over it
    users.authenticate(issued.token)
    assert uses.pending() == {issued.token_id: start + timedelta(seconds=5)}
    assert uses.flush(sessions) == 1
    assert token_row(sessions, issued.token).last_used_at == start + timedelta(seconds=5)

    clock.now = start
    users.authenticate(issued.token)
    uses.flush(sessions)
    assert token_row(sessions, issued.token).last_used_at == start + timedelta(seconds=5)


@contextmanager
def writer_holding_the_token(engine: Engine, token_id: str) -> Iterator[None]:
    """Another connection holding the lock the last-use write needs: SQLite's write lock, or
    the token's row on PostgreSQL; released on exit."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        conn = sqlite3.connect(str(url.database), isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        return
    options = dict(url.query).get("options")
    conninfo = url.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
    with psycopg.connect(conninfo, options=str(options or "")) as conn:
        conn.execute("SELECT id FROM api_tokens WHERE token_id = %s FOR UPDATE", (token_id,))
        yield
        conn.rollback()


def test_a_held_write_lock_delays_no_request(
    http: httpx.Client,
    make_token: Any,
    app: FastAPI,
    engine: Engine,
    sessions: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another writer holds the lock a last-use write needs while a token whose use is due
    makes requests: none of them tries the write (each waited a quarter second for the lock,
    holding a worker thread, and logged a WARNING), and the uses wait in memory."""
    token = make_token(Role.OFFICER, name="anna")
    token_id = token.split("_")[1]
    caplog.set_level(logging.WARNING, logger="node.services.users")
    with writer_holding_the_token(engine, token_id), token_writes(engine) as writes:
        for _ in range(8):
            r = http.get("/users/me", headers=bearer(token))
            assert r.status_code == 200 and r.json() == {"name": "anna", "role": "officer"}
    assert writes == []
    assert caplog.messages == []
    assert list(app.state.token_uses.pending()) == [token_id]
    assert token_row(sessions, token).last_used_at is None


def test_a_failed_flush_keeps_the_uses_for_the_next(
    session: Session,
    sessions: sessionmaker[Session],
    engine: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The flush cannot take the lock: one WARNING names the token by its public id (never
    its secret), nothing is written, and the use, with one noted meanwhile, is written by the
    next flush once the lock is free."""
    clock, uses = Clock(), TokenUses()
    users = UserService(session, clock=clock, uses=uses)
    users.add_user("anna", Role.OFFICER, actor="t")
    issued = users.issue_token("anna", expires_days=30, actor="t")
    other = users.issue_token("anna", expires_days=30, actor="t")
    users.authenticate(issued.token)
    session.rollback()
    caplog.set_level(logging.WARNING, logger="node.services.users")
    with writer_holding_the_token(engine, issued.token_id):
        assert uses.flush(sessions, lock_wait_s=0.1) == 0
    assert token_row(sessions, issued.token).last_used_at is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and issued.token_id in warnings[0], warnings
    assert issued.token.split("_", 2)[2] not in caplog.text
    assert uses.pending() == {issued.token_id: clock.now}

    clock.now += timedelta(seconds=1)
    users.authenticate(other.token)
    session.rollback()
    assert uses.flush(sessions) == 2
    assert token_row(sessions, issued.token).last_used_at == clock.now - timedelta(seconds=1)
    assert token_row(sessions, other.token).last_used_at == clock.now
    assert uses.pending() == {}


def test_the_node_flushes_on_its_interval(
    session: Session, sessions: sessionmaker[Session]
) -> None:
    """recording_token_uses flushes while it runs (on a short interval here), in the
    background: the block goes on meanwhile."""
    uses = TokenUses()
    users = UserService(session, uses=uses)
    users.add_user("anna", Role.OFFICER, actor="t")
    issued = users.issue_token("anna", expires_days=30, actor="t")
    users.authenticate(issued.token)
    session.rollback()

    async def run() -> datetime | None:
        async with recording_token_uses(uses, sessions, 0.05):
            with anyio.fail_after(20):
                while (used := token_row(sessions, issued.token).last_used_at) is None:
                    await anyio.sleep(0.01)
            return used

    assert anyio.run(run) is not None
    assert uses.pending() == {}


def test_shutdown_flushes_the_uses(
    app: FastAPI, make_token: Any, sessions: sessionmaker[Session]
) -> None:
    """A node stopped before its next flush (every TOKEN_USE_INTERVAL_S) writes the uses
    noted since the last one as it stops."""
    token = make_token(Role.OFFICER, name="anna")
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        url = f"http://127.0.0.1:{config.port}/users/me"
        assert httpx.get(url, headers=bearer(token), timeout=30).status_code == 200
        assert token_row(sessions, token).last_used_at is None
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert token_row(sessions, token).last_used_at is not None
    assert app.state.token_uses.pending() == {}


# ------------------------------------------------------------------------ migration 0010


def test_0010_adds_last_used_at_and_keeps_tokens(fresh_db_url: str) -> None:
    """A 0008 database with a token: the upgrade keeps it, its last use empty; the downgrade
    drops the column (a table rebuild on SQLite) and keeps the token and its cascade."""
    engine = create_db_engine(fresh_db_url)
    now = datetime.now(UTC)
    try:
        upgrade(engine, "0008")
        with engine.begin() as conn:
            t = MetaData()
            t.reflect(conn, only=("users", "api_tokens"))
            users, tokens = t.tables["users"], t.tables["api_tokens"]
            user = {"name": "root", "role": "admin", "active": True, "created_at": now}
            conn.execute(insert(users).values(user))
            token = {"token_id": "0" * 16, "token_hash": "1" * 64, "created_at": now}
            conn.execute(insert(tokens).values(user_id=1, **token))
        assert "last_used_at" not in {c["name"] for c in inspect(engine).get_columns("api_tokens")}

        upgrade(engine, "0010")
        assert current_revision(engine) == "0010"
        with sessions_of(engine)() as s:
            row = s.scalars(select(ApiToken)).one()
            assert (row.token_id, row.token_hash, row.last_used_at) == ("0" * 16, "1" * 64, None)
            row.last_used_at = now
            s.commit()

        command.downgrade(alembic_config(engine), "0008")
        assert "last_used_at" not in {c["name"] for c in inspect(engine).get_columns("api_tokens")}
        with engine.begin() as conn:
            kept = conn.execute(select(tokens.c.token_id, tokens.c.user_id)).all()
            assert [tuple(r) for r in kept] == [("0" * 16, 1)]
            conn.execute(delete(users))  # the foreign key still cascades
            assert conn.execute(select(tokens)).all() == []
    finally:
        engine.dispose()


# ------------------------------------------------------------------------ bdx users


def test_users_cli_enable_role_and_tokens(
    session: Session,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BDX_DATABASE_URL", db_url)
    assert cli(["users", "add", "anna", "--role", "officer"], capsys)[0] == 0
    assert cli(["users", "disable", "anna"], capsys)[0] == 0
    assert cli(["users", "enable", "anna"], capsys)[:2] == (0, "enabled anna\n")
    code, out, _ = cli(["users", "enable", "anna", "--json"], capsys)
    assert code == 0 and json.loads(out) == {"name": "anna", "role": "officer", "active": True}

    assert cli(["users", "role", "anna", "operator"], capsys)[:2] == (
        0,
        "anna: officer -> operator\n",
    )
    code, out, _ = cli(["users", "role", "anna", "auditor", "--json"], capsys)
    assert code == 0 and json.loads(out) == {
        "name": "anna",
        "role": "auditor",
        "previous_role": "operator",
        "active": True,
    }

    code, out, _ = cli(["users", "tokens", "anna", "--json"], capsys)
    assert (code, json.loads(out)) == (0, [])
    cli(["users", "token", "anna", "--expires-days", "3"], capsys)
    code, out, _ = cli(["users", "tokens", "anna", "--json"], capsys)
    listing = json.loads(out)
    assert code == 0 and len(listing) == 1 and set(listing[0]) == TOKEN_FIELDS
    assert listing[0]["last_used_at"] is None and listing[0]["revoked_at"] is None
    code, out, _ = cli(["users", "tokens", "anna"], capsys)
    header, row = out.splitlines()
    assert header.split() == [
        "TOKEN",
        "CREATED",
        "EXPIRES",
        "EXPIRES",
        "IN",
        "REVOKED",
        "LAST",
        "USED",
    ]
    assert row.split()[0] == listing[0]["token_id"] and row.split()[-2:] == ["-", "-"]

    session.expire_all()
    actions = [
        (e.actor.split(":")[0], e.action, e.details)
        for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))
        if e.action in {"user.enable", "user.role"}
    ]
    assert actions == [
        ("local", "user.enable", {"tokens": []}),
        ("local", "user.enable", {"tokens": []}),
        ("local", "user.role", {"previous_role": "officer", "role": "operator"}),
        ("local", "user.role", {"previous_role": "operator", "role": "auditor"}),
    ]


def test_users_cli_may_leave_no_admin_and_says_so(
    session: Session,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """On the node's machine the only admin may be demoted or disabled (a stolen admin token);
    the text output says the node has no admin now, and `enable` makes one again."""
    monkeypatch.setenv("BDX_DATABASE_URL", db_url)
    assert cli(["users", "add", "ana", "--role", "admin"], capsys)[0] == 0
    code, out, _ = cli(["users", "disable", "ana"], capsys)
    assert code == 0 and out.startswith(
        "disabled ana; the node has no active admin with a live token now"
    )
    code, out, _ = cli(["users", "enable", "ana"], capsys)
    assert (code, out) == (0, "enabled ana\n")
    code, out, _ = cli(["users", "role", "ana", "officer"], capsys)
    assert code == 0 and "no active admin with a live token now" in out
    code, out, _ = cli(["users", "role", "ana", "admin"], capsys)
    assert (code, out) == (0, "ana: officer -> admin\n")
    # Another admin without a token is no admin over the API: the CLI allows it and says so.
    assert cli(["users", "token", "ana"], capsys)[0] == 0
    assert cli(["users", "add", "bo", "--role", "admin"], capsys)[0] == 0
    code, out, _ = cli(["users", "role", "ana", "officer"], capsys)
    assert code == 0 and "no active admin with a live token now" in out


@pytest.mark.parametrize(
    ("args", "code", "reason"),
    [
        (["users", "enable", "ghost"], 4, "unknown_user"),
        (["users", "role", "ghost", "admin"], 4, "unknown_user"),
        (["users", "tokens", "ghost"], 4, "unknown_user"),
        (["users", "tokens", "ghost", "--json"], 4, "unknown_user"),
    ],
)
def test_users_cli_unknown_user(
    engine: object,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    reason: str,
) -> None:
    monkeypatch.setenv("BDX_DATABASE_URL", db_url)
    got, out, err = cli(args, capsys)
    assert (got, out) == (code, "")
    assert err.startswith("bdx: error: ") and err.rstrip().endswith(f"[{reason}]")
    assert len(err.splitlines()) == 1


def test_users_cli_bad_role_is_a_usage_error(
    session: Session,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BDX_DATABASE_URL", db_url)
    assert cli(["users", "add", "anna", "--role", "officer"], capsys)[0] == 0
    code, out, err = cli(["users", "role", "anna", "king"], capsys)
    assert (code, out) == (2, "")
    assert "Invalid value for 'ROLE': 'king' is not one of" in err, err
    session.expire_all()
    assert session.scalars(select(User.role)).one() is Role.OFFICER


def test_users_tokens_help_flows_as_one_paragraph(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The help text's source lines kept their indent and broke the paragraph where the
    source did ("Revoke a" / "token with ..."); on a wide terminal it is one line."""
    monkeypatch.setenv("COLUMNS", "400")
    code, out, _ = cli(["users", "tokens", "--help"], capsys)
    assert code == 0
    lines = [line.strip() for line in out.splitlines()]
    paragraph = next(line for line in lines if line.startswith("The running node writes"))
    assert "Revoke a token with `bdx users revoke-token ID`." in paragraph
    assert paragraph.endswith("(times ISO 8601, UTC, or null).")
