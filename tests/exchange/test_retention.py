"""Retention on a served node: ``bdx serve``'s housekeeping prunes the exchange log's entries
and the audit trail's events from before ``exchange_log_days``, the officers' query history
forgets the queries pruned (``GET /queries/{id}`` answers 404 as for an unknown query), and
the log still passes its audit. TH asks, ID answers; entries are aged by moving their store
time back (two years cannot pass in a test)."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import delete, func, select, update

from certs.pki.bootstrap import build_region, write_region
from certs.translog import audit_store, decode_event
from certs.translog import schema as log_schema
from matcher.fingerprint import iso19794_2
from matcher.synthetic import synthetic_templates
from node.audit import retention
from node.db.models import AuditEvent
from node.exchange.setup import apply_retention, housekeeping_round
from node.repositories.audit import AuditRepository
from tests.exchange.service_support import ServiceNode, serving

DAYS = 730


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServiceNode]]:
    root = tmp_path_factory.mktemp("retention-region")
    write_region(build_region(("TH", "ID")), root)
    fingers = synthetic_templates(2, 2, seed=29)
    with serving(tmp_path_factory.mktemp("retention-nodes"), root, ("TH", "ID")) as served:
        served["ID"].enrol(["id-0", "id-1"], [f[0] for f in fingers])
        yield served


def _send(th: ServiceNode, case_ref: str) -> str:
    probe = synthetic_templates(2, 2, seed=29)[0][1]
    body = {
        "peers": ["ID"],
        "purpose": "asylum",
        "modality": "fingerprint",
        "templates": [
            {"data": base64.b64encode(iso19794_2.encode(probe)).decode(), "finger_position": 1}
        ],
        "case_ref": case_ref,
    }
    r = httpx.post(th.api_url + "/queries", json=body, headers=_auth(th), timeout=60)
    assert r.status_code == 200, r.text
    query_id: str = r.json()["results"][0]["query_id"]
    return query_id


def _auth(th: ServiceNode) -> dict[str, str]:
    return {"Authorization": f"Bearer {th.token}"}


def _age(th: ServiceNode, below: int, days: int) -> None:
    """Move the store time of the log's entries below index ``below`` ``days`` back.

    The checkpoints of smaller trees, signed while those entries were appended, would be as
    old in a log that old; a signed time cannot be moved back, and such a checkpoint proves
    the entries after it recent (a pruning stops before them), so they go (with their
    cosignatures): the checkpoints left still verify the whole log."""
    t, c, s = log_schema.entries, log_schema.checkpoints, log_schema.cosignatures
    old = datetime.now(UTC) - timedelta(days=days)
    with th.exchange.log.engine.begin() as conn:
        conn.execute(update(t).where(t.c.leaf_index < below).values(created_at=old))
        young = select(c.c.id).where(c.c.tree_size < below)
        conn.execute(delete(s).where(s.c.checkpoint_id.in_(young)))
        conn.execute(delete(c).where(c.c.tree_size < below))


def test_housekeeping_prunes_the_old_log_audit_trail_and_history(
    nodes: dict[str, ServiceNode], caplog: pytest.LogCaptureFixture
) -> None:
    th = nodes["TH"]
    log = th.exchange.log
    old_query = _send(th, "old-case")
    with th.app.state.sessions() as session:
        old_event = AuditRepository(session).record("test", "test.old", "old-target").id
        session.commit()
    assert httpx.get(f"{th.api_url}/queries/{old_query}", headers=_auth(th)).status_code == 200
    aged = log.size()
    _age(th, aged, DAYS + 1)
    with th.app.state.sessions() as session:
        session.execute(
            update(AuditEvent)
            .where(AuditEvent.id == old_event)
            .values(occurred_at=datetime.now(UTC) - timedelta(days=DAYS + 1))
        )
        session.commit()
    new_query = _send(th, "new-case")

    with caplog.at_level(logging.INFO, logger="node.exchange.setup"):
        anyio.run(housekeeping_round, th.exchange, 300.0)

    assert log.pruned_size() == aged
    assert all(e.pruned for e in log.entries(0, aged))
    pruned_events = [decode_event(e.data) for e in log.entries(aged) if b'"log_pruned"' in e.data]
    assert [(p["boundary"], p["count"]) for p in pruned_events] == [(aged, aged)]
    report = audit_store(log)
    assert report.entries_pruned == aged
    # The history forgets the pruned query: 404 as for an unknown one; the new one stays.
    r = httpx.get(f"{th.api_url}/queries/{old_query}", headers=_auth(th))
    assert r.status_code == 404 and r.json()["error"] == "unknown_query"
    assert httpx.get(f"{th.api_url}/queries/{new_query}", headers=_auth(th)).status_code == 200
    listed: list[dict[str, Any]] = httpx.get(
        f"{th.api_url}/queries", params={"limit": 1000}, headers=_auth(th)
    ).json()["items"]
    assert [q["query_id"] for q in listed] == [new_query]
    with th.app.state.sessions() as session:
        left = session.execute(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "test.old")
        ).scalar()
        runs = session.execute(
            select(AuditEvent.actor, AuditEvent.details).where(AuditEvent.action == "audit.prune")
        ).all()
    assert left == 0
    # The run is recorded in the audit trail, by the node itself.
    assert [(actor, details["entries_pruned"]) for actor, details in runs] == [("system", aged)]
    # One log line, with counts and never an entry's contents.
    lines = [r.getMessage() for r in caplog.records if "retention" in r.getMessage()]
    assert len(lines) == 1 and f"{aged} exchange log entries pruned" in lines[0]
    assert old_query not in lines[0] and "old-case" not in lines[0]


def test_housekeeping_prunes_a_backlog_a_bounded_batch_a_round(
    nodes: dict[str, ServiceNode],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    th = nodes["TH"]
    log = th.exchange.log
    _send(th, "backlog")
    start, aged = log.pruned_size(), log.size()
    _age(th, aged, DAYS + 1)
    monkeypatch.setattr(retention, "PRUNE_BATCH", 2)
    monkeypatch.setattr(retention, "ROUND_BATCHES", 1)
    th.exchange.pruned_at = float("-inf")
    with caplog.at_level(logging.INFO, logger="node.exchange.setup"):
        anyio.run(housekeeping_round, th.exchange, 300.0)
        assert log.pruned_size() == start + 2
        lines = [r.getMessage() for r in caplog.records if "retention" in r.getMessage()]
        assert "2 exchange log entries pruned" in lines[-1] and "more next round" in lines[-1]
        anyio.run(housekeeping_round, th.exchange, 300.0)  # the next round goes on at once
        assert log.pruned_size() == start + 4
    audit_store(log)


def test_a_run_stopped_by_a_future_store_time_waits_an_hour_as_a_failed_one(
    nodes: dict[str, ServiceNode],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An entry stamped in the future stops the pruning before it (``complete`` false with a
    reason, and a warning): not a backlog, so the next round does not repeat it; the run
    comes again after ``RETENTION_EVERY_S``, as one that failed."""
    th = nodes["TH"]
    log = th.exchange.log
    _send(th, "future-1")
    aged = log.size()
    _age(th, aged, DAYS + 1)
    _send(th, "future-2")
    t = log_schema.entries
    with log.engine.begin() as conn:  # an old entry whose store time is years ahead
        stamp = datetime.now(UTC) + timedelta(days=5 * 365)
        conn.execute(update(t).where(t.c.leaf_index == aged - 1).values(created_at=stamp))
    th.exchange.pruned_at = float("-inf")
    with caplog.at_level(logging.WARNING):
        report = apply_retention(th.exchange)
        assert report is not None and not report.complete and report.reason is not None
        assert th.exchange.pruned_at > float("-inf")  # waits RETENTION_EVERY_S
        warned = len(caplog.records)
        anyio.run(housekeeping_round, th.exchange, 300.0)
        assert len(caplog.records) == warned  # the next round did not run it again
    with log.engine.begin() as conn:  # put the entry's time back for the module's other tests
        conn.execute(
            update(t)
            .where(t.c.leaf_index == aged - 1)
            .values(created_at=datetime.now(UTC) - timedelta(days=DAYS + 1))
        )
