"""Fixtures of the auditor tests: a migrated node database (SQLite file) holding a real
transparency log with exchange events, its key on disk, and ``bdx`` run in-process."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import psycopg
import pytest
from audit_support import LOG_NAME, PG_ENV, Bdx, Node, encode, sample_events
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import insert, make_url

from certs.translog import SigningKey, TransparencyLog
from node.cli import main
from node.db.engine import create_db_engine, session_factory
from node.db.migrate import upgrade
from node.settings import Settings
from policy.quota import metadata as quota_metadata
from policy.quota import quota_usage


def _postgres_schema_url() -> Iterator[str]:
    """A URL whose connections see only a fresh schema on $BDX_TEST_DATABASE_URL, dropped
    afterwards (skips the test when the variable is unset)."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set (e.g. postgresql+psycopg://postgres@127.0.0.1/test)")
    schema = f"bdx_audit_{secrets.token_hex(6)}"
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


@pytest.fixture
def node(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Node]:
    """A populated node database: SQLite, or PostgreSQL for tests parametrized with
    ``@pytest.mark.parametrize("node", BACKENDS, indirect=True)``."""
    for name in list(os.environ):
        if name.startswith("BDX_") and name != PG_ENV:
            monkeypatch.delenv(name)
    if getattr(request, "param", "sqlite") == "sqlite":
        yield from _node(f"sqlite:///{tmp_path / 'node.sqlite3'}", tmp_path, monkeypatch)
    else:
        for url in _postgres_schema_url():
            yield from _node(url, tmp_path, monkeypatch)


def _node(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Node]:
    engine = create_db_engine(url)
    upgrade(engine)
    quota_metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(quota_usage),
            [
                {"peer": "TH", "modality": "fingerprint", "day": date(2026, 11, 20), "used": 3},
                {"peer": "ID", "modality": "face", "day": date(2026, 11, 20), "used": 7},
            ],
        )
    private = ed25519.Ed25519PrivateKey.generate()
    key_file = tmp_path / "log-key.pem"
    key_file.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key = SigningKey(LOG_NAME, private)
    log = TransparencyLog.open(engine, key)
    log.append_many([encode(e) for e in sample_events()])
    log.issue_checkpoint()
    monkeypatch.setenv("BDX_DATABASE_URL", url)
    monkeypatch.setenv("BDX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BDX_COUNTRY", "XA")
    yield Node(engine, url, key, key_file, log, session_factory(engine))
    engine.dispose()


@pytest.fixture
def settings(node: Node, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=node.url, country="XA")


@pytest.fixture
def bdx(capsys: pytest.CaptureFixture[str], node: Node) -> Bdx:
    """``bdx(*args, key=True)`` runs the CLI in-process; returns (exit code, stdout, stderr).
    ``key`` adds ``--signing-key``/``--origin`` for commands that open the log."""

    def run(*args: str, key: bool = True) -> tuple[int, str, str]:
        argv = list(args)
        if key:
            argv += ["--signing-key", str(node.key_file), "--origin", LOG_NAME]
        capsys.readouterr()
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        else:
            code = 0
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
