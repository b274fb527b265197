"""``bdx audit prune``: the exchange log's entries and the audit trail's events from before
``exchange_log_days`` are deleted (the log keeps each entry's leaf hash), the store audit and
exports still verify and count the pruned entries, tampering around the pruned prefix is
detected, and a dry run changes nothing. On SQLite and PostgreSQL; the CLI runs in-process."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from audit_support import BACKENDS, Bdx, Node, auditor_app, bearer, serve
from sqlalchemy import func, select, update

from certs.translog import schema as log_schema
from node.audit.query import AuditFilter, dashboard, list_events
from node.db.models import AuditEvent, Role
from node.repositories.audit import AuditRepository
from node.settings import Settings

OLD = 8  # of the node's 12 sample entries, aged past the retention period
TAMPER = 5


def _age(node: Node) -> None:
    """Entries below OLD and one audit event are aged past the default 730 days."""
    then = datetime.now(UTC) - timedelta(days=800)
    t = log_schema.entries
    with node.engine.begin() as conn:
        conn.execute(update(t).where(t.c.leaf_index < OLD).values(created_at=then))
    with node.sessions() as session:
        repo = AuditRepository(session)
        old = repo.record("test", "test.old", None).id
        repo.record("test", "test.new", None)
        session.execute(update(AuditEvent).where(AuditEvent.id == old).values(occurred_at=then))
        session.commit()


def _audit_events(node: Node) -> int:
    with node.sessions() as session:
        return int(session.execute(select(func.count()).select_from(AuditEvent)).scalar() or 0)


def test_prune_help(bdx: Bdx) -> None:
    code, out, _ = bdx("audit", "prune", "--help", key=False)
    assert code == 0 and "--dry-run" in out and "exchange_log_days" in out


@pytest.mark.parametrize("node", BACKENDS, indirect=True)
def test_a_dry_run_counts_and_changes_nothing(bdx: Bdx, node: Node) -> None:
    _age(node)
    size, events = node.log.size(), _audit_events(node)
    code, out, err = bdx("audit", "prune", "--dry-run", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["dry_run"], doc["entries_pruned"], doc["boundary"]) == (True, OLD, OLD)
    assert doc["audit_events_deleted"] == 1
    assert (node.log.size(), node.log.pruned_size(), _audit_events(node)) == (size, 0, events)
    assert not any(e.pruned for e in node.log.entries())
    code, out, _ = bdx("audit", "prune", "--dry-run")
    assert code == 0 and out.startswith(f"would delete the bytes of {OLD} exchange log entries")


@pytest.mark.parametrize("node", BACKENDS, indirect=True)
def test_prune_then_audit_export_and_verify(bdx: Bdx, node: Node, tmp_path: Path) -> None:
    _age(node)
    events = _audit_events(node)
    code, out, err = bdx("audit", "prune", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["dry_run"], doc["entries_pruned"], doc["boundary"]) == (False, OLD, OLD)
    assert (doc["audit_events_deleted"], doc["complete"]) == (1, True)
    assert _audit_events(node) == events - 1
    assert node.log.pruned_size() == OLD
    last = node.log.entry(node.log.size() - 1)
    assert json.loads(last.data)["event"] == "log_pruned"
    # Nothing more to prune: a second run deletes nothing and logs nothing.
    size = node.log.size()
    code, out, _ = bdx("audit", "prune", "--json")
    assert code == 0 and json.loads(out)["entries_pruned"] == 0 and node.log.size() == size

    code, out, err = bdx("audit", "store", "--json")
    assert code == 0, err
    assert json.loads(out)["entries_pruned"] == OLD
    code, out, _ = bdx("audit", "store")
    assert code == 0 and f"({OLD} pruned)" in out
    assert bdx("audit", "checkpoint")[0] == 0
    export = tmp_path / "export.json"
    code, _, err = bdx("audit", "export", "--format", "json", "--out", str(export))
    assert code == 0, err
    code, out, err = bdx(
        "audit", "verify", str(export), "--log-key", node.vkey, "--json", key=False
    )
    assert code == 0, err
    assert json.loads(out)["entries_pruned"] == OLD
    code, out, _ = bdx("audit", "verify", str(export), "--log-key", node.vkey, key=False)
    assert code == 0 and f"({OLD} pruned: leaf hash only)" in out
    csv = tmp_path / "export.csv"
    assert bdx("audit", "export", "--format", "csv", "--out", str(csv))[0] == 0
    rows = csv.read_text().splitlines()
    assert rows[1].endswith(",") and rows[OLD + 1].endswith('}"')
    # Reports over the pruned range count the pruned entries, and do not fail on them.
    items, total = list_events(node.log, AuditFilter(), limit=1000)
    assert [i.type for i in items[:OLD]] == ["pruned"] * OLD and total == node.log.size()
    board = dashboard(node.log, node.engine, AuditFilter())
    assert board.pruned == OLD and board.integrity["ok"] is True
    assert board.integrity["entries_pruned"] == OLD
    code, out, err = bdx("audit", "list", "--json")
    assert code == 0, err


@pytest.mark.parametrize("node", BACKENDS, indirect=True)
def test_bytes_deleted_beyond_the_pruned_prefix_are_tampering(bdx: Bdx, node: Node) -> None:
    _age(node)
    assert bdx("audit", "prune")[0] == 0
    t = log_schema.entries
    with node.engine.begin() as conn:
        conn.execute(update(t).where(t.c.leaf_index == OLD + 1).values(data=b""))
    code, _, err = bdx("audit", "store")
    assert code == TAMPER and "[entry_erased]" in err


@pytest.mark.parametrize("node", BACKENDS, indirect=True)
def test_a_lowered_boundary_is_tampering(bdx: Bdx, node: Node) -> None:
    _age(node)
    assert bdx("audit", "prune")[0] == 0
    h = log_schema.head
    with node.engine.begin() as conn:
        conn.execute(update(h).values(pruned_size=OLD - 3))
    code, _, err = bdx("audit", "store")
    assert code == TAMPER and "[prune_boundary_lowered]" in err


def test_the_retention_setting_is_checked(bdx: Bdx, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BDX_EXCHANGE_LOG_DAYS", "30")
    code, _, err = bdx("audit", "prune", "--dry-run")
    assert code == 2 and "hit_reference_days" in err


def test_the_auditor_api_counts_the_pruned_entries(bdx: Bdx, node: Node, tmp_path: Path) -> None:
    _age(node)
    assert bdx("audit", "prune")[0] == 0
    settings = Settings(data_dir=tmp_path / "data", database_url=node.url, country="XA")
    auditor = bearer(node.token(Role.AUDITOR))
    with serve(auditor_app(settings, node.engine, node.log)) as url:
        board = httpx.get(f"{url}/audit/log/dashboard", headers=auditor, timeout=60)
        assert board.status_code == 200, board.text
        assert board.json()["pruned"] == OLD
        assert board.json()["integrity"]["entries_pruned"] == OLD
        listed = httpx.get(f"{url}/audit/log/entries", headers=auditor, timeout=60).json()
        assert [i["type"] for i in listed["items"][:OLD]] == ["pruned"] * OLD
        assert listed["items"][OLD]["type"] != "pruned"
