"""The node warns before its admins' last API token expires, and says so once none is live.

Over the API the node refuses to take the last admin's rights or token (409 ``last_admin``),
but nothing said so when the last live admin token simply expired: the node was then left
without anyone who could manage users over the API, unnoticed until someone needed to. Now
the running node looks at start and hourly (WARNING within the window, ERROR once none is
live, each at most once a day), ``GET /users/admin-tokens`` says the same to an admin or an
auditor (not the anonymous ``/health``), and token listings give ``expires_in``. The window is
at most half of ``token_max_days`` (with 7-day tokens a 14-day window warned forever), and the
look is one query, however many tokens the admins ever held.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from node_support import bearer, cli, free_port
from sqlalchemy import Engine, event, insert, select
from sqlalchemy.orm import Session, sessionmaker

from node.api.app import create_app
from node.db.base import utc_now
from node.db.models import ApiToken, AuditEvent, Role
from node.services import params
from node.services.galleries import GallerySet
from node.services.users import AdminWatch, UserService, admin_warning_window
from node.settings import Settings

WATCH = "node.services.users"


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """``app`` under a real uvicorn server on a loopback port (its lifespan: the node's
    start); yields the base URL, stops it afterwards."""
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def admin_with_token(
    sessions: sessionmaker[Session], name: str, days: int, *, issued: datetime | None = None
) -> str:
    """An active admin ``name`` holding one token of ``days`` days, issued at ``issued``
    (default now): the token."""
    with sessions() as session:
        users = UserService(session, clock=(lambda: issued) if issued else utc_now)
        if users.users.by_name(name) is None:
            users.add_user(name, Role.ADMIN, actor="test")
        return users.issue_token(name, expires_days=days, actor="test").token


def auditor_token(sessions: sessionmaker[Session]) -> str:
    """A new auditor's token (an auditor reads ``/users/admin-tokens`` when no admin can)."""
    with sessions() as session:
        users = UserService(session)
        users.add_user("watcher", Role.AUDITOR, actor="test")
        return users.issue_token("watcher", expires_days=30, actor="test").token


def said(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == WATCH and r.levelno == level]


def test_an_admin_token_expiring_within_the_window_is_warned_and_a_later_one_clears_it(
    app: FastAPI, sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=WATCH)
    token = admin_with_token(sessions, "root", 3)
    with served(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        (warned,) = said(caplog, logging.WARNING)
        assert "every live API token of the node's active admins expires by" in warned
        assert "(1 token of root)" in warned and "bdx users token NAME" in warned
        assert token.split("_")[1] not in caplog.text and token not in caplog.text
        assert said(caplog, logging.ERROR) == []

        notice = http.get("/users/admin-tokens", headers=bearer(token)).json()
        assert notice["state"] == "expiring" and notice["admins"] == ["root"]
        assert notice["tokens"] == 1 and notice["window_days"] == 14
        assert "bdx users token NAME" in notice["detail"]
        ends = datetime.fromisoformat(notice["expires_at"])
        assert timedelta(days=2) < ends - datetime.now(UTC) <= timedelta(days=3)
        # /health answers anyone: it says nothing of the admins' tokens.
        anonymous = http.get("/health").json()
        assert "admin_tokens" not in anonymous and anonymous["status"] == "ok"
        assert http.get("/users/admin-tokens").status_code == 401

        # The hourly look does not say it again the same day.
        caplog.clear()
        app.state.admin_watch.check()
        assert said(caplog, logging.WARNING) == []

        later = http.post("/users/root/tokens", headers=bearer(token), json={"expires_days": 30})
        assert later.status_code == 201
        now_ok = http.get("/users/admin-tokens", headers=bearer(token)).json()
        assert now_ok["state"] == "ok" and now_ok["detail"] is None and now_ok["tokens"] == 2
        app.state.admin_watch.check()  # the next hourly look
        assert said(caplog, logging.INFO) == [
            f"an active admin holds an API token beyond the next "
            f"{params.ADMIN_TOKEN_WARNING_DAYS} days again"
        ]
        assert "admin_tokens" not in http.get("/health").json()
        assert said(caplog, logging.WARNING) == []


def test_no_admin_with_a_live_token_is_an_error_line_at_start(
    app: FastAPI, sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=WATCH)
    admin_with_token(sessions, "root", 1, issued=datetime.now(UTC) - timedelta(days=2))
    auditor = auditor_token(sessions)
    with served(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        (error,) = said(caplog, logging.ERROR)
        assert error.startswith("no active admin holds a live API token")
        assert "`bdx users token NAME`" in error and "on this node's machine" in error
        body = http.get("/health").json()
        assert body["status"] == "ok" and "admin_tokens" not in body
        # No admin can read it now; an auditor can.
        notice = http.get("/users/admin-tokens", headers=bearer(auditor)).json()
        assert notice["state"] == "none" and notice["admins"] == [] and notice["tokens"] == 0
        assert notice["expires_at"] is None and "bdx users token" in notice["detail"]
    # The reading shows the admins' names and their tokens' standing: recorded, as user.list
    with sessions() as session:
        readings = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "user.admin_tokens")
        ).all()
    assert [(e.actor, e.details) for e in readings] == [
        ("user:watcher", {"state": "none", "tokens": 0})
    ]


