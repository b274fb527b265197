"""Gaps of user administration closed: the last admin's last live token is not revoked over the
API (409 ``last_admin``, as a disabling or a demotion); adding or enabling a user and issuing or
revoking a token check again, under the lock, that the caller is still an active admin (403
``wrong_role``); a listing of a user's tokens is recorded in the audit trail (``token.list``).
Over a real uvicorn server and with ``bdx users``, on both databases."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from node_support import bearer, cli
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from node.api.deps import SessionDep, SettingsDep, current_principal
from node.db.models import ApiToken, AuditEvent, Role, User
from node.services.users import Principal, UserService


@pytest.fixture
def http(live_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server, timeout=30) as client:
        yield client


def error(response: httpx.Response, status: int, reason: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"] == reason, body
    return str(body["detail"])


def events(sessions: sessionmaker[Session], *actions: str) -> list[tuple[str, str, Any]]:
    """(actor, "action target", details) of the audit events of ``actions``, oldest first."""
    with sessions() as s:
        rows = s.scalars(
            select(AuditEvent).where(AuditEvent.action.in_(actions)).order_by(AuditEvent.id)
        ).all()
        return [(e.actor, f"{e.action} {e.target}", e.details) for e in rows]


def tid(token: str) -> str:
    """A token's public id."""
    return token.split("_")[1]


def revoked_at(sessions: sessionmaker[Session], token_id: str) -> datetime | None:
    with sessions() as s:
        row = s.scalars(select(ApiToken).where(ApiToken.token_id == token_id)).one()
        return row.revoked_at


# ------------------------------------------------------------------------ last admin's token


def test_the_only_admin_cannot_revoke_their_last_live_token(
    http: httpx.Client, make_token: Any, sessions: sessionmaker[Session]
) -> None:
    """root, the only admin, holds one live token: revoking it would leave nobody able to
    manage users over the API (and root could not get another over it). Refused as a
    disabling is; with a second live token, the first may go, not the last."""
    token = make_token(Role.ADMIN, name="root")
    root = bearer(token)
    detail = error(http.delete(f"/tokens/{tid(token)}", headers=root), 409, "last_admin")
    assert "without an active admin who can use the API" in detail, detail
    assert token not in detail and tid(token) in detail
    assert revoked_at(sessions, tid(token)) is None
    assert http.get("/users/me", headers=root).status_code == 200
    assert events(sessions, "token.revoke") == []

    spare = make_token(Role.ADMIN, name="root")
    r = http.delete(f"/tokens/{tid(token)}", headers=bearer(spare))
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    error(http.delete(f"/tokens/{tid(spare)}", headers=bearer(spare)), 409, "last_admin")
    # An already revoked token is no live one: revoking it again answers as the first time.
    r = http.delete(f"/tokens/{tid(token)}", headers=bearer(spare))
    assert r.status_code == 200
    assert events(sessions, "token.revoke") == [
        ("user:root", "token.revoke root", {"token_id": tid(token)}),
        ("user:root", "token.revoke root", {"token_id": tid(token)}),
    ]


def test_the_last_admin_with_a_live_token_is_refused_for_another_admins_revocation(
    http: httpx.Client, make_token: Any, sessions: sessionmaker[Session]
) -> None:
    """root and second are admins; root revokes second's token, then second (no live token
    of theirs) counts no more: root's own last token is refused. Once second holds one
    again, root may revoke theirs."""
    root_token = make_token(Role.ADMIN, name="root")
    root = bearer(root_token)
    second_token = make_token(Role.ADMIN, name="second")
    assert http.delete(f"/tokens/{tid(second_token)}", headers=root).status_code == 200
    error(http.delete(f"/tokens/{tid(root_token)}", headers=root), 409, "last_admin")
    again = http.post("/users/second/tokens", headers=root, json={}).json()["token"]
    r = http.delete(f"/tokens/{tid(root_token)}", headers=root)
    assert r.status_code == 200, r.text
    error(http.get("/users/me", headers=root), 401, "token_revoked")
    # second is the last admin with a live token now: their own is refused too.
    error(http.delete(f"/tokens/{tid(again)}", headers=bearer(again)), 409, "last_admin")


