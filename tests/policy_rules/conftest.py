"""Database engines for the quota tests: SQLite always, PostgreSQL when configured."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from policy.quota import metadata

PG_URL = os.environ.get("BDX_TEST_DATABASE_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        eng = create_engine(f"sqlite:///{tmp_path / 'quota.db'}", connect_args={"timeout": 30})
        metadata.create_all(eng)
        yield eng
        eng.dispose()
        return
    if not PG_URL:
        pytest.skip("PostgreSQL tests need BDX_TEST_DATABASE_URL (set by .ci/run)")
    schema = f"t_policy_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    eng = create_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"}, pool_size=20)
    metadata.create_all(eng)
    yield eng
    eng.dispose()
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()
