"""Audit export, offline verification, store audit, and tamper detection."""

# ruff: noqa: F811 - fixtures are imported from test_translog_support and requested by name

from __future__ import annotations

import base64
import csv
import io
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from sqlalchemy import Engine, delete, select, update
from test_translog_support import (  # noqa: F401 - fixtures
    LOG_NAME,
    Clock,
    backend,
    clock,
    engine,
    event,
    log,
    new_engine,
    witness_key,
)

from certs.merkle import CompactRange, hash_leaf
from certs.translog import (
    ExportFormatError,
    NotFoundError,
    OriginMismatchError,
    SignatureError,
    SigningKey,
    TamperedError,
    TransparencyLog,
    Witness,
    audit_store,
    export_csv,
    export_json,
    verify_export,
)
from certs.translog import schema as tables
from certs.translog.params import MIN_RETENTION_DAYS


@pytest.fixture
def log_key() -> SigningKey:
    """One log key type here (both are covered by test_translog and the ECDSA test below)."""
    return SigningKey(LOG_NAME, ec.generate_private_key(ec.SECP256R1()))


W1 = witness_key("w1.example/witness")
W2 = witness_key("w2.example/witness", "ecdsa-p256")


def grow(log: TransparencyLog, engine: Engine, clock: Clock, n: int, start: int = 0) -> None:
    """Append ``n`` entries one second apart, then checkpoint; both witnesses cosign."""
    witnesses = [Witness(engine, W1, clock=clock), Witness(engine, W2, clock=clock)]
    for i in range(start, start + n):
        log.append(event(i))
        clock.advance(1)
    signed = log.issue_checkpoint()
    for w in witnesses:
        last = w.latest(LOG_NAME)
        proof = log.consistency_proof(last.checkpoint.size) if last else []
        cosig = w.cosign(signed.to_bytes(), log.verifying_key, proof)
        log.add_cosignature(signed.checkpoint, cosig, w.verifying_key)


@pytest.fixture
def filled(log: TransparencyLog, engine: Engine, clock: Clock) -> TransparencyLog:
    grow(log, engine, clock, 9)
    grow(log, engine, clock, 5, 9)
    grow(log, engine, clock, 7, 14)
    return log


WITNESSES = [W1.verifying_key(), W2.verifying_key()]


def test_export_verifies_offline_with_cosignatures(filled: TransparencyLog) -> None:
    data = export_json(filled)
    report = verify_export(data, filled.verifying_key, WITNESSES, min_cosignatures=2)
    assert (report.tree_size, report.start, report.end, report.entries_verified) == (21, 0, 21, 21)
    assert report.checkpoints_verified == 3
    assert report.cosigners == {
        s: ["w1.example/witness", "w2.example/witness"] for s in (9, 14, 21)
    }
    assert report.root_hash == filled.root()
    assert report.to_json()["range"] == {"start": 0, "end": 21}
    doc = json.loads(data)
    assert doc["format"] == "bdx-translog-export/v1"
    assert [(c["size1"], c["size2"]) for c in doc["consistency"]] == [(9, 14), (14, 21)]
    assert base64.b64decode(doc["entries"][3]["data"]) == event(3)
    # The bytes are canonical: exporting again gives the same bytes.
    assert export_json(filled) == data


def test_export_of_an_ed25519_log(new_engine: Callable[[str], Engine], clock: Clock) -> None:
    engine = new_engine("ed")
    log = TransparencyLog.open(
        engine, SigningKey(LOG_NAME, ed25519.Ed25519PrivateKey.generate()), clock=clock
    )
    grow(log, engine, clock, 3)
    grow(log, engine, clock, 4, 3)
    report = verify_export(export_json(log), log.verifying_key, WITNESSES, min_cosignatures=2)
    assert (report.tree_size, report.checkpoints_verified) == (7, 2)
    audit_store(log)