@pytest.mark.parametrize("owner", ["officer", "disabled_admin", "expired_admin"])
def test_tokens_that_keep_no_admin_are_revoked(
    http: httpx.Client, make_token: Any, sessions: sessionmaker[Session], owner: str
) -> None:
    """The rule guards live admin tokens only: an officer's token, a disabled admin's, or an
    admin's expired one is revoked while root is the only admin with a live token."""
    root = bearer(make_token(Role.ADMIN, name="root"))
    if owner == "officer":
        token = make_token(Role.OFFICER, name="anna")
    elif owner == "disabled_admin":
        token = make_token(Role.ADMIN, name="old")
        assert http.post("/users/old/disable", headers=root).status_code == 200
    else:
        token = make_token(Role.ADMIN, name="root")
        with sessions() as s:
            past = datetime.now(UTC) - timedelta(seconds=1)
            s.execute(
                update(ApiToken).where(ApiToken.token_id == tid(token)).values(expires_at=past)
            )
            s.commit()
    r = http.delete(f"/tokens/{tid(token)}", headers=root)
    assert r.status_code == 200, r.text
    assert revoked_at(sessions, tid(token)) is not None


def test_openapi_documents_the_409_of_a_revocation(http: httpx.Client) -> None:
    revoke = http.get("/openapi.json").json()["paths"]["/tokens/{token_id}"]["delete"]
    assert revoke["responses"]["409"]["description"].startswith("last_admin")


def test_users_cli_may_revoke_the_last_admin_token_and_says_so(
    sessions: sessionmaker[Session],
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """On the node's machine the only admin's last token may be revoked (a stolen admin
    token), as `disable` and `role` may take the last admin's rights: exit 0, and the text
    output says no admin can use the API now; `bdx users token` makes one again."""
    monkeypatch.setenv("BDX_DATABASE_URL", db_url)
    assert cli(["users", "add", "ana", "--role", "admin"], capsys)[0] == 0
    code, out, _ = cli(["users", "token", "ana", "--json"], capsys)
    first = json.loads(out)["token_id"]
    code, out, _ = cli(["users", "revoke-token", first], capsys)
    assert code == 0 and out.startswith(
        f"revoked {first}; the node has no active admin with a live token now"
    )
    code, out, _ = cli(["users", "token", "ana", "--json"], capsys)
    second = json.loads(out)["token_id"]
    code, out, _ = cli(["users", "revoke-token", second, "--json"], capsys)
    assert code == 0 and json.loads(out)["token_id"] == second
    # An officer's token: nothing to say.
    assert cli(["users", "add", "bo", "--role", "officer"], capsys)[0] == 0
    code, out, _ = cli(["users", "token", "bo", "--json"], capsys)
    officer = json.loads(out)["token_id"]
    assert cli(["users", "revoke-token", officer], capsys)[:2] == (0, f"revoked {officer}\n")


# ------------------------------------------------------------------------ stale caller


@contextmanager
def between_authentication_and_action(
    app: FastAPI, change: Callable[[], None]
) -> Iterator[list[Principal]]:
    """Every request of ``app`` authenticates its caller (the node's own dependency), then
    ``change`` runs and commits in another session, then the handler acts: the caller the
    request authenticated is stale when the handler runs. Yields the callers authenticated."""
    seen: list[Principal] = []

    def authenticated_then_changed(
        request: Request,
        session: SessionDep,
        settings: SettingsDep,
        credentials: Annotated[
            HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))
        ],
    ) -> Principal:
        principal = current_principal(request, session, settings, credentials)
        seen.append(principal)
        change()
        return principal

    app.dependency_overrides[current_principal] = authenticated_then_changed
    try:
        yield seen
    finally:
        app.dependency_overrides.pop(current_principal, None)


ACTIONS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "add": ("POST", "/users", {"name": "newbie", "role": "admin"}),
    "enable": ("POST", "/users/x/enable", {}),
    "issue": ("POST", "/users/x/tokens", {}),
    "revoke": ("DELETE", "/tokens/{x_token}", {}),
}


