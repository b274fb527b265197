"""The auditor HTTP API over the exchange log: roles, filters, exports, logging of actions."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest
from audit_support import Node, TestClient, auditor_app, bearer

from certs.translog import verify_export
from node.audit import AuditFilter, list_events
from node.db.models import Role
from node.settings import Settings


@pytest.fixture
def client(settings: Settings, node: Node) -> Iterator[TestClient]:
    with TestClient(auditor_app(settings, node.engine, node.log)) as c:
        yield c


@pytest.fixture
def auditor(node: Node) -> dict[str, str]:
    return bearer(node.token(Role.AUDITOR))


ENDPOINTS = [
    "/audit/log/entries",
    "/audit/log/export",
    "/audit/log/integrity",
    "/audit/log/dashboard",
]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_auditor_endpoints_need_an_auditor_token(client: TestClient, node: Node, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 401 and r.json()["error"] == "missing_token"
    r = client.get(path, headers=bearer("not-a-token"))
    assert r.status_code == 401
    for role in (Role.OPERATOR, Role.OFFICER, Role.ADMIN):
        r = client.get(path, headers=bearer(node.token(role)))
        assert r.status_code == 403 and r.json()["error"] == "wrong_role"


def test_list_filters_and_pages(client: TestClient, auditor: dict[str, str]) -> None:
    r = client.get("/audit/log/entries", params={"peer": "TH", "limit": 5}, headers=auditor)
    assert r.status_code == 200
    page = r.json()
    assert page["total"] == 7 and len(page["items"]) == 5 and page["next_offset"] == 5
    assert all(i["event"]["peer"] == "TH" for i in page["items"])
    r = client.get(
        "/audit/log/entries", params={"peer": "TH", "offset": 5, "limit": 5}, headers=auditor
    )
    assert len(r.json()["items"]) == 2 and r.json()["next_offset"] is None
    r = client.get(
        "/audit/log/entries",
        params={"type": "query_refused", "reason": "quota_exceeded"},
        headers=auditor,
    )
    assert [i["event"]["peer"] for i in r.json()["items"]] == ["ID"]
    r = client.get(
        "/audit/log/entries",
        params={"since": "2020-01-01T00:00:00Z", "until": "2099-01-01T00:00:00Z"},
        headers=auditor,
    )
    assert r.json()["total"] == 12 + 3  # the three searches above were logged too


@pytest.mark.parametrize(
    "params",
    [
        {"peer": "thailand"},
        {"type": "DROP TABLE"},
        {"since": "yesterday"},
        {"since": "2026-01-01T00:00:00"},  # no time zone
        {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        {"limit": "0"},
        {"offset": "-1"},
    ],
)
def test_bad_filter_values_get_422(
    client: TestClient, auditor: dict[str, str], params: dict[str, str]
) -> None:
    r = client.get("/audit/log/entries", params=params, headers=auditor)
    assert r.status_code == 422, r.text
    assert set(r.json()) == {"error", "detail"}


def test_searches_and_exports_are_logged(
    client: TestClient, auditor: dict[str, str], node: Node
) -> None:
    client.get("/audit/log/entries", params={"peer": "ID"}, headers=auditor)
    client.get("/audit/log/export", params={"format": "csv"}, headers=auditor)
    client.get("/audit/log/dashboard", headers=auditor)
    client.get("/audit/log/integrity", headers=auditor)  # reads of the log
    client.get("/audit-events", params={"action": "user.add"}, headers=auditor)  # of the table
    actions, _ = list_events(node.log, AuditFilter(type="auditor_action"))
    assert [a.event["action"] for a in actions] == [
        "search",
        "export",
        "dashboard",
        "integrity",
        "events",
    ]
    assert actions[3].event["details"] == {"ok": True}
    assert actions[4].event["details"]["action"] == "user.add"
    assert actions[0].event["details"]["peer"] == "ID"
    assert actions[0].event["actor"].startswith("user:auditor-")
    assert actions[1].event["details"]["format"] == "csv"


def test_json_export_verifies_offline(
    client: TestClient, auditor: dict[str, str], node: Node
) -> None:
    r = client.get("/audit/log/export", headers=auditor)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert "attachment" in r.headers["content-disposition"]
    report = verify_export(r.content, node.log.verifying_key)
    assert report.entries_verified == 12


def test_csv_export(client: TestClient, auditor: dict[str, str]) -> None:
    r = client.get("/audit/log/export", params={"format": "csv"}, headers=auditor)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 12 and '"type":"query_received"' in rows[0]["data"]
    r = client.get("/audit/log/export", params={"format": "xml"}, headers=auditor)
    assert r.status_code == 422


def test_integrity_and_dashboard(client: TestClient, auditor: dict[str, str]) -> None:
    r = client.get("/audit/log/integrity", headers=auditor)
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is True and body["tree_size"] == 12
    assert body["latest_checkpoint"]["size"] == 12 and body["checkpoints_checked"] == 1
    board = client.get("/audit/log/dashboard", headers=auditor).json()
    assert board["refusals"] == {"bad_signature": 1, "quota_exceeded": 1}
    assert board["hit_rate"]["inbound"]["rate"] == pytest.approx(0.5)
    assert board["integrity"]["ok"] is True


def test_a_tampered_head_is_reported_not_refused(settings: Settings, node: Node) -> None:
    """A head row that is no compact range is tampering to report (ok false), not a 403."""
    from sqlalchemy import update

    from certs.translog import schema

    hashes = b"".join(node.log.head().hashes)
    with node.engine.begin() as conn:
        conn.execute(update(schema.head).values(compact_range=hashes[:40]))
    with TestClient(auditor_app(settings, node.engine, node.log)) as c:
        auditor = bearer(node.token(Role.AUDITOR))
        r = c.get("/audit/log/integrity", headers=auditor)
        board = c.get("/audit/log/dashboard", headers=auditor)
    assert r.status_code == 200, r.text
    assert (r.json()["ok"], r.json()["reason"]) == (False, "head_mismatch")
    assert board.status_code == 200 and board.json()["integrity"]["ok"] is False


def test_export_before_any_checkpoint_is_404(settings: Settings, node: Node) -> None:
    from sqlalchemy import text

    with node.engine.begin() as conn:
        conn.execute(text("DELETE FROM translog_cosignatures"))
        conn.execute(text("DELETE FROM translog_checkpoints"))
    with TestClient(auditor_app(settings, node.engine, node.log)) as c:
        r = c.get("/audit/log/export", headers=bearer(node.token(Role.AUDITOR)))
    assert r.status_code == 404 and r.json()["error"] == "no_checkpoint"


def test_no_exchange_log_is_503(settings: Settings, node: Node) -> None:
    with TestClient(auditor_app(settings, node.engine, None)) as c:
        r = c.get("/audit/log/entries", headers=bearer(node.token(Role.AUDITOR)))
    assert r.status_code == 503 and r.json()["error"] == "no_exchange_log"


def test_ui_page_is_self_contained(client: TestClient) -> None:
    r = client.get("/audit/ui")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "connect-src 'self'" in r.headers["content-security-policy"]
    assert "http://" not in r.text and "https://" not in r.text  # no CDN: nodes are offline


def test_export_window(client: TestClient, auditor: dict[str, str], node: Node) -> None:
    window = {"since": "2099-01-01T00:00:00Z", "until": "2099-01-02T00:00:00Z"}
    r = client.get("/audit/log/export", params=window, headers=auditor)
    assert r.status_code == 200
    assert verify_export(r.content, node.log.verifying_key).entries_verified == 0
    r = client.get("/audit/log/export", params={**window, "format": "csv"}, headers=auditor)
    assert r.text.strip() == "index,created_at,leaf_hash,data"
    bad = {"since": "2099-01-02T00:00:00Z", "until": "2099-01-01T00:00:00Z"}
    r = client.get("/audit/log/export", params=bad, headers=auditor)
    assert r.status_code == 422 and r.json()["error"] == "bad_range"
