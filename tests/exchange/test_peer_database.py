"""A peer query while the node's database fails under it (another process holds SQLite's
write lock past the busy timeout, as a full disk or a PostgreSQL outage fail the same way):
503 ``database_unavailable`` with Retry-After and one log line, as the API's own routes. Two
real nodes (``serving``), the query posted with the requester's TLS certificate and keys."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

import node.db.engine
from certs.pki.bootstrap import build_region, write_region
from matcher.synthetic import synthetic_templates
from node.api.errors import DATABASE_RETRY_AFTER_S
from tests.exchange.service_support import serving
from tests.exchange.test_peer_limits import ask, client, outcome, signed_query

COUNTRIES = ("TH", "ID")


def test_a_peer_query_while_the_database_is_locked_is_a_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """TH's database write-locked by another connection past its busy timeout (0.5 s here,
    read when the engine is made): appending the query's events to the exchange log failed,
    and the peer got 500 ``internal_error`` with a traceback logged ("peer query failed")."""
    monkeypatch.setattr(node.db.engine, "SQLITE_BUSY_TIMEOUT_S", 0.5)
    region = tmp_path / "region"
    write_region(build_region(COUNTRIES), region)
    fingers = synthetic_templates(2, 2, seed=7)
    with serving(tmp_path / "nodes", region, COUNTRIES) as nodes:
        th = nodes["TH"]
        th.enrol(["th-0"], [fingers[0][0]])
        with client(region, "ID") as http:
            assert outcome(ask(http, th, signed_query(nodes["ID"], "TH", fingers[0][1]))) == "hit"
            holder = sqlite3.connect(
                tmp_path / "nodes" / "th" / "bdx.sqlite3", isolation_level=None
            )
            holder.execute("BEGIN IMMEDIATE")
            try:
                with caplog.at_level(logging.INFO):
                    r = ask(http, th, signed_query(nodes["ID"], "TH", fingers[0][1]))
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            assert (r.status_code, r.json()) == (
                503,
                {
                    "error": "database_unavailable",
                    "detail": "the node's database is unavailable; retry shortly",
                },
            )
            assert r.headers["retry-after"] == str(DATABASE_RETRY_AFTER_S)
            # The responder logs the replay check it could not store; the request, one line:
            routes = ("node.api.errors", "node.exchange.router")
            lines = [r for r in caplog.records if r.name in routes]
            assert [line.getMessage() for line in lines] == [
                "database unavailable on POST /peer/v1/queries: database is locked"
                " (OperationalError)"
            ]
            assert lines[0].exc_info is None and "Traceback" not in caplog.text
            # The lock gone, the next query is answered.
            assert outcome(ask(http, th, signed_query(nodes["ID"], "TH", fingers[0][1]))) == "hit"
