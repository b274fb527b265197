"""Shared fixtures of the exchange-log tests: real databases (SQLite file; PostgreSQL in a
throw-away schema when BDX_TEST_DATABASE_URL is set), real keys, a controllable clock."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from sqlalchemy import Engine, create_engine, text

from certs.translog import SigningKey, TransparencyLog, metadata
from certs.translog.sqlite import configure_sqlite

PG_URL = os.environ.get("BDX_TEST_DATABASE_URL")
BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(not PG_URL, reason="BDX_TEST_DATABASE_URL is not set"),
        ],
    ),
]
LOG_NAME = "bdx.test.de/exchange-log"


class Clock:
    """Unix seconds that only move when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_engine(backend: str, tmp_path: Path, name: str = "log") -> Iterator[Engine]:
    """Fresh tables on ``backend``; dropped (schema and all) afterwards."""
    if backend == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / name}.db")
        configure_sqlite(engine)
        metadata.create_all(engine)
        yield engine
        engine.dispose()
        return
    assert PG_URL
    schema = f"tl_{uuid.uuid4().hex[:12]}"
    base = create_engine(PG_URL)
    with base.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = base.execution_options(schema_translate_map={None: schema})
    metadata.create_all(engine)
    try:
        yield engine
    finally:
        with base.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        base.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_engine(backend: str, tmp_path: Path) -> Iterator[Callable[[str], Engine]]:
    """Makes further databases on the same backend (other nodes); all dropped at teardown."""
    made: list[Iterator[Engine]] = []

    def make(name: str) -> Engine:
        gen = make_engine(backend, tmp_path, name)
        made.append(gen)
        return next(gen)

    yield make
    for gen in made:
        for _ in gen:  # runs the clean-up after the yield
            pass


@pytest.fixture
def engine(new_engine: Callable[[str], Engine]) -> Engine:
    return new_engine("log")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["ed25519", "ecdsa-p256"])
def log_key(request: pytest.FixtureRequest) -> SigningKey:
    if request.param == "ed25519":
        return SigningKey(LOG_NAME, ed25519.Ed25519PrivateKey.generate())
    return SigningKey(LOG_NAME, ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture
def log(engine: Engine, log_key: SigningKey, clock: Clock) -> TransparencyLog:
    return TransparencyLog.open(engine, log_key, clock=clock)


def witness_key(name: str, kind: str = "ed25519") -> SigningKey:
    if kind == "ed25519":
        return SigningKey(name, ed25519.Ed25519PrivateKey.generate())
    return SigningKey(name, ec.generate_private_key(ec.SECP256R1()))


def event(i: int) -> bytes:
    """A canonical-JSON exchange event (no biometric data)."""
    return (
        f'{{"decision":"answered","event":"query_received","peer":"fr","query_id":"q-{i:05d}"}}'
    ).encode()