def test_a_node_without_an_admin_user_is_not_watched(
    app: FastAPI, sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    """No user has the admin role yet (a node not set up with one): nothing is logged and
    /health says nothing of admins."""
    caplog.set_level(logging.INFO, logger=WATCH)
    auditor = auditor_token(sessions)
    with served(app) as url:
        got = httpx.get(f"{url}/users/admin-tokens", headers=bearer(auditor), timeout=30)
        assert got.json()["state"] == "no_admin"
        assert "bdx users role NAME admin" in got.json()["detail"]
    assert [r for r in caplog.records if r.name == WATCH] == []


def test_an_officer_may_not_read_the_admins_standing(
    app: FastAPI, sessions: sessionmaker[Session]
) -> None:
    admin_with_token(sessions, "root", 30)
    with sessions() as session:
        users = UserService(session)
        users.add_user("anna", Role.OFFICER, actor="test")
        officer = users.issue_token("anna", expires_days=30, actor="test").token
    with served(app) as url:
        got = httpx.get(f"{url}/users/admin-tokens", headers=bearer(officer), timeout=30)
    assert (got.status_code, got.json()["error"]) == (403, "wrong_role")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_each_condition_is_logged_at_most_once_a_day(
    sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=WATCH)
    clock = Clock()
    with sessions() as session:
        users = UserService(session, clock=clock)
        users.add_user("root", Role.ADMIN, actor="test")
        users.issue_token("root", expires_days=5, actor="test")
    watch = AdminWatch(sessions, clock=clock)
    assert watch.check().state == "expiring"  # type: ignore[union-attr]
    clock.now += timedelta(hours=23)
    watch.check()
    assert len(said(caplog, logging.WARNING)) == 1
    clock.now += timedelta(hours=1)
    watch.check()
    assert len(said(caplog, logging.WARNING)) == 2
    clock.now += timedelta(days=4)  # past the end: an ERROR at once, not a day later
    assert watch.check().state == "none"  # type: ignore[union-attr]
    clock.now += timedelta(hours=12)
    watch.check()
    assert len(said(caplog, logging.ERROR)) == 1 and len(said(caplog, logging.WARNING)) == 2


def test_token_listings_say_when_each_expires(
    http_admin: tuple[str, str],
    settings: Settings,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``expires_in``: whole seconds until the token expires, in `bdx users tokens` (and its
    --json) and GET /users/NAME/tokens; `bdx users token` says it in words."""
    url, token = http_admin
    monkeypatch.setenv("BDX_DATABASE_URL", db_url)
    code, _, err = cli(["users", "token", "root", "--expires-days", "3"], capsys)
    assert code == 0 and "(in 2d 23h)" in err
    code, out, _ = cli(["users", "tokens", "root", "--json"], capsys)
    listed = json.loads(out)
    assert code == 0 and all(3 * 86400 - 120 < t["expires_in"] <= 3 * 86400 for t in listed)
    code, out, _ = cli(["users", "tokens", "root"], capsys)
    header, *rows = out.splitlines()
    assert "EXPIRES IN" in header and all(" 2d 23h " in row for row in rows)
    over_http = httpx.get(f"{url}/users/root/tokens", headers=bearer(token), timeout=30).json()
    assert all(3 * 86400 - 120 < t["expires_in"] <= 3 * 86400 for t in over_http)


@pytest.fixture
def http_admin(app: FastAPI, sessions: sessionmaker[Session]) -> Iterator[tuple[str, str]]:
    token = admin_with_token(sessions, "root", 3)
    with served(app) as url:
        yield url, token


def test_the_window_is_at_most_half_the_longest_token_lifetime(
    settings: Settings,
    engine: Engine,
    galleries: GallerySet,
    sessions: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With ``token_max_days`` 7 a 14-day window held every token the node can issue: the
    warning never cleared, whatever an admin did. Now the window is half the longest
    lifetime: a fresh 7-day token is no warning, a token in its second half is."""
    caplog.set_level(logging.INFO, logger=WATCH)
    assert admin_warning_window(7) == timedelta(days=3.5)
    assert admin_warning_window(365) == timedelta(days=params.ADMIN_TOKEN_WARNING_DAYS)
    short = settings.model_copy(update={"token_max_days": 7})
    app = create_app(short, engine=engine, gallery=galleries)
    token = admin_with_token(sessions, "root", 7)
    with served(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        assert said(caplog, logging.WARNING) == []
        notice = http.get("/users/admin-tokens", headers=bearer(token)).json()
        assert notice["state"] == "ok" and notice["window_days"] == 3.5
    clock = Clock()
    clock.now = datetime.now(UTC) + timedelta(days=4)  # 3 days left of the 7
    watch = AdminWatch(sessions, clock=clock, token_max_days=7)
    assert watch.check().state == "expiring"  # type: ignore[union-attr]
    (warned,) = said(caplog, logging.WARNING)
    assert "(1 token of root)" in warned


def test_the_look_is_one_query_however_many_tokens_were_revoked(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    """The look loaded every admin and every token of theirs into Python (426 ms a look with
    20,000 revoked tokens); now the database counts them, in one statement."""
    admin_with_token(sessions, "root", 30)
    admin_with_token(sessions, "spare", 3)
    with sessions() as session:
        users = UserService(session)
        users.add_user("gone", Role.ADMIN, actor="test")
        users.issue_token("gone", expires_days=60, actor="test")
        users.disable_user("gone", actor="test", keep_an_admin=False)
        root = users.users.by_name("root")
        assert root is not None
        now = utc_now()
        session.execute(
            insert(ApiToken),
            [
                {
                    "token_id": f"{i:016x}",
                    "token_hash": "0" * 64,
                    "user_id": root.id,
                    "created_at": now,
                    "expires_at": now + timedelta(days=300),
                    "revoked_at": now,
                }
                for i in range(500)
            ],
        )
        session.commit()
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", count)
    try:
        standing = AdminWatch(sessions).standing()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert standing is not None and standing.state == "ok"
    assert standing.admins == ("root", "spare") and standing.tokens == 2
    assert standing.last is not None
    assert timedelta(days=29) < standing.last - utc_now() <= timedelta(days=30)
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1


def test_the_last_admin_demoted_is_an_error_not_a_recovery(
    sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    """``bdx users role solo officer`` on the node's machine while no admin held a token
    left no admin at all, and the watch logged INFO "... holds an API token ... again"."""
    caplog.set_level(logging.INFO, logger=WATCH)
    with sessions() as session:
        UserService(session).add_user("solo", Role.ADMIN, actor="test")
    watch = AdminWatch(sessions)
    assert watch.check().state == "none"  # type: ignore[union-attr]
    with sessions() as session:
        UserService(session).set_role("solo", Role.OFFICER, actor="test", keep_an_admin=False)
    assert watch.check() is None
    assert said(caplog, logging.INFO) == []
    assert len(said(caplog, logging.ERROR)) == 2
    assert said(caplog, logging.ERROR)[-1].startswith("no user has the admin role any more")
    watch.check()  # said once
    assert len(said(caplog, logging.ERROR)) == 2
