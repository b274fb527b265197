"""Reads of users, subjects and records on a real exchange node reach the tamper-evident log
(``node_action`` entries ``user.list``, ``subject.list``, ``subject.show``, ``record.show``)
as ``token.list`` and ``quota.show`` do, on SQLite and PostgreSQL; never a token or template."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import make_url, select

from certs.pki.bootstrap import build_region, write_region
from matcher.synthetic import synthetic_templates
from node.db.models import Role, TemplateRecord
from node.services.users import UserService
from tests.exchange.service_support import ServiceNode, serving

PG_URL = os.environ.get("BDX_TEST_DATABASE_URL", "")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The node's ``database_url`` setting: none (its own SQLite file), or a private schema on
    $BDX_TEST_DATABASE_URL."""
    if request.param == "sqlite":
        yield {}
        return
    if not PG_URL.startswith("postgresql"):
        pytest.skip("needs PostgreSQL: set BDX_TEST_DATABASE_URL")
    schema = f"reads_{secrets.token_hex(4)}"
    url = make_url(PG_URL)
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    try:
        options = {"options": f"-csearch_path={schema}"}
        yield {"database_url": url.update_query_dict(options).render_as_string(hide_password=False)}
    finally:
        with psycopg.connect(conninfo, autocommit=True) as c:
            c.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_reads_reach_the_tamper_evident_log(tmp_path: Path, database: dict[str, str]) -> None:
    root = tmp_path / "region"
    write_region(build_region(("TH",)), root)
    with serving(tmp_path / "data", root, ("TH",), **database) as nodes:
        engine = nodes["TH"].app.state.engine
        _read_and_check(nodes["TH"])
    engine.dispose()  # the node's pooled connections (PostgreSQL), once it has stopped


def _read_and_check(th: ServiceNode) -> None:
    th.enrol(["th-0"], [synthetic_templates(1, 1, seed=3)[0][0]])
    tokens = {}
    with th.app.state.sessions() as s:
        users = UserService(s)
        for role in (Role.ADMIN, Role.OPERATOR, Role.AUDITOR):
            users.add_user(role.value, role, actor="test")
            tokens[role] = users.issue_token(role.value, expires_days=1, actor="test").token
        ref = s.scalars(select(TemplateRecord.reference)).one()

    def get(path: str, role: Role) -> httpx.Response:
        headers = {"Authorization": f"Bearer {tokens[role]}"}
        return httpx.get(th.api_url + path, headers=headers, timeout=30)

    for path, role in [
        ("/users", Role.ADMIN),
        ("/subjects", Role.OPERATOR),
        ("/subjects/th-0", Role.OPERATOR),
        (f"/records/{ref}", Role.OPERATOR),
    ]:
        assert get(path, role).status_code == 200, path
    r = httpx.get(
        th.api_url + "/audit/log/entries",
        params={"limit": 1000},
        headers={"Authorization": f"Bearer {tokens[Role.AUDITOR]}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    reads = [
        (e["actor"], e["action"], e["target"], e["details"])
        for e in (i["event"] for i in r.json()["items"])
        if e["type"] == "node_action" and e["action"].endswith((".list", ".show"))
    ]
    assert reads[0][:3] == ("user:admin", "user.list", None)  # the node's own users too
    assert set(reads[0][3]) == {"returned", "tokens"} and reads[0][3]["returned"] >= 3
    assert reads[1:] == [
        ("user:operator", "subject.list", None, {"limit": 100, "after": 0, "returned": 1}),
        ("user:operator", "subject.show", "th-0", {"records": 1, "encounters": 0}),
        ("user:operator", "record.show", ref, {}),
    ]
    assert all(t not in r.text for t in tokens.values())
