"""``bdx audit prune``: the exchange log's entries and the audit trail's events from before
``exchange_log_days`` are deleted (the log keeps each entry's leaf hash), the store audit and
exports still verify and count the pruned entries, tampering around the pruned prefix is
detected, and a dry run changes nothing. On SQLite and PostgreSQL; the CLI runs in-process."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from audit_support import BACKENDS, Bdx, Node, auditor_app, bearer, serve
from sqlalchemy import func, select, update

from certs.translog import PRUNED_EVENT, encode_event
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
    assert (doc["audit_events_deleted"], doc["complete"], doc["reason"]) == (1, True, None)
    assert _audit_events(node) == events  # the old one went, the run's audit.prune came
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


@pytest.mark.parametrize("node", BACKENDS, indirect=True)
def test_an_edited_export_passing_entries_off_as_pruned_is_refused(
    bdx: Bdx, node: Node, tmp_path: Path
) -> None:
    """Nothing is pruned in the log: an export edited to mark its first entries pruned has no
    log_pruned event proving it, and verify refuses it (exit 5)."""
    export = tmp_path / "export.json"
    assert bdx("audit", "export", "--format", "json", "--out", str(export))[0] == 0
    doc = json.loads(export.read_text())
    for item in doc["entries"][:OLD]:
        del item["data"]
        item["pruned"] = True
    doc["format"] = "bdx-translog-export/v2"
    export.write_text(json.dumps(doc))
    code, _, err = bdx("audit", "verify", str(export), "--log-key", node.vkey, key=False)
    assert code == TAMPER and "[prune_unproven]" in err


@pytest.mark.parametrize("node", BACKENDS, indirect=True)
def test_an_export_after_a_prune_before_a_checkpoint_is_not_found(
    bdx: Bdx, node: Node, tmp_path: Path
) -> None:
    """No checkpoint holds the pruning yet: exit 4 (not found, as the API's 404), not 5."""
    _age(node)
    assert bdx("audit", "prune")[0] == 0
    export = tmp_path / "export.json"
    code, _, err = bdx("audit", "export", "--format", "json", "--out", str(export))
    assert code == 4 and "[no_checkpoint]" in err, err
    assert bdx("audit", "checkpoint")[0] == 0
    assert bdx("audit", "export", "--format", "json", "--out", str(export))[0] == 0


def _forge_prune(node: Node, previous: int, horizon: str) -> int:
    """Recent entries' bytes erased by hand and a log_pruned event appended for them, with
    ``horizon``; returns the forged boundary."""
    boundary = node.log.size()
    fields = {"boundary": boundary, "count": boundary - previous, "horizon": horizon}
    node.log.append(encode_event(PRUNED_EVENT, {**fields, "previous": previous}))
    t, h = log_schema.entries, log_schema.head
    with node.engine.begin() as conn:
        conn.execute(update(t).where(t.c.leaf_index < boundary).values(data=b""))
        conn.execute(update(h).values(pruned_size=boundary))
    return boundary


@pytest.mark.parametrize("node", BACKENDS, indirect=True)
@pytest.mark.parametrize("forged", ["future", "now", "after_genuine"])
def test_a_forged_log_pruned_event_with_a_recent_horizon_is_tampering(
    bdx: Bdx, node: Node, tmp_path: Path, forged: str
) -> None:
    """Recent entries erased under a forged log_pruned event whose horizon no checkpoint is
    signed after (2099, or a second from now; after a genuine prune too): the store audit,
    an export's verification and a prune refuse it (exit 5, prune_too_recent), before and
    after a checkpoint holds the event."""
    previous = 0
    if forged == "after_genuine":
        _age(node)
        assert bdx("audit", "prune")[0] == 0
        previous = OLD
    node.log.append_many([b'{"type":"note","n":%d}' % i for i in range(5)])
    node.log.issue_checkpoint()
    now = datetime.now(UTC)
    when = now + timedelta(seconds=1) if forged == "now" else datetime(2099, 1, 1, tzinfo=UTC)
    _forge_prune(node, previous, when.isoformat())
    for checkpoint in (False, True):
        if checkpoint:
            node.log.issue_checkpoint()
        code, _, err = bdx("audit", "store")
        assert code == TAMPER and "[prune_too_recent]" in err, err
        size = node.log.size()
        code, _, err = bdx("audit", "prune")
        assert code == TAMPER and "[prune_too_recent]" in err, err
        assert node.log.size() == size
    export = tmp_path / "export.json"
    assert bdx("audit", "export", "--format", "json", "--out", str(export))[0] == 0
    code, _, err = bdx("audit", "verify", str(export), "--log-key", node.vkey, key=False)
    assert code == TAMPER and "[prune_too_recent]" in err, err


@pytest.mark.parametrize("node", BACKENDS, indirect=True)
@pytest.mark.parametrize("tamper", ["lowered", "beyond", "erased"])
def test_prune_refuses_a_tampered_log(bdx: Bdx, node: Node, tamper: str) -> None:
    """Checked before pruning: a lowered boundary, one beyond the tree, bytes erased at the
    boundary. Exit 5 and nothing pruned (no log_pruned event covering the tampering)."""
    _age(node)
    assert bdx("audit", "prune")[0] == 0
    h, t = log_schema.head, log_schema.entries
    with node.engine.begin() as conn:
        if tamper == "lowered":
            conn.execute(update(h).values(pruned_size=OLD - 3))
        elif tamper == "beyond":
            conn.execute(update(h).values(pruned_size=10**6))
        else:
            conn.execute(update(t).where(t.c.leaf_index.in_([OLD, OLD + 1])).values(data=b""))
    size = node.log.size()
    for dry in ((), ("--dry-run",)):
        code, out, err = bdx("audit", "prune", *dry)
        assert code == TAMPER and out == "", err
        assert any(f"[{r}]" in err for r in ("entry_erased", "prune_unrecorded")), err
    assert node.log.size() == size


@pytest.mark.parametrize("node", BACKENDS, indirect=True)
def test_a_prune_is_recorded_with_its_actor(bdx: Bdx, node: Node) -> None:
    _age(node)
    assert bdx("audit", "prune", "--dry-run")[0] == 0
    assert bdx("audit", "prune")[0] == 0
    with node.sessions() as session:
        rows = (
            session.execute(select(AuditEvent).where(AuditEvent.action == "audit.prune"))
            .scalars()
            .all()
        )
        assert len(rows) == 1  # the dry run recorded nothing
        assert rows[0].actor.startswith("cli:")
        details = rows[0].details
    assert (details["entries_pruned"], details["boundary"]) == (OLD, OLD)
    assert details["audit_events_deleted"] == 1 and details["horizon"]
    assert bdx("audit", "prune")[0] == 0  # nothing deleted: nothing recorded
    with node.sessions() as session:
        count = session.execute(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "audit.prune")
        ).scalar()
    assert count == 1


