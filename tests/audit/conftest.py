"""Fixtures of the auditor tests: a migrated node database (SQLite file) holding a real
transparency log with exchange events, its key on disk, and ``bdx`` run in-process."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session, sessionmaker

from certs.translog import SigningKey, TransparencyLog
from node.cli import main
from node.db.engine import create_db_engine, session_factory
from node.db.migrate import upgrade
from node.db.models import Role
from node.services.users import UserService
from node.settings import Settings
from policy.quota import metadata as quota_metadata
from policy.quota import quota_usage

LOG_NAME = "bdx.xa.example/exchange-log"
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


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Node]:
    for name in list(os.environ):
        if name.startswith("BDX_") and name != "BDX_TEST_DATABASE_URL":
            monkeypatch.delenv(name)
    url = f"sqlite:///{tmp_path / 'node.sqlite3'}"
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


Bdx = Callable[..., tuple[int, str, str]]


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


def now() -> datetime:
    return datetime.now(UTC)