@pytest.mark.parametrize("meanwhile", ["demoted", "disabled"])
@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_an_admin_demoted_while_their_request_runs_changes_nothing(
    http: httpx.Client,
    app: FastAPI,
    make_token: Any,
    sessions: sessionmaker[Session],
    meanwhile: str,
    action: str,
) -> None:
    """anna's request authenticated her as admin; root demotes or disables her before the
    handler acts: adding a user, enabling one, issuing or revoking a token, checked again
    under the lock, is refused (403 wrong_role) and changes and records nothing (they went
    through: a disabled admin made an admin, issued a token)."""
    make_token(Role.ADMIN, name="root")
    anna = bearer(make_token(Role.ADMIN, name="anna"))
    x_token = make_token(Role.OFFICER, name="x")
    with sessions() as s:
        UserService(s).disable_user("x", actor="t")
        root = UserService(s).get("root").id
    if action != "enable":
        with sessions() as s:
            UserService(s).enable_user("x", actor="t")

    def change() -> None:
        with sessions() as s:
            service = UserService(s)
            if meanwhile == "demoted":
                service.set_role("anna", Role.OPERATOR, actor="user:root", caller=root)
            else:
                service.disable_user("anna", actor="user:root", caller=root)

    method, path, body = ACTIONS[action]
    with sessions() as s:
        before = (s.scalars(select(User.name)).all(), s.scalars(select(ApiToken.token_id)).all())
    with between_authentication_and_action(app, change) as seen:
        r = http.request(method, path.format(x_token=tid(x_token)), headers=anna, json=body)
    assert [(p.name, p.role) for p in seen] == [("anna", Role.ADMIN)]
    assert "no longer an active admin" in error(r, 403, "wrong_role")
    with sessions() as s:
        after = (s.scalars(select(User.name)).all(), s.scalars(select(ApiToken.token_id)).all())
        x = s.scalars(select(User).where(User.name == "x")).one()
        assert x.active is (action != "enable")
        assert revoked_at(sessions, tid(x_token)) is None
    assert sorted(after[0]) == sorted(before[0]) and sorted(after[1]) == sorted(before[1])
    mine = [e for e in events(sessions, "user.add", "user.enable", "token.issue", "token.revoke")]
    assert [e for e in mine if e[0] == "user:anna"] == []
    # The lock was let go: root's own request goes through at once.
    root_token = make_token(Role.ADMIN, name="root")
    r = http.request(
        method, path.format(x_token=tid(x_token)), headers=bearer(root_token), json=body
    )
    assert r.status_code in (200, 201), r.text


def test_a_user_disabled_while_a_token_is_issued_gets_none(
    http: httpx.Client, app: FastAPI, make_token: Any, sessions: sessionmaker[Session]
) -> None:
    """The user is read under the lock too: one disabled after the request's authentication
    gets no token (409 user_disabled)."""
    root = bearer(make_token(Role.ADMIN, name="root"))
    make_token(Role.OFFICER, name="x")

    def change() -> None:
        with sessions() as s:
            UserService(s).disable_user("x", actor="t")

    with between_authentication_and_action(app, change):
        r = http.post("/users/x/tokens", headers=root, json={})
    error(r, 409, "user_disabled")
    assert events(sessions, "token.issue")[-1][0] == "test"


# ------------------------------------------------------------------------ token listing audit


def test_a_token_listing_is_audited_without_secrets(
    http: httpx.Client,
    make_token: Any,
    sessions: sessionmaker[Session],
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`GET /users/{name}/tokens` and `bdx users tokens` are recorded as ``token.list`` (the
    user listed, how many tokens), never a token or its hash; a refused one is not."""
    root = bearer(make_token(Role.ADMIN, name="root"))
    token = make_token(Role.OFFICER, name="anna")
    assert http.get("/users/anna/tokens", headers=root).status_code == 200
    error(http.get("/users/ghost/tokens", headers=root), 404, "unknown_user")
    error(http.get("/users/anna/tokens", headers=bearer(token)), 403, "wrong_role")
    monkeypatch.setenv("BDX_DATABASE_URL", db_url)
    assert cli(["users", "tokens", "anna", "--json"], capsys)[0] == 0
    assert cli(["users", "tokens", "ghost"], capsys)[0] == 4
    listed = events(sessions, "token.list")
    assert [(a.split(":")[0], target, d) for a, target, d in listed] == [
        ("user", "token.list anna", {"returned": 1}),
        ("local", "token.list anna", {"returned": 1}),
    ]
    assert listed[0][0] == "user:root"
    with sessions() as s:
        row = s.scalars(select(ApiToken).where(ApiToken.token_id == tid(token))).one()
        stored = json.dumps(listed)
        assert token not in stored and row.token_hash not in stored