@pytest.mark.parametrize("node", BACKENDS, indirect=True)
def test_a_future_store_time_stops_retention_visibly(
    bdx: Bdx, node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    """An entry stored with a clock years ahead stops the pruning before it: the report says
    so (complete false, a reason) and a warning is logged, without the entry's contents."""
    _age(node)
    t = log_schema.entries
    ahead = datetime.now(UTC) + timedelta(days=1800)
    with node.engine.begin() as conn:
        conn.execute(update(t).where(t.c.leaf_index == 3).values(created_at=ahead))
    for dry in (("--dry-run",), ()):
        with caplog.at_level(logging.WARNING, logger="node.audit.retention"):
            code, out, err = bdx("audit", "prune", "--json", *dry)
        assert code == 0, err
        doc = json.loads(out)
        assert (doc["boundary"], doc["complete"]) == (3, False)
        assert doc["reason"] == "future_store_time"
        assert "[future_store_time]" in err
    lines = [r.getMessage() for r in caplog.records if "retention stopped" in r.getMessage()]
    assert lines and "entry 3" in lines[-1] and "officer" not in lines[-1]


def test_the_retention_setting_is_checked(bdx: Bdx, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BDX_EXCHANGE_LOG_DAYS", "400")
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


@pytest.mark.parametrize(
    ("env", "days"),
    [
        ({"BDX_HIT_REFERENCE_DAYS": "1000"}, 1000),  # not set: follows the follow-up period
        ({"BDX_HIT_REFERENCE_DAYS": "365"}, 730),
        ({"BDX_HIT_REFERENCE_DAYS": "1000", "BDX_EXCHANGE_LOG_DAYS": "1200"}, 1200),
        ({"BDX_HIT_REFERENCE_DAYS": "1", "BDX_EXCHANGE_LOG_DAYS": "1"}, None),  # below a year
        ({"BDX_EXCHANGE_LOG_DAYS": "364"}, None),
        ({"BDX_HIT_REFERENCE_DAYS": "1000", "BDX_EXCHANGE_LOG_DAYS": "800"}, None),
    ],
)
def test_the_retention_period_default_and_floor(
    bdx: Bdx, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], days: int | None
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out, err = bdx("audit", "prune", "--dry-run", "--json")
    if days is None:
        assert code == 2 and "exchange_log_days" in err and "[bad_config]" in err
        return
    assert code == 0, err
    horizon = datetime.fromisoformat(json.loads(out)["horizon"])
    assert abs((datetime.now(UTC) - horizon) - timedelta(days=days)) < timedelta(minutes=5)