def test_export_by_time_range_and_index_range(filled: TransparencyLog, clock: Clock) -> None:
    t0 = filled.entry(0).created_at
    since, until = (
        datetime.fromtimestamp(t0.timestamp() + 10, UTC),
        datetime.fromtimestamp(t0.timestamp() + 13, UTC),
    )
    data = export_json(filled, since=since, until=until)
    report = verify_export(data, filled.verifying_key, WITNESSES)
    assert (report.start, report.end) == (10, 13)
    doc = json.loads(data)
    assert [e["index"] for e in doc["entries"]] == [10, 11, 12]
    # Only checkpoints covering the range: sizes 14 and 21.
    assert len(doc["checkpoints"]) == 2
    both = verify_export(export_json(filled, since=since, start=11), filled.verifying_key)
    assert (both.start, both.end) == (11, 21)
    report = verify_export(export_json(filled, start=3, end=5), filled.verifying_key)
    assert (report.start, report.end, report.cosigners[21]) == (3, 5, [])
    # An older checkpoint as the target only covers what it signed.
    first = filled.checkpoints()[0]
    report = verify_export(export_json(filled, checkpoint=first), filled.verifying_key)
    assert (report.tree_size, report.end) == (9, 9)
    empty = verify_export(
        export_json(filled, since=datetime(2000, 1, 1, tzinfo=UTC), until=since.replace(year=2001)),
        filled.verifying_key,
    )
    assert empty.entries_verified == 0


def test_export_needs_a_checkpoint(log: TransparencyLog) -> None:
    log.append(event(0))
    with pytest.raises(NotFoundError) as exc:
        export_json(log)
    assert exc.value.reason == "no_checkpoint"


def test_cosignatures_are_required_of_the_last_checkpoint(
    log: TransparencyLog, engine: Engine, clock: Clock
) -> None:
    """W2 was down while the middle checkpoint was issued: every checkpoint needed both
    cosignatures, so the export of an honest log failed --min-cosignatures 2 for good. The last
    one needs them; the earlier ones are tied to it by consistency proofs."""
    grow(log, engine, clock, 9)
    log.append(event(9))
    middle = log.issue_checkpoint()  # only W1 cosigns it
    w1 = Witness(engine, W1, clock=clock)
    last = w1.latest(LOG_NAME)
    assert last is not None
    cosig = w1.cosign(
        middle.to_bytes(), log.verifying_key, log.consistency_proof(last.checkpoint.size)
    )
    log.add_cosignature(middle.checkpoint, cosig, W1.verifying_key())
    grow(log, engine, clock, 4, 10)
    report = verify_export(export_json(log), log.verifying_key, WITNESSES, min_cosignatures=2)
    assert report.cosigners[10] == ["w1.example/witness"]
    assert len(report.cosigners[14]) == 2
    # a last checkpoint that one witness has not cosigned yet does not pass
    log.append(event(14))
    log.issue_checkpoint()
    with pytest.raises(SignatureError) as exc:
        verify_export(export_json(log), log.verifying_key, WITNESSES, min_cosignatures=1)
    assert exc.value.reason == "too_few_cosignatures"


def test_cosignature_requirements(filled: TransparencyLog, log: TransparencyLog) -> None:
    data = export_json(filled)
    with pytest.raises(SignatureError) as exc:
        verify_export(data, filled.verifying_key, [W1.verifying_key()], min_cosignatures=2)
    assert exc.value.reason == "too_few_cosignatures"
    # A trusted witness's cosignature that does not verify rejects the export.
    doc = json.loads(data)
    note = doc["checkpoints"][0]
    line = next(x for x in note.split("\n") if x.startswith("\u2014 w1.example"))
    _name, sig = line[2:].split(" ")
    raw = bytearray(base64.b64decode(sig))
    raw[-1] ^= 1
    doc["checkpoints"][0] = note.replace(sig, base64.b64encode(bytes(raw)).decode())
    with pytest.raises(SignatureError):
        verify_export(json.dumps(doc).encode(), filled.verifying_key, WITNESSES)
    # Unknown witnesses' lines are ignored.
    verify_export(json.dumps(doc).encode(), filled.verifying_key, [W2.verifying_key()])


