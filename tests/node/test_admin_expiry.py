"""The node warns before its admins' last API token expires, and says so once none is live.

Over the API the node refuses to take the last admin's rights or token (409 ``last_admin``),
but nothing said so when the last live admin token simply expired: the node was then left
without anyone who could manage users over the API, unnoticed until someone needed to. Now
the running node looks at start and hourly (WARNING within the window, ERROR once none is
live, each at most once a day), ``/health`` carries ``admin_tokens`` while it has something
to say, and token listings give ``expires_in``.
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
from sqlalchemy.orm import Session, sessionmaker

from node.db.base import utc_now
from node.db.models import Role
from node.services import params
from node.services.users import AdminWatch, UserService
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

        notice = http.get("/health").json()["admin_tokens"]
        assert notice["state"] == "expiring" and "root" not in json.dumps(notice)
        ends = datetime.fromisoformat(notice["expires_at"])
        assert timedelta(days=2) < ends - datetime.now(UTC) <= timedelta(days=3)
        assert http.get("/health").json()["status"] == "ok"

        # The hourly look does not say it again the same day.
        caplog.clear()
        app.state.admin_watch.check()
        assert said(caplog, logging.WARNING) == []

        later = http.post("/users/root/tokens", headers=bearer(token), json={"expires_days": 30})
        assert later.status_code == 201
        assert "admin_tokens" not in http.get("/health").json()
        app.state.admin_watch.check()  # the next hourly look
        assert said(caplog, logging.INFO) == [
            f"an active admin holds an API token beyond the next "
            f"{params.ADMIN_TOKEN_WARNING_DAYS} days again"
        ]
        assert said(caplog, logging.WARNING) == []


def test_no_admin_with_a_live_token_is_an_error_line_at_start(
    app: FastAPI, sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=WATCH)
    admin_with_token(sessions, "root", 1, issued=datetime.now(UTC) - timedelta(days=2))
    with served(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        (error,) = said(caplog, logging.ERROR)
        assert error.startswith("no active admin holds a live API token")
        assert "`bdx users token NAME`" in error and "on this node's machine" in error
        body = http.get("/health").json()
        assert body["status"] == "ok"
        assert body["admin_tokens"]["state"] == "none"
        assert body["admin_tokens"]["expires_at"] is None
        assert "bdx users token" in body["admin_tokens"]["detail"]


def test_a_node_without_an_admin_user_is_not_watched(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    """No user has the admin role yet (a node not set up with one): nothing is logged and
    /health says nothing of admins."""
    caplog.set_level(logging.INFO, logger=WATCH)
    with served(app) as url:
        assert "admin_tokens" not in httpx.get(f"{url}/health", timeout=30).json()
    assert [r for r in caplog.records if r.name == WATCH] == []


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
