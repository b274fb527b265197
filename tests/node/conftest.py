"""Fixtures of the node tests: a migrated database on SQLite and (when configured) PostgreSQL,
apps, tokens per role and a real uvicorn server on a loopback port."""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import uvicorn
from fastapi import FastAPI
from node_support import TestClient, free_port, self_signed_tls
from sqlalchemy import Engine, inspect, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from node.api.app import create_app
from node.db.engine import create_db_engine, session_factory
from node.db.migrate import upgrade
from node.db.models import Role
from node.services.galleries import GallerySet
from node.services.users import UserService
from node.settings import Settings

PG_ENV = "BDX_TEST_DATABASE_URL"


def _postgres_schema_url(base: str) -> Iterator[str]:
    """A URL whose connections see only a fresh schema, dropped afterwards."""
    schema = f"bdx_test_{secrets.token_hex(6)}"
    url = make_url(base)
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _postgres_base() -> str:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set (e.g. postgresql+psycopg://postgres@127.0.0.1/test)")
    return base


@pytest.fixture(params=BACKENDS)
def fresh_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a private schema on $BDX_TEST_DATABASE_URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'node.sqlite3'}"
        return
    yield from _postgres_schema_url(_postgres_base())


@pytest.fixture(scope="session")
def _postgres_migrated() -> Iterator[Engine]:
    """One migrated PostgreSQL schema for the session (emptied after every test)."""
    for url in _postgres_schema_url(_postgres_base()):
        eng = create_db_engine(url)
        upgrade(eng)
        yield eng
        eng.dispose()


def _empty_all_tables(eng: Engine) -> None:
    tables = set(inspect(eng).get_table_names()) - {"alembic_version"}
    names = ", ".join(f'"{name}"' for name in sorted(tables))
    with eng.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A database migrated to the latest revision, empty (SQLite file or PostgreSQL)."""
    if request.param == "sqlite":
        eng = create_db_engine(f"sqlite:///{tmp_path / 'node.sqlite3'}")
        upgrade(eng)
        yield eng
        eng.dispose()
        return
    eng = request.getfixturevalue("_postgres_migrated")
    try:
        yield eng
    finally:
        _empty_all_tables(eng)


@pytest.fixture
def db_url(engine: Engine) -> str:
    """The URL of ``engine`` (for settings, commands and subprocesses)."""
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


@pytest.fixture
def session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    with sessions() as s:
        yield s


@pytest.fixture
def settings(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("BDX_") and name != PG_ENV:
            monkeypatch.delenv(name)
    return Settings(data_dir=tmp_path / "data", database_url=db_url, country="XA")


@pytest.fixture
def node_env(settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """``settings`` exported as ``BDX_*`` variables, for tests that run the CLI in-process."""
    monkeypatch.setenv("BDX_DATABASE_URL", settings.db_url)
    monkeypatch.setenv("BDX_DATA_DIR", str(settings.data_dir))
    return settings


@pytest.fixture
def galleries(tmp_path: Path) -> Iterator[GallerySet]:
    with GallerySet.open(tmp_path / "galleries") as gs:
        yield gs


@pytest.fixture
def app(settings: Settings, engine: Engine, galleries: GallerySet) -> FastAPI:
    return create_app(settings, engine=engine, gallery=galleries)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


TokenFactory = Callable[..., str]


@pytest.fixture
def make_token(sessions: sessionmaker[Session]) -> TokenFactory:
    """``make_token(role)`` creates a user of that role and returns a fresh bearer token."""

    def make(role: Role, *, name: str | None = None, days: int = 1) -> str:
        with sessions() as s:
            users = UserService(s)
            user_name = name or f"{role.value}-{secrets.token_hex(3)}"
            if users.users.by_name(user_name) is None:
                users.add_user(user_name, role, actor="test")
            return users.issue_token(user_name, expires_days=days, actor="test").token

    return make


@pytest.fixture
def live_server(app: FastAPI) -> Iterator[str]:
    """The app under a real uvicorn server on a free loopback port; yields its base URL."""
    yield from _serve(app, "http")


@pytest.fixture
def tls_server(app: FastAPI, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``live_server`` over TLS with a self-signed certificate for 127.0.0.1: yields the
    base URL and the certificate (the CA file that verifies it)."""
    directory = tmp_path / "server-tls"
    directory.mkdir()
    cert, key = self_signed_tls(directory)
    for url in _serve(app, "https", ssl_certfile=str(cert), ssl_keyfile=str(key)):
        yield url, cert


def _serve(app: FastAPI, scheme: str, **options: str) -> Iterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield f"{scheme}://127.0.0.1:{config.port}"
    server.should_exit = True
    thread.join(timeout=20)