def _mutate(data: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    doc = json.loads(data)
    change(doc)
    return json.dumps(doc).encode()


def _flip_b64(value: str) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[0] ^= 0x80
    return base64.b64encode(bytes(raw)).decode()


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        target: Any = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value(target[path[-1]]) if callable(value) else value

    return change


def test_tampered_exports_are_detected(filled: TransparencyLog) -> None:
    data = export_json(filled)
    key = filled.verifying_key
    tamper: list[tuple[Callable[[dict[str, Any]], None], type[Exception], str]] = [
        (_set(["entries", 4, "data"], _flip_b64), TamperedError, "entry_modified"),
        (
            _set(
                ["entries", 4],
                lambda e: {
                    **e,
                    "data": base64.b64encode(b"{}").decode(),
                    "leaf_hash": hash_leaf(b"{}").hex(),
                },
            ),
            TamperedError,
            "inclusion_failed",
        ),
        (lambda d: d["entries"].pop(6), TamperedError, "entry_missing"),
        (lambda d: d["entries"].pop(), TamperedError, "entry_missing"),
        (
            lambda d: d["entries"].__setitem__(slice(2, 4), d["entries"][3:1:-1]),
            TamperedError,
            "entry_reordered",
        ),
        (lambda d: d["entries"].append(d["entries"][0]), TamperedError, "entry_reordered"),
        (_set(["entries", 5, "index"], 6), TamperedError, "entry_missing"),
        (_set(["entries", 0, "inclusion_proof", 1], _flip_b64), TamperedError, "inclusion_failed"),
        (
            _set(["entries", 0, "inclusion_proof"], lambda p: p[:-1]),
            TamperedError,
            "inclusion_failed",
        ),
        (_set(["consistency", 0, "proof", 0], _flip_b64), TamperedError, "consistency_failed"),
        (_set(["consistency", 0, "size1"], 8), ExportFormatError, "bad_export"),
        (lambda d: d["consistency"].pop(), ExportFormatError, "bad_export"),
        (
            _set(["checkpoints", 2], lambda n: n.replace("\n21\n", "\n22\n", 1)),
            SignatureError,
            "bad_signature",
        ),
        (lambda d: d["checkpoints"].reverse(), ExportFormatError, "bad_export"),
        (_set(["checkpoints"], []), ExportFormatError, "bad_export"),
        (_set(["tree_size"], 14), ExportFormatError, "bad_export"),
        (_set(["tree_size"], True), ExportFormatError, "bad_export"),
        (_set(["range", "end"], 40), ExportFormatError, "bad_export"),
        (_set(["format"], "bdx-translog-export/v0"), ExportFormatError, "bad_format"),
        (_set(["origin"], "evil.example/log"), OriginMismatchError, "origin_mismatch"),
        (lambda d: d.pop("entries"), ExportFormatError, "bad_export"),
        (_set(["entries", 1, "leaf_hash"], "zz"), ExportFormatError, "bad_export"),
        (_set(["entries", 1, "inclusion_proof"], ["%%"]), ExportFormatError, "bad_export"),
        (_set(["entries", 1, "inclusion_proof"], "x"), ExportFormatError, "bad_export"),
    ]
    for change, error, reason in tamper:
        with pytest.raises(error) as exc:
            verify_export(_mutate(data, change), key, WITNESSES)
        assert getattr(exc.value, "reason", None) == reason, (reason, exc.value)
    with pytest.raises(ExportFormatError) as not_json:
        verify_export(b"not json", key)
    assert not_json.value.exit_code == 3  # a malformed file, not a failed verification (5)
    with pytest.raises(ExportFormatError):
        verify_export(b"[]", key)
    # nesting deeper than the interpreter's stack, and a lone surrogate in a checkpoint, were
    # RecursionError / UnicodeEncodeError tracebacks
    with pytest.raises(ExportFormatError):
        verify_export(b"[" * 100_000 + b"]" * 100_000, key)
    doc = json.loads(data)
    doc["checkpoints"][0] = "\ud800" + doc["checkpoints"][0]
    with pytest.raises(ExportFormatError):
        verify_export(json.dumps(doc).encode(), key)


# --- tampering with the stored log ----------------------------------------------------------


def _update_entry(engine: Engine, index: int, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(tables.entries).where(tables.entries.c.leaf_index == index).values(**values)
        )


def test_untampered_store_audits_clean(filled: TransparencyLog) -> None:
    report = audit_store(filled)
    assert (report.tree_size, report.entries_checked, report.checkpoints_checked) == (21, 21, 3)
    assert report.root_hash == filled.root()


def test_edited_entry_is_detected(filled: TransparencyLog, engine: Engine) -> None:
    _update_entry(engine, 7, data=b'{"event":"query_received","peer":"xx"}')
    with pytest.raises(TamperedError) as exc:
        audit_store(filled)
    assert (exc.value.reason, exc.value.index) == ("entry_modified", 7)
    with pytest.raises(TamperedError) as exc:
        verify_export(export_json(filled), filled.verifying_key, WITNESSES)
    assert (exc.value.reason, exc.value.index) == ("entry_modified", 7)


def test_edited_entry_with_its_leaf_hash_is_detected(
    filled: TransparencyLog, engine: Engine
) -> None:
    forged = b'{"event":"query_received","peer":"xx"}'
    _update_entry(engine, 7, data=forged, leaf_hash=hash_leaf(forged))
    with pytest.raises(TamperedError) as exc:
        audit_store(filled)
    assert (exc.value.reason, exc.value.index) == ("tree_mismatch", 6)
    with pytest.raises(TamperedError) as exc:
        verify_export(export_json(filled), filled.verifying_key, WITNESSES)
    assert exc.value.reason == "inclusion_failed"


def test_rewritten_tree_still_disagrees_with_signed_checkpoints(
    filled: TransparencyLog, engine: Engine
) -> None:
    """The attacker edits an entry and recomputes every stored hash and the head row: only
    the signed checkpoints still tell, and they do."""
    forged = b'{"event":"query_received","peer":"xx"}'
    _update_entry(engine, 12, data=forged, leaf_hash=hash_leaf(forged))
    with engine.begin() as conn:
        leaves = list(
            conn.execute(
                select(tables.entries.c.leaf_hash).order_by(tables.entries.c.leaf_index)
            ).scalars()
        )
        cr = CompactRange()
        for node, h in cr.extend(leaves):
            conn.execute(
                update(tables.nodes)
                .where(tables.nodes.c.level == node.level, tables.nodes.c.node_index == node.index)
                .values(hash=h)
            )
        conn.execute(update(tables.head).values(compact_range=b"".join(cr.hashes)))
    with pytest.raises(TamperedError) as exc:
        audit_store(filled)
    assert (exc.value.reason, exc.value.index) == ("checkpoint_mismatch", 13)
    with pytest.raises(TamperedError) as exc:
        verify_export(export_json(filled), filled.verifying_key, WITNESSES)
    assert exc.value.reason == "consistency_failed"  # rewritten nodes vs signed roots
    with pytest.raises(TamperedError) as exc:
        only = export_json(filled, start=12, end=13, checkpoint=filled.checkpoints()[1])
        verify_export(only, filled.verifying_key, WITNESSES)
    assert exc.value.reason == "inclusion_failed"  # one checkpoint: the proof fails


def test_deleted_entry_is_detected(filled: TransparencyLog, engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(delete(tables.entries).where(tables.entries.c.leaf_index == 11))
    with pytest.raises(TamperedError) as exc:
        audit_store(filled)
    assert (exc.value.reason, exc.value.index) == ("entry_missing", 11)
    with pytest.raises(TamperedError) as exc:
        export_json(filled)  # entry 10's proof needs leaf 11
    assert (exc.value.reason, exc.value.index) == ("entry_missing", 11)
    # Outside the proofs' reach the export goes out, and the verifier finds the hole.
    with pytest.raises(TamperedError) as exc:
        verify_export(export_json(filled, start=11, end=12), filled.verifying_key)
    assert (exc.value.reason, exc.value.index) == ("entry_missing", 11)


def test_deleted_last_entry_is_detected(filled: TransparencyLog, engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(delete(tables.entries).where(tables.entries.c.leaf_index == 20))
    with pytest.raises(TamperedError) as exc:
        audit_store(filled)
    assert (exc.value.reason, exc.value.index) == ("entry_missing", 20)


def test_swapped_entries_are_detected(filled: TransparencyLog, engine: Engine) -> None:
    a, b = filled.entry(3), filled.entry(8)
    _update_entry(engine, 3, data=b.data, leaf_hash=b.leaf_hash)
    _update_entry(engine, 8, data=a.data, leaf_hash=a.leaf_hash)
    with pytest.raises(TamperedError) as exc:
        audit_store(filled)
    assert (exc.value.reason, exc.value.index) == ("tree_mismatch", 2)
    with pytest.raises(TamperedError) as exc:
        verify_export(export_json(filled), filled.verifying_key, WITNESSES)
    assert exc.value.reason == "consistency_failed"  # the 9 -> 14 proof uses leaf 8
    with pytest.raises(TamperedError) as exc:
        only = export_json(filled, start=3, end=4, checkpoint=filled.checkpoints()[0])
        verify_export(only, filled.verifying_key, WITNESSES)
    assert (exc.value.reason, exc.value.index) == ("inclusion_failed", 3)


def test_audit_with_the_wrong_key_or_forged_checkpoint(
    filled: TransparencyLog, engine: Engine
) -> None:
    with pytest.raises(SignatureError):
        audit_store(filled, witness_key(LOG_NAME).verifying_key())
    signed = filled.latest_checkpoint()
    assert signed is not None
    note = signed.to_bytes().replace(b"\n21\n", b"\n25\n", 1)
    t = tables.checkpoints
    with engine.begin() as conn:  # the columns follow the forged note: only its signature tells
        conn.execute(update(t).where(t.c.tree_size == 21).values(note=note, tree_size=25))
    with pytest.raises(SignatureError):
        audit_store(filled)


def test_checkpoint_columns_that_differ_from_the_note_are_tampering(
    filled: TransparencyLog, engine: Engine
) -> None:
    """The columns order and select checkpoints: an edited size would keep a stale one the
    latest (exported, shown to witnesses) while newer ones are signed."""
    t = tables.checkpoints
    for column, value in (("tree_size", 99), ("root_hash", b"\x00" * 32), ("timestamp_ms", 1)):
        with engine.begin() as conn:
            first = conn.execute(select(t).order_by(t.c.id).limit(1)).one()
            conn.execute(update(t).where(t.c.id == first.id).values({column: value}))
        with pytest.raises(TamperedError) as exc:
            audit_store(filled)
        assert exc.value.reason == "checkpoint_mismatch"
        if column == "tree_size":  # the size-9 checkpoint now sorts as the latest
            with pytest.raises(TamperedError):
                filled.latest_checkpoint()
        with engine.begin() as conn:
            conn.execute(
                update(t).where(t.c.id == first.id).values({column: first._mapping[column]})
            )
        audit_store(filled)


def test_an_entry_inserted_beyond_the_head_is_tampering(
    filled: TransparencyLog, engine: Engine
) -> None:
    """A row past the tree (no append wrote it) is reported; it would also make every later
    append fail on its index."""
    forged = event(99)
    with engine.begin() as conn:
        conn.execute(
            tables.entries.insert().values(
                leaf_index=21,
                leaf_hash=hash_leaf(forged),
                data=forged,
                created_at=datetime.now(UTC),
            )
        )
    with pytest.raises(TamperedError) as exc:
        audit_store(filled)
    assert (exc.value.reason, exc.value.index) == ("entry_inserted", 21)


def test_a_head_row_that_is_no_compact_range_is_tampering(
    filled: TransparencyLog, engine: Engine
) -> None:
    head = filled.head()
    with engine.begin() as conn:
        conn.execute(update(tables.head).values(compact_range=b"".join(head.hashes)[:40]))
    for read in (filled.head, lambda: audit_store(filled), lambda: filled.append(event(50))):
        with pytest.raises(TamperedError) as exc:
            read()
        assert exc.value.reason == "head_mismatch"


def test_a_log_written_while_it_is_audited_audits_clean(filled: TransparencyLog) -> None:
    """Appends and checkpoints racing the audit are not tampering (they were reported as
    entry_missing: the audit read the head, then entries up to a newer size)."""
    stop = threading.Event()

    def write() -> None:
        i = 100
        while not stop.is_set():
            filled.append(event(i))
            if i % 7 == 0:
                filled.issue_checkpoint()
            i += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        sizes = [audit_store(filled).tree_size for _ in range(25)]
    finally:
        stop.set()
        writer.join()
    assert sizes[-1] > sizes[0] >= 21  # the log grew while it was audited
    audit_store(filled)


def test_checkpoint_beyond_the_stored_tree(
    new_engine: Callable[[str], Engine], log_key: SigningKey, clock: Clock
) -> None:
    """A store restored from an old backup is shorter than what it already signed."""
    engine = new_engine("backup")
    log = TransparencyLog.open(engine, log_key, clock=clock)
    log.append_many([event(i) for i in range(6)])
    log.issue_checkpoint()
    with engine.begin() as conn:
        conn.execute(delete(tables.entries).where(tables.entries.c.leaf_index >= 4))
        cr = CompactRange()
        cr.extend(hash_leaf(event(i)) for i in range(4))
        conn.execute(update(tables.head).values(tree_size=4, compact_range=b"".join(cr.hashes)))
    with pytest.raises(TamperedError) as exc:
        audit_store(log)
    assert (exc.value.reason, exc.value.index) == ("entry_missing", 4)


def test_csv_export(filled: TransparencyLog, log: TransparencyLog) -> None:
    filled.append(b'=HYPERLINK("http://evil")')
    filled.append(b"\xff\xfebinary")
    rows = list(csv.reader(io.StringIO(export_csv(filled))))
    assert rows[0] == ["index", "created_at", "leaf_hash", "data"]
    assert len(rows) == 1 + 23
    assert rows[1][0] == "0" and rows[1][3] == event(0).decode()
    assert rows[1][2] == hash_leaf(event(0)).hex()
    assert rows[22][3].startswith("'=")
    assert rows[23][3] == "base64:" + base64.b64encode(b"\xff\xfebinary").decode()
    some = list(csv.reader(io.StringIO(export_csv(filled, start=2, end=4))))
    assert [r[0] for r in some[1:]] == ["2", "3"]
    t0 = filled.entry(0).created_at.timestamp()
    window = export_csv(
        filled,
        since=datetime.fromtimestamp(t0 + 4, UTC),
        until=datetime.fromtimestamp(t0 + 6, UTC),
    )
    assert [r[0] for r in list(csv.reader(io.StringIO(window)))[1:]] == ["4", "5"]


def test_an_export_across_a_key_renewal_verifies_with_both_keys(
    new_engine: Callable[[str], Engine], clock: Clock
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from certs.translog import SignatureError, SigningKey

    old = SigningKey(LOG_NAME, ec.generate_private_key(ec.SECP256R1()))
    new = SigningKey(LOG_NAME, ec.generate_private_key(ec.SECP256R1()))
    engine = new_engine("renewal-export")
    log = TransparencyLog.open(engine, old, clock=clock)
    log.append_many([event(i) for i in range(3)])
    log.issue_checkpoint()
    log = TransparencyLog.open(engine, new, clock=clock, earlier_keys=[old.verifying_key()])
    log.append(event(3))
    log.issue_checkpoint()
    data = export_json(log)
    report = verify_export(data, [new.verifying_key(), old.verifying_key()])
    assert (report.checkpoints_verified, report.entries_verified) == (2, 4)
    with pytest.raises(SignatureError):
        verify_export(data, new.verifying_key())


def _odd(data: bytes) -> bool:
    """Queries of odd number (a log_pruned event, no query, is not chosen)."""
    return int(json.loads(data).get("query_id", "q-0")[2:]) % 2 == 1


def test_a_selection_carries_the_logs_signed_statement(
    filled: TransparencyLog, log_key: SigningKey
) -> None:
    """A selection's completeness cannot be proven from the file; the log signs it instead, so
    a holder who leaves entries out (with their indices) or edits the filter, range or tree no
    longer matches the statement, and one re-signed with another key is refused."""
    data = export_json(filled, select=_odd, selection={"query": "odd"})
    report = verify_export(data, filled.verifying_key)
    assert report.selection == {"query": "odd"} and report.selection_attested
    assert report.entries_verified == 10

    def edited(change: Callable[[dict[str, Any]], None]) -> bytes:
        doc = json.loads(data)
        change(doc)
        return json.dumps(doc).encode()

    def drop_last(doc: dict[str, Any]) -> None:
        doc["entries"].pop()
        doc["selection"]["indices"].pop()

    def narrow(doc: dict[str, Any]) -> None:
        doc["range"]["end"] -= 1
        drop_last(doc)

    for change in (
        drop_last,
        narrow,
        lambda doc: doc["selection"]["filter"].update(query="all"),
    ):
        with pytest.raises(TamperedError) as err:
            verify_export(edited(change), filled.verifying_key)
        assert err.value.reason == "selection_altered"

    doc = json.loads(data)
    body, _, _ = doc["selection"]["statement"].partition("\n\n")
    other = SigningKey(LOG_NAME, ec.generate_private_key(ec.SECP256R1()))
    forged = body + "\n\n" + other.verifying_key().name
    resigned = edited(
        lambda d: d["selection"].update(
            statement=f"{body}\n\n\u2014 {LOG_NAME} "
            + base64.b64encode(
                other.verifying_key().key_id() + other.sign((body + "\n").encode())
            ).decode()
            + "\n"
        )
    )
    with pytest.raises(SignatureError):
        verify_export(resigned, filled.verifying_key)
    for bad in (forged, "not a note", filled.latest_checkpoint().to_bytes().decode()):  # type: ignore[union-attr]
        with pytest.raises(ExportFormatError):
            verify_export(
                edited(lambda d, bad=bad: d["selection"].update(statement=bad)),
                filled.verifying_key,
            )
    unattested = edited(lambda d: d["selection"].pop("statement"))
    assert not verify_export(unattested, filled.verifying_key).selection_attested


def test_a_selection_statement_is_never_a_checkpoint(filled: TransparencyLog) -> None:
    """Signed with the checkpoint key, a statement must not pass for a checkpoint (a witness
    asked to cosign it, an auditor reading it as one)."""
    from certs.translog import SignedCheckpoint
    from certs.translog.errors import NoteFormatError

    doc = json.loads(export_json(filled, select=_odd, selection={"query": "odd"}))
    with pytest.raises(NoteFormatError):
        SignedCheckpoint.from_bytes(doc["selection"]["statement"].encode())


def test_a_selection_after_a_key_renewal_waits_for_a_checkpoint_under_the_new_key(
    log: TransparencyLog, clock: Clock
) -> None:
    """The statement was signed with the renewed key while its checkpoint was the earlier
    key's: an honest selection failed (exit 5) with the key of its checkpoints, while the
    same file stripped of its statement passed. It now waits for a checkpoint."""
    for i in range(6):
        log.append(event(i))
    log.issue_checkpoint()
    old = log.verifying_key
    log.use_key(SigningKey(LOG_NAME, ed25519.Ed25519PrivateKey.generate()))
    with pytest.raises(NotFoundError) as err:
        export_json(log, select=_odd, selection={"query": "odd"})
    assert err.value.reason == "no_checkpoint" and "earlier log key" in err.value.message
    log.issue_checkpoint()
    data = export_json(log, select=_odd, selection={"query": "odd"})
    assert verify_export(data, [log.verifying_key, old]).selection_attested


def test_a_selection_attests_only_what_its_filter_could_read(
    log: TransparencyLog, clock: Clock
) -> None:
    """Pruned entries (no bytes) match no filter: the statement covered the whole range with
    them and the CLI said nothing else matched there. It now starts past them."""
    for i in range(6):
        log.append(event(i))
        clock.advance(10)
    log.issue_checkpoint()
    clock.advance(86400)
    horizon = datetime.fromtimestamp(clock.now, UTC)
    for i in range(6, 10):
        log.append(event(i))
        clock.advance(10)
    clock.advance(MIN_RETENTION_DAYS * 86400)
    boundary = log.prune(horizon).boundary
    log.issue_checkpoint()
    data = export_json(log, select=_odd, selection={"query": "odd"})
    doc = json.loads(data)
    assert doc["range"]["start"] == 0 and doc["selection"]["attested_from"] == boundary > 0
    report = verify_export(data, log.verifying_key)
    assert report.selection_attested_from == boundary and report.start == 0
    doc["selection"]["attested_from"] = 0  # claiming the pruned entries were read too
    with pytest.raises(TamperedError) as err:
        verify_export(json.dumps(doc).encode(), log.verifying_key)
    assert err.value.reason == "selection_altered"
