"""A request's token revoked (or expired) while the request runs changes nothing: every change of
users and tokens checks again, under the admins' lock, that the token the request authenticated
with is still live, and refuses as authentication does (401 ``token_revoked`` /
``token_expired``). A request that waited on a revocation's lock sees the revocation. Over a
real uvicorn server, on both databases."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from node_support import bearer
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from test_users_last_token_and_stale_caller import (
    between_authentication_and_action,
    error,
    events,
    revoked_at,
    tid,
)

from node.db.base import utc_now
from node.db.models import ApiToken, Role, User
from node.services.users import UserService

#: Seconds the thief's request is given to authenticate and reach the lock.
REACH_LOCK_S = 1.5


@pytest.fixture
def http(live_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server, timeout=60) as client:
        yield client


ACTIONS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "add_admin": ("POST", "/users", {"name": "mallory", "role": "admin"}),
    "enable": ("POST", "/users/x/enable", {}),
    "disable": ("POST", "/users/second/disable", {}),
    "role": ("PUT", "/users/second/role", {"role": "officer"}),
    "issue": ("POST", "/users/root/tokens", {}),
    "revoke": ("DELETE", "/tokens/{second_token}", {}),
}


def snapshot(sessions: sessionmaker[Session]) -> tuple[Any, ...]:
    with sessions() as s:
        users = sorted((u.name, u.role.value, u.active) for u in s.scalars(select(User)))
        tokens = sorted((t.token_id, t.revoked_at is not None) for t in s.scalars(select(ApiToken)))
        return users, tokens


@pytest.mark.parametrize("meanwhile", ["revoked", "expired"])
@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_a_request_whose_token_is_revoked_while_it_runs_changes_nothing(
    http: httpx.Client,
    app: FastAPI,
    make_token: Any,
    sessions: sessionmaker[Session],
    meanwhile: str,
    action: str,
) -> None:
    """root's (stolen) token authenticates the request; second revokes it (or it expires)
    before the handler acts: the change is refused as a revoked (expired) token is, 401, and
    nothing is changed or recorded (it went through: a new admin, a fresh token for the
    thief)."""
    stolen = make_token(Role.ADMIN, name="root")
    second = make_token(Role.ADMIN, name="second")
    make_token(Role.OFFICER, name="x")
    with sessions() as s:
        UserService(s).disable_user("x", actor="t")

    def change() -> None:
        with sessions() as s:
            if meanwhile == "revoked":
                UserService(s).revoke_token(tid(stolen), actor="user:second")
            else:
                s.execute(
                    update(ApiToken)
                    .where(ApiToken.token_id == tid(stolen))
                    .values(expires_at=utc_now() - timedelta(seconds=1))
                )
                s.commit()

    before = snapshot(sessions)
    method, path, body = ACTIONS[action]
    with between_authentication_and_action(app, change) as seen:
        r = http.request(
            method, path.format(second_token=tid(second)), headers=bearer(stolen), json=body
        )
    assert [p.name for p in seen] == ["root"]
    reason = "token_revoked" if meanwhile == "revoked" else "token_expired"
    assert "while this request ran" in error(r, 401, reason)
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    after = snapshot(sessions)
    if meanwhile == "revoked":  # the revocation itself changed root's token, nothing else
        assert after == (before[0], sorted((t, t == tid(stolen) or v) for t, v in before[1]))
    else:
        assert after == before
    acted = events(sessions, "user.add", "user.enable", "user.disable", "user.role")
    acted += events(sessions, "token.issue", "token.revoke")
    assert [e for e in acted if e[0] == "user:root"] == []
    # The lock was let go: second's own request goes through at once.
    r = http.post("/users/x/enable", headers=bearer(second))
    assert r.status_code == 200, r.text


def test_a_request_waiting_on_the_revocations_lock_sees_the_revocation(
    live_server: str, make_token: Any, sessions: sessionmaker[Session]
) -> None:
    """second revokes root's stolen token, holding the admins' lock as DELETE /tokens does;
    the thief's POST /users/root/tokens, sent meanwhile, authenticates (the token is still
    live) and waits for the lock: once it has it, the token is revoked, so it gets nothing (it
    got a fresh admin token)."""
    stolen = make_token(Role.ADMIN, name="root")
    make_token(Role.ADMIN, name="second")
    result: dict[str, httpx.Response] = {}
    with sessions() as s:
        service = UserService(s)
        service._admins_locked(None)  # the lock revoke_token takes first

        def thief() -> None:
            with httpx.Client(base_url=live_server, timeout=60) as c:
                result["r"] = c.post("/users/root/tokens", headers=bearer(stolen), json={})

        t = threading.Thread(target=thief)
        t.start()
        t.join(REACH_LOCK_S)  # the thief's request authenticates and waits for the lock
        assert t.is_alive()
        service.revoke_token(tid(stolen), actor="user:second")  # commits: the lock goes
    t.join()
    error(result["r"], 401, "token_revoked")
    assert revoked_at(sessions, tid(stolen)) is not None
    assert [e[0] for e in events(sessions, "token.issue")].count("user:root") == 0
    with sessions() as s:
        root = s.scalars(select(User).where(User.name == "root")).one()
        assert len(UserService(s).tokens_of(root)) == 1


def test_openapi_409_of_a_revocation_counts_the_owners_other_tokens(http: httpx.Client) -> None:
    """DELETE /tokens/{id}'s 409 says the owner's other live tokens count (it said "no other
    active admin", which is the rule of a disabling or a demotion, not of a revocation)."""
    paths = http.get("/openapi.json").json()["paths"]
    revoke = paths["/tokens/{token_id}"]["delete"]["responses"]["409"]["description"]
    assert revoke.startswith("last_admin") and "its owner included" in revoke, revoke
    assert "no other active admin" not in revoke, revoke
    disable = paths["/users/{name}/disable"]["post"]["responses"]["409"]["description"]
    assert "no other active admin holds a live token" in disable, disable
