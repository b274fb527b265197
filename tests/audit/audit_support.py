"""Helpers of the auditor tests: the node app with a given exchange log, served for real."""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from certs.translog import SigningKey, TransparencyLog
from node.api.app import create_app
from node.db.models import Role
from node.services.users import UserService
from node.settings import Settings

with warnings.catch_warnings():
    # starlette warns once at import that it prefers the `httpx2` fork; the API is the same.
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

__all__ = [
    "BACKENDS",
    "LOG_NAME",
    "PG_ENV",
    "Bdx",
    "Node",
    "TestClient",
    "auditor_app",
    "bearer",
    "encode",
    "sample_events",
    "serve",
]

LOG_NAME = "bdx.xa.example/exchange-log"
PG_ENV = "BDX_TEST_DATABASE_URL"
#: Database backends of the tests that run on both (PostgreSQL when $BDX_TEST_DATABASE_URL).
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
DAY = "2026-11-20"


def sample_events() -> list[dict[str, object]]:
    """A day of exchange traffic (12 events): TH sends 3 queries (2 hits, 1 no hit), ID 2
    (1 no hit, 1 refused over quota); one query goes out to MY; one TH query fails its
    signature check."""
    at = f"{DAY}T10:00:00+00:00"
    events: list[dict[str, object]] = []
    for peer, outcomes in (("TH", ["hit", "hit", "no_hit"]), ("ID", ["no_hit", "refused"])):
        for n, outcome in enumerate(outcomes):
            qid = f"{peer}-{n}"
            common = {"node": "XA", "peer": peer, "query_id": qid, "at": at}
            events.append(
                {"type": "query_received", **common, "purpose": "serious_crime", "templates": 1}
            )
            if outcome == "refused":
                events.append({"type": "query_refused", **common, "reason": "quota_exceeded"})
            else:
                events.append({"type": "reply_sent", **common, "outcome": outcome})
    events.append(
        {
            "type": "query_sent",
            "node": "XA",
            "peer": "MY",
            "purpose": "terrorism",
            "officer": "alice",
            "at": at,
        }
    )
    events.append({"type": "query_refused", "peer": "TH", "reason": "bad_signature", "at": at})
    return events


def encode(event: dict[str, object]) -> bytes:
    return json.dumps(event, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class Node:
    """A node database with a populated log."""

    engine: Engine
    url: str
    key: SigningKey
    key_file: Path
    log: TransparencyLog
    sessions: sessionmaker[Session]

    def token(self, role: Role) -> str:
        with self.sessions() as s:
            users = UserService(s)
            name = f"{role.value}-{secrets.token_hex(3)}"
            users.add_user(name, role, actor="test")
            return users.issue_token(name, expires_days=1, actor="test").token

    @property
    def vkey(self) -> str:
        return self.log.verifying_key.to_vkey()


#: ``bdx(*args, key=True) -> (exit code, stdout, stderr)`` (the ``bdx`` fixture).
Bdx = Callable[..., tuple[int, str, str]]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def auditor_app(settings: Settings, engine: Engine, log: TransparencyLog | None) -> FastAPI:
    """The node's app on ``engine`` with ``log`` as its exchange log (``None``: no log)."""
    app = create_app(settings, engine=engine, open_gallery=False)
    app.state.exchange_log = log
    return app


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """``app`` under a real uvicorn server on a free loopback port; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
