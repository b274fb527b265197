"""Retention of the exchange log: pruning the bytes of an old prefix of entries keeps the
tree, checkpoints and proofs verifiable, is recorded in the log, and anything else that
deletes bytes (or moves the boundary) is detected as tampering."""
# ruff: noqa: F811 - fixtures are imported from test_translog_support and requested by name

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, update
from test_translog_support import (  # noqa: F401 - fixtures
    Clock,
    backend,
    clock,
    engine,
    event,
    log,
    log_key,
    new_engine,
)

from certs.merkle import verify_consistency, verify_inclusion
from certs.translog import (
    EXPORT_FORMAT,
    EXPORT_FORMAT_PRUNED,
    PRUNED_EVENT,
    Entry,
    ExportFormatError,
    HorizonTooRecentError,
    NotFoundError,
    SigningKey,
    TamperedError,
    TransparencyLog,
    audit_store,
    decode_event,
    encode_event,
    export_csv,
    export_json,
    schema,
    verify_export,
)
from certs.translog.params import MIN_RETENTION_DAYS

OLD, NEW = 6, 4  # entries appended before the horizon, and after it


def _grow(log: TransparencyLog, clock: Clock) -> datetime:
    """OLD entries, a checkpoint, then (a day later) NEW ones and a checkpoint; returns the
    horizon between them, and leaves the clock the shortest retention past it (a pruning
    refuses a later horizon)."""
    for i in range(OLD):
        log.append(event(i))
        clock.advance(10)
    log.issue_checkpoint()
    clock.advance(86400)
    horizon = datetime.fromtimestamp(clock.now, UTC)
    for i in range(OLD, OLD + NEW):
        log.append(event(i))
        clock.advance(10)
    log.issue_checkpoint()
    clock.advance(MIN_RETENTION_DAYS * 86400)
    return horizon


def test_pruning_deletes_the_old_prefix_and_the_tree_still_verifies(
    log: TransparencyLog, clock: Clock
) -> None:
    horizon = _grow(log, clock)
    root = log.root()
    size = log.size()
    old_proof = log.inclusion_proof(2, size)
    result = log.prune(horizon)
    assert (result.pruned, result.boundary, result.previous) == (OLD, OLD, 0)
    assert log.pruned_size() == OLD
    entries = list(log.entries())
    assert [e.pruned for e in entries[:OLD]] == [True] * OLD
    assert all(e.data == b"" for e in entries[:OLD])
    assert not any(e.pruned for e in entries[OLD:])
    # The tree is the same: the old root is a prefix of the new one, proofs still verify.
    assert log.root(size) == root
    assert log.inclusion_proof(2, size) == old_proof
    verify_inclusion(entries[2].leaf_hash, 2, size, old_proof, root)
    log.issue_checkpoint()
    verify_consistency(size, log.size(), log.consistency_proof(size), root, log.root())
    report = audit_store(log)
    assert (report.entries_checked, report.entries_pruned) == (log.size(), OLD)
    # Nothing older left: a second prune does nothing, appends nothing.
    again = log.prune(horizon)
    assert (again.pruned, again.boundary, again.event_index) == (0, OLD, None)


def test_the_pruning_is_logged_as_an_event_without_contents(
    log: TransparencyLog, clock: Clock
) -> None:
    horizon = _grow(log, clock)
    before = log.size()
    result = log.prune(horizon)
    assert result.event_index == before == log.size() - 1
    recorded = decode_event(log.entry(before).data)
    assert recorded == {
        "event": "log_pruned",
        "v": 1,
        "boundary": OLD,
        "previous": 0,
        "count": OLD,
        "horizon": horizon.isoformat(),
    }


def test_pruning_stops_at_the_first_entry_not_older_and_goes_in_batches(
    log: TransparencyLog, clock: Clock
) -> None:
    horizon = _grow(log, clock)
    assert log.prunable(horizon) == (0, OLD)
    first = log.prune(horizon, limit=4)
    assert (first.pruned, first.boundary) == (4, 4)
    assert log.prunable(horizon) == (4, OLD - 4)
    second = log.prune(horizon, limit=4)
    assert (second.pruned, second.boundary, second.previous) == (OLD - 4, OLD, 4)
    # An old entry after a newer one (the clock stepped back) waits for the newer one.
    clock.now -= 10 * 86400
    log.append(event(99))
    clock.now += 10 * 86400
    assert log.prune(horizon).pruned == 0
    assert audit_store(log).entries_pruned == OLD


