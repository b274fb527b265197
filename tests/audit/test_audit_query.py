"""Listing, filtering and aggregating the exchange log (node.audit.query)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from audit_support import BACKENDS, Node
from sqlalchemy import text

from node.audit import AuditFilter, AuditQueryError, dashboard, list_events, quota_use
from node.audit.query import integrity_status, record_auditor_action


def test_filters_select_the_matching_events(node: Node) -> None:
    items, total = list_events(node.log, AuditFilter(peer="TH"))
    assert total == 7 and all(i.event["peer"] == "TH" for i in items)
    refused, total = list_events(node.log, AuditFilter(type="query_refused"))
    assert total == 2 and {i.event["reason"] for i in refused} == {
        "quota_exceeded",
        "bad_signature",
    }
    _, total = list_events(node.log, AuditFilter(outcome="hit"))
    assert total == 2
    _, total = list_events(node.log, AuditFilter(reason="quota_exceeded", peer="ID"))
    assert total == 1
    sent, total = list_events(node.log, AuditFilter(officer="alice"))
    assert total == 1 and sent[0].type == "query_sent" and sent[0].event["purpose"] == "terrorism"
    _, total = list_events(node.log, AuditFilter(purpose="serious_crime"))
    assert total == 5


@pytest.mark.parametrize("node", BACKENDS, indirect=True)
def test_paging_and_time_window(node: Node) -> None:
    first, total = list_events(node.log, AuditFilter(), offset=0, limit=4)
    second, _ = list_events(node.log, AuditFilter(), offset=4, limit=4)
    assert total == node.log.size() == 12
    assert [i.index for i in first + second] == list(range(8))
    future = datetime.now(UTC) + timedelta(days=1)
    assert list_events(node.log, AuditFilter(since=future)) == ([], 0)
    past = datetime.now(UTC) - timedelta(days=1)
    assert list_events(node.log, AuditFilter(since=past, until=future))[1] == 12


@pytest.mark.parametrize("node", BACKENDS, indirect=True)
def test_time_window_bounds_in_any_zone_are_instants(node: Node) -> None:
    """A bound given with an offset means that instant: SQLite dropped the offset and compared
    its wall clock with the stored UTC times (the export then silently lost entries)."""
    from datetime import timezone

    first = min(e.created_at for e in node.log.entries(0))
    bangkok, new_york = timezone(timedelta(hours=7)), timezone(timedelta(hours=-5))
    since = (first - timedelta(minutes=1)).astimezone(bangkok)
    until = (datetime.now(UTC) + timedelta(minutes=1)).astimezone(new_york)
    assert list_events(node.log, AuditFilter(since=since, until=until))[1] == 12
    assert node.log.index_range(since, until) == (0, 12)
    assert list_events(node.log, AuditFilter(until=first.astimezone(bangkok)))[1] == 0


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"peer": "thailand"}, "bad_filter"),
        ({"type": "Query Received"}, "bad_filter"),
        ({"officer": "a b"}, "bad_filter"),
        (
            {"since": datetime(2026, 2, 1, tzinfo=UTC), "until": datetime(2026, 1, 1, tzinfo=UTC)},
            "bad_range",
        ),
    ],
)
def test_bad_filter_values_are_refused(kwargs: dict[str, object], reason: str) -> None:
    with pytest.raises(AuditQueryError) as exc:
        AuditFilter(**kwargs)  # type: ignore[arg-type]
    assert exc.value.reason == reason


def test_bad_paging_is_refused(node: Node) -> None:
    for offset, limit in ((-1, 10), (0, 0), (0, 100_000)):
        with pytest.raises(AuditQueryError):
            list_events(node.log, AuditFilter(), offset=offset, limit=limit)


@pytest.mark.parametrize("node", BACKENDS, indirect=True)
def test_dashboard_aggregates(node: Node) -> None:
    board = dashboard(node.log, node.engine, AuditFilter())
    assert board.daily_queries == [
        {"day": "2026-11-20", "peer": "ID", "direction": "inbound", "queries": 2},
        {"day": "2026-11-20", "peer": "MY", "direction": "outbound", "queries": 1},
        {"day": "2026-11-20", "peer": "TH", "direction": "inbound", "queries": 3},
    ]
    inbound = board.hit_rate["inbound"]
    assert (inbound["hit"], inbound["no_hit"], inbound["refused"]) == (2, 2, 2)
    assert inbound["error"] == 0
    assert inbound["rate"] == pytest.approx(0.5)
    assert board.hit_rate["outbound"]["rate"] is None
    assert board.refusals == {"bad_signature": 1, "quota_exceeded": 1}
    assert {(q["peer"], q["used"]) for q in board.quota} == {("TH", 3), ("ID", 7)}
    assert board.integrity["ok"] is True
    assert board.integrity["latest_checkpoint"]["size"] == 12


def test_quota_window_and_missing_table(node: Node) -> None:
    after = datetime(2026, 11, 21, tzinfo=UTC)
    assert quota_use(node.engine, since=after) == []
    assert len(quota_use(node.engine, until=after)) == 2
    with node.engine.begin() as conn:
        conn.execute(text("DROP TABLE policy_quota_usage"))
    assert quota_use(node.engine) == []


@pytest.mark.parametrize("node", BACKENDS, indirect=True)
def test_integrity_reports_tampering(node: Node) -> None:
    with node.engine.begin() as conn:
        conn.execute(
            text("UPDATE translog_entries SET data = :d WHERE leaf_index = 4"), {"d": b"{}"}
        )
    status = integrity_status(node.log)
    assert status["ok"] is False and status["reason"] == "entry_modified" and status["index"] == 4


@pytest.mark.parametrize("node", BACKENDS, indirect=True)
def test_integrity_reports_an_unparsable_checkpoint(node: Node) -> None:
    """A stored checkpoint overwritten with garbage is reported (ok false), not raised (the
    integrity page and dashboard answered 403 instead of showing the tampering)."""
    with node.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE translog_checkpoints SET note = :n "
                "WHERE id = (SELECT max(id) FROM translog_checkpoints)"
            ),
            {"n": b"garbage"},
        )
    status = integrity_status(node.log)
    assert status["ok"] is False and status["reason"] == "bad_note"


def test_auditor_actions_are_logged_without_biometric_fields(node: Node) -> None:
    index = record_auditor_action(node.log, "user:carol", "search", {"peer": "TH"})
    items, _ = list_events(node.log, AuditFilter(type="auditor_action"))
    assert [i.index for i in items] == [index]
    assert items[0].event["actor"] == "user:carol" and items[0].event["details"] == {"peer": "TH"}
    with pytest.raises(AuditQueryError):
        record_auditor_action(node.log, "user:carol", "search", {"template": "AAAA"})


def test_undecodable_entries_are_listed_not_fatal(node: Node) -> None:
    node.log.append(b"\xff\xfe not json")
    node.log.append(b"[" * 100_000 + b"]" * 100_000)  # past the JSON parser's stack: no crash
    items, total = list_events(node.log, AuditFilter(type="undecodable"))
    assert total == 2 and [i.event["bytes"] for i in items] == [11, 200_000]


@pytest.mark.parametrize("node", BACKENDS, indirect=True)
def test_an_action_and_its_log_entry_commit_together(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log append runs inside the action's transaction: when it fails (a locked database),
    the commit fails and nothing is recorded, where the action used to stay committed without
    its log entry (and commit() raised anyway)."""
    import json

    from sqlalchemy.exc import OperationalError

    from node.audit.actions import mirror_actions
    from node.db.models import AuditEvent
    from node.repositories.audit import AuditRepository

    def actions() -> list[str]:
        events = [json.loads(e.data) for e in node.log.entries(0)]
        return [str(e.get("target")) for e in events if e.get("type") == "node_action"]

    def recorded() -> list[str | None]:
        with node.sessions() as s:
            return [e.target for e in s.query(AuditEvent).filter(AuditEvent.action == "t.act")]

    stop = mirror_actions(node.sessions, node.log, "TH")
    try:
        with node.sessions() as session:
            AuditRepository(session).record("admin:ana", "t.act", "first")
            session.commit()
        assert actions()[-1:] == ["first"] and recorded() == ["first"]

        def locked(*args: object, **kwargs: object) -> None:
            raise OperationalError("UPDATE translog_head", {}, Exception("database is locked"))

        monkeypatch.setattr(node.log, "_lock_head", locked)
        with node.sessions() as session:
            AuditRepository(session).record("admin:ana", "t.act", "second")
            with pytest.raises(OperationalError):
                session.commit()
        assert recorded() == ["first"] and actions()[-1:] == ["first"]
    finally:
        stop()


def test_integrity_reports_a_checkpoint_timestamp_beyond_the_calendar(node: Node) -> None:
    """A stored checkpoint whose timestamp no date holds is reported (ok false), not a 500."""
    from certs.translog import TransparencyLog

    node.log.append(b'{"type":"query_sent","peer":"TH"}')
    far = TransparencyLog.open(node.engine, node.key, clock=lambda: 9.0e15)  # year ~285 million
    far.issue_checkpoint()
    status = integrity_status(node.log)
    assert status["ok"] is False and status["reason"] == "bad_checkpoint"
