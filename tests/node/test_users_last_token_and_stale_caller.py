"""Gaps of user administration closed: adding or enabling a user and issuing a token check
again, under the lock, that the caller is still an active admin (403 ``wrong_role``). Over a
real uvicorn server, on both databases."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from node_support import bearer
from sqlalchemy import select
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
    handler acts: adding a user, enabling one, issuing a token, checked again
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