def test_a_dry_run_counts_and_changes_nothing(log: TransparencyLog, clock: Clock) -> None:
    horizon = _grow(log, clock)
    size = log.size()
    assert log.prunable(horizon) == (0, OLD)
    assert log.prunable(horizon, limit=2) == (0, 2)
    assert (log.size(), log.pruned_size()) == (size, 0)
    assert not any(e.pruned for e in log.entries())


def test_export_of_a_pruned_range_verifies_and_counts_the_pruned(
    log: TransparencyLog, clock: Clock
) -> None:
    horizon = _grow(log, clock)
    log.prune(horizon)
    log.issue_checkpoint()
    data = export_json(log)
    doc = json.loads(data)
    assert doc["format"] == EXPORT_FORMAT_PRUNED
    first = doc["entries"][0]
    assert first["pruned"] is True and "data" not in first and first["leaf_hash"]
    report = verify_export(data, log.verifying_key)
    assert (report.entries_verified, report.entries_pruned) == (log.size(), OLD)
    assert report.to_json()["entries_pruned"] == OLD
    # A range after the boundary stays v1, for verifiers that predate pruning.
    later = json.loads(export_json(log, start=OLD))
    assert later["format"] == EXPORT_FORMAT
    assert verify_export(export_json(log, start=OLD), log.verifying_key).entries_pruned == 0
    # CSV: a pruned entry has its index, time and leaf hash, an empty data cell.
    rows = list(csv.reader(io.StringIO(export_csv(log))))
    assert rows[0] == ["index", "created_at", "leaf_hash", "data"]
    assert rows[1][0] == "0" and rows[1][2] and rows[1][3] == ""
    assert rows[OLD + 1][3].startswith("{")


def test_tampering_with_a_pruned_export_is_detected(log: TransparencyLog, clock: Clock) -> None:
    horizon = _grow(log, clock)
    log.prune(horizon)
    log.issue_checkpoint()
    doc = json.loads(export_json(log))
    altered = json.loads(json.dumps(doc))
    altered["entries"][1]["leaf_hash"] = "00" * 32
    with pytest.raises(TamperedError) as info:
        verify_export(json.dumps(altered).encode(), log.verifying_key)
    assert info.value.reason == "inclusion_failed" and info.value.index == 1
    # An entry not pruned in the log cannot be passed off as pruned after unpruned ones.
    hidden = json.loads(json.dumps(doc))
    item = hidden["entries"][OLD + 1]
    del item["data"]
    item["pruned"] = True
    with pytest.raises(TamperedError) as info:
        verify_export(json.dumps(hidden).encode(), log.verifying_key)
    assert info.value.reason == "bad_pruned_entry"
    # A v1 export holds no pruned entries.
    older = json.loads(json.dumps(doc))
    older["format"] = EXPORT_FORMAT
    with pytest.raises(ExportFormatError):
        verify_export(json.dumps(older).encode(), log.verifying_key)


def _tamper(engine: Engine, **values: object) -> None:
    h = schema.head
    with engine.begin() as conn:
        conn.execute(update(h).values(**values))


def _erase(engine: Engine, lo: int, hi: int) -> None:
    t = schema.entries
    with engine.begin() as conn:
        conn.execute(update(t).where(t.c.leaf_index >= lo, t.c.leaf_index < hi).values(data=b""))


def test_bytes_deleted_beyond_the_boundary_are_tampering(
    log: TransparencyLog, engine: Engine, clock: Clock
) -> None:
    horizon = _grow(log, clock)
    log.prune(horizon, limit=3)
    _erase(engine, 3, 5)
    with pytest.raises(TamperedError) as info:
        audit_store(log)
    assert (info.value.reason, info.value.index) == ("entry_erased", 3)


def test_bytes_deleted_with_the_boundary_raised_are_tampering(
    log: TransparencyLog, engine: Engine, clock: Clock
) -> None:
    horizon = _grow(log, clock)
    log.prune(horizon, limit=3)
    _erase(engine, 3, 5)
    _tamper(engine, pruned_size=5)
    with pytest.raises(TamperedError) as info:
        audit_store(log)
    assert info.value.reason == "prune_unrecorded"


def test_a_lowered_boundary_is_tampering(
    log: TransparencyLog, engine: Engine, clock: Clock
) -> None:
    horizon = _grow(log, clock)
    log.prune(horizon)
    _tamper(engine, pruned_size=2)
    with pytest.raises(TamperedError) as info:
        audit_store(log)
    assert (info.value.reason, info.value.index) == ("prune_boundary_lowered", 2)


def test_an_altered_leaf_hash_of_a_pruned_entry_is_tampering(
    log: TransparencyLog, engine: Engine, clock: Clock
) -> None:
    horizon = _grow(log, clock)
    log.prune(horizon)
    t = schema.entries
    with engine.begin() as conn:
        conn.execute(update(t).where(t.c.leaf_index == 4).values(leaf_hash=b"\x01" * 32))
    with pytest.raises(TamperedError) as info:
        audit_store(log)
    assert info.value.reason in ("tree_mismatch", "checkpoint_mismatch")
    assert info.value.index is not None and info.value.index <= 4


def test_pruning_while_others_append_keeps_the_tree_whole(
    log: TransparencyLog, clock: Clock
) -> None:
    """A pruning locks the head row as appends do: batches of one interleave with appenders
    and the audit passes, each log_pruned event recording the boundary it set."""
    horizon = _grow(log, clock)
    errors: list[BaseException] = []

    def append() -> None:
        try:
            for i in range(20):
                log.append(event(1000 + i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    appenders = [threading.Thread(target=append) for _ in range(3)]
    for thread in appenders:
        thread.start()
    pruned = 0
    while (result := log.prune(horizon, limit=1)).pruned:
        pruned += result.pruned
    for thread in appenders:
        thread.join()
    assert not errors and pruned == OLD and log.pruned_size() == OLD
    assert log.size() == OLD + NEW + 60 + OLD  # one log_pruned event a batch
    log.issue_checkpoint()
    report = audit_store(log)
    assert (report.entries_pruned, report.tree_size) == (OLD, log.size())


def test_a_pruning_while_the_store_is_audited_is_no_alarm(
    engine: Engine, log_key: SigningKey, clock: Clock
) -> None:
    """The audit reads the head, then the entries in chunks: a pruning between (it moves the
    boundary past entries the audit reads next, and logs its event beyond the tree audited)
    raises no false alarm."""

    class PrunedMidway(TransparencyLog):
        horizon: datetime | None = None

        def entries(self, start: int = 0, end: int | None = None) -> Iterator[Entry]:
            for entry in super().entries(start, end):
                if self.horizon is not None and entry.index == 1:
                    self.prune(self.horizon)  # entries 1.. lose their bytes meanwhile
                    self.horizon = None
                    entry = next(super().entries(entry.index, entry.index + 1))
                yield entry

    log = PrunedMidway.open(engine, log_key, clock=clock)
    horizon = _grow(log, clock)
    log.prune(horizon, limit=1)
    log.horizon = horizon
    report = audit_store(log)
    # Entry 0 was pruned before, entry 1 read after the pruning; the rest of its chunk was
    # read before, with their bytes (and checked by them).
    assert report.entries_pruned == 2 and log.horizon is None
    assert audit_store(log).entries_pruned == OLD


def _mark_pruned(doc: dict[str, object], lo: int, hi: int) -> bytes:
    """The export ``doc`` edited to pass its entries ``lo..hi-1`` off as pruned (v2)."""
    entries = doc["entries"]
    assert isinstance(entries, list)
    for item in entries[lo:hi]:
        item.pop("data", None)
        item["pruned"] = True
    doc["format"] = EXPORT_FORMAT_PRUNED
    return json.dumps(doc).encode()


def test_an_export_edited_to_show_entries_pruned_is_refused(
    log: TransparencyLog, clock: Clock
) -> None:
    """An export carries the log_pruned event (proven under its checkpoint) whose boundary
    covers its pruned entries: entries the log did not prune cannot be passed off as pruned."""
    horizon = _grow(log, clock)
    # Nothing pruned in the log: an edited export has no evidence.
    with pytest.raises(TamperedError) as info:
        verify_export(_mark_pruned(json.loads(export_json(log)), 0, 5), log.verifying_key)
    assert info.value.reason == "prune_unproven"
    log.prune(horizon, limit=3)
    log.issue_checkpoint()
    doc = json.loads(export_json(log))
    assert doc["pruning"]["index"] == OLD + NEW
    assert verify_export(json.dumps(doc).encode(), log.verifying_key).entries_pruned == 3
    # Entries beyond the recorded boundary marked pruned too.
    with pytest.raises(TamperedError) as info:
        verify_export(_mark_pruned(json.loads(json.dumps(doc)), 0, 8), log.verifying_key)
    assert (info.value.reason, info.value.index) == ("prune_unproven", 3)
    # The evidence left out, or pointing to an entry that is not a log_pruned event.
    for edit in ("drop", "other"):
        altered = json.loads(json.dumps(doc))
        if edit == "drop":
            del altered["pruning"]
        else:
            other = next(e for e in altered["entries"] if e["index"] == OLD)
            altered["pruning"] = {
                "index": OLD,
                "data": other["data"],
                "inclusion_proof": other["inclusion_proof"],
            }
        with pytest.raises(TamperedError) as info:
            verify_export(json.dumps(altered).encode(), log.verifying_key)
        assert info.value.reason == "prune_unproven"


def test_an_export_whose_checkpoint_predates_the_pruning_is_refused(
    log: TransparencyLog, clock: Clock
) -> None:
    horizon = _grow(log, clock)
    log.prune(horizon)  # its event is beyond the latest checkpoint
    with pytest.raises(NotFoundError) as info:
        export_json(log)
    assert info.value.reason == "no_checkpoint"


def _backdate(engine: Engine, lo: int, hi: int, when: datetime) -> None:
    t = schema.entries
    with engine.begin() as conn:
        conn.execute(
            update(t).where(t.c.leaf_index >= lo, t.c.leaf_index < hi).values(created_at=when)
        )


def test_a_pruning_stops_before_entries_a_signed_checkpoint_proves_recent(
    log: TransparencyLog, engine: Engine, clock: Clock
) -> None:
    """Store times are not signed: entries appended after a checkpoint signed after the
    horizon are not pruned, even with their store time moved back before it."""
    horizon = _grow(log, clock)  # its last checkpoint (size OLD + NEW) is after the horizon
    log.append_many([event(100), event(101)])
    _backdate(engine, OLD, OLD + NEW + 2, horizon.replace(year=horizon.year - 1))
    assert log.prunable(horizon) == (0, OLD + NEW)
    result = log.prune(horizon)
    assert (result.pruned, result.boundary) == (OLD + NEW, OLD + NEW)
    assert not log.prune(horizon).pruned
    log.issue_checkpoint()
    assert audit_store(log).entries_pruned == OLD + NEW


def _forged_prune(
    log: TransparencyLog, engine: Engine, previous: int, boundary: int, horizon: datetime
) -> None:
    """A pruning done by hand in the database, its event appended as a pruning would."""
    _erase(engine, previous, boundary)
    _tamper(engine, pruned_size=boundary)
    fields = {
        "boundary": boundary,
        "previous": previous,
        "count": boundary - previous,
        "horizon": horizon.isoformat(),
    }
    log.append(encode_event(PRUNED_EVENT, fields))


def test_entries_pruned_despite_a_signed_checkpoint_are_tampering(
    log: TransparencyLog, engine: Engine, clock: Clock
) -> None:
    horizon = _grow(log, clock)  # its last checkpoint (size OLD + NEW) is after the horizon
    log.append_many([event(100), event(101)])
    _forged_prune(log, engine, 0, OLD + NEW + 2, horizon)
    log.issue_checkpoint()
    with pytest.raises(TamperedError) as info:
        audit_store(log)
    assert (info.value.reason, info.value.index) == ("prune_too_recent", OLD + NEW)


def test_a_pruning_refuses_a_horizon_within_the_shortest_retention(
    log: TransparencyLog, clock: Clock
) -> None:
    """The shortest retention is enforced by the log itself, not only by the node's setting:
    a horizon later than now less MIN_RETENTION_DAYS is refused and nothing is pruned."""
    _grow(log, clock)
    now = datetime.fromtimestamp(clock.now, UTC)
    size = log.size()
    for horizon in (now - timedelta(days=MIN_RETENTION_DAYS, seconds=-1), now + timedelta(1)):
        with pytest.raises(HorizonTooRecentError) as info:
            log.prune(horizon)
        assert info.value.reason == "horizon_too_recent"
    assert (log.size(), log.pruned_size()) == (size, 0)
    assert log.prune(now - timedelta(days=MIN_RETENTION_DAYS)).pruned == OLD + NEW


@pytest.mark.parametrize("forged", ["future", "now", "after_genuine"])
def test_a_log_pruned_event_with_a_horizon_within_the_retention_is_tampering(
    log: TransparencyLog, engine: Engine, clock: Clock, forged: str
) -> None:
    """Recent entries erased and a log_pruned event appended by hand, with a horizon no
    checkpoint is signed after (in 2099, or a second from now; after a genuine pruning too):
    a pruning refuses such a horizon, so the store audit (before and after a checkpoint holds
    the event), a pruning and an export's verification all refuse the log."""
    horizon = _grow(log, clock)
    previous = 0
    if forged == "after_genuine":
        previous = log.prune(horizon).boundary
    log.append_many([event(100), event(101)])  # recent, and signed
    log.issue_checkpoint()
    now = datetime.fromtimestamp(clock.now, UTC)
    when = now + timedelta(seconds=1) if forged == "now" else datetime(2099, 1, 1, tzinfo=UTC)
    boundary = log.size()
    _forged_prune(log, engine, previous, boundary, when)
    for checkpoint in (False, True):
        if checkpoint:
            log.issue_checkpoint()
        with pytest.raises(TamperedError) as info:
            audit_store(log)
        assert (info.value.reason, info.value.index) == ("prune_too_recent", previous)
    with pytest.raises(TamperedError) as info:
        log.check_pruned_boundary()
    assert info.value.reason == "prune_too_recent"
    with pytest.raises(TamperedError) as info:
        verify_export(export_json(log), log.verifying_key)
    assert (info.value.reason, info.value.index) == ("prune_too_recent", previous)


def test_a_broken_chain_of_log_pruned_events_is_tampering(
    log: TransparencyLog, engine: Engine, clock: Clock
) -> None:
    """Bytes erased and the boundary raised by hand, then a pruning recorded from there: the
    latest event's boundary is the head's, but its previous is not the event before's."""
    horizon = _grow(log, clock)
    log.prune(horizon, limit=3)
    _forged_prune(log, engine, 4, 5, horizon)  # entry 3 erased unrecorded
    log.issue_checkpoint()
    with pytest.raises(TamperedError) as info:
        audit_store(log)
    assert (info.value.reason, info.value.index) == ("prune_chain_broken", 3)


@pytest.mark.parametrize("tamper", ["lowered", "raised", "beyond", "erased", "erased_later"])
def test_a_pruning_refuses_a_tampered_log(
    log: TransparencyLog, engine: Engine, clock: Clock, tamper: str
) -> None:
    """Cheap checks before pruning (not a full audit): a pruning never carries on over a
    tampered boundary or bytes erased beyond it, which its own event would then cover."""
    horizon = _grow(log, clock)
    log.prune(horizon, limit=3)
    expected = {
        "lowered": "entry_erased",  # the entry at a lowered boundary has no bytes
        "raised": "prune_unrecorded",
        "beyond": "prune_unrecorded",
        "erased": "entry_erased",
        "erased_later": "entry_erased",
    }[tamper]
    if tamper == "lowered":
        _tamper(engine, pruned_size=0)
    elif tamper == "raised":
        _erase(engine, 3, 5)
        _tamper(engine, pruned_size=5)
    elif tamper == "beyond":
        _tamper(engine, pruned_size=10**6)
    elif tamper == "erased":
        _erase(engine, 3, 4)
    else:
        _erase(engine, 4, 5)
    size = log.size()
    with pytest.raises(TamperedError) as info:
        log.check_pruned_boundary()
        log.prune(horizon)
    assert info.value.reason == expected
    assert log.size() == size  # no log_pruned event appended over it
