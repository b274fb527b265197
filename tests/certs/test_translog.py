"""Exchange log store: appends, proofs, concurrency, checkpoints and witnessing."""

# ruff: noqa: F811 - fixtures are imported from test_translog_support and requested by name

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from sqlalchemy import Engine, create_engine, insert
from sqlalchemy import event as sa_event
from test_translog_support import (  # noqa: F401 - fixtures
    LOG_NAME,
    Clock,
    backend,
    clock,
    engine,
    event,
    log,
    log_key,
    new_engine,
    witness_key,
)

from certs.merkle import (
    CompactRange,
    hash_leaf,
    verify_consistency,
    verify_inclusion,
)
from certs.translog import (
    Checkpoint,
    EntryError,
    KeyTypeError,
    NoteFormatError,
    NotFoundError,
    OriginMismatchError,
    ProofError,
    RollbackError,
    SignatureError,
    SignedCheckpoint,
    SigningKey,
    SplitViewError,
    TransparencyLog,
    VerifyingKey,
    Witness,
    audit_store,
    check_views,
    cosign,
    metadata,
    schema,
)
from certs.translog.params import MAX_ENTRY_BYTES


def test_appends_build_the_rfc6962_tree_and_serve_proofs(log: TransparencyLog) -> None:
    assert log.size() == 0
    indices = [log.append(event(i)) for i in range(13)]
    indices += log.append_many([event(i) for i in range(13, 40)])
    assert indices == list(range(40))
    expected = CompactRange()
    expected.extend(hash_leaf(event(i)) for i in range(40))
    root = log.root()
    assert root == expected.root() == log.root(40)
    for size in (1, 2, 7, 16, 33, 40):
        cr = CompactRange()
        cr.extend(hash_leaf(event(i)) for i in range(size))
        assert log.root(size) == cr.root()
        for index in {0, size // 2, size - 1}:
            verify_inclusion(
                hash_leaf(event(index)), index, size, log.inclusion_proof(index, size), cr.root()
            )
        verify_consistency(size, 40, log.consistency_proof(size), cr.root(), root)
    proofs = log.inclusion_proofs([3, 4, 39], 40)
    assert proofs == [log.inclusion_proof(i) for i in (3, 4, 39)]
    entry = log.entry(7)
    assert entry.data == event(7) and entry.leaf_hash == hash_leaf(event(7))
    assert [e.index for e in log.entries(5, 9)] == [5, 6, 7, 8]
    assert log.append_many([]) == []


def test_single_and_batched_appends_agree(
    engine: Engine, new_engine: Callable[[str], Engine]
) -> None:
    key = SigningKey(LOG_NAME, ed25519.Ed25519PrivateKey.generate())
    single = TransparencyLog.open(engine, key)
    for i in range(21):
        single.append(event(i))
    other = new_engine("batched")
    batched = TransparencyLog.open(other, key)
    batched.append_many([event(i) for i in range(21)])
    assert batched.root() == single.root()
    assert batched.consistency_proof(5) == single.consistency_proof(5)


def test_bad_entries_and_sizes_are_refused(log: TransparencyLog) -> None:
    log.append(event(0))
    with pytest.raises(EntryError) as exc:
        log.append("text")  # type: ignore[arg-type]
    assert exc.value.reason == "bad_entry"
    with pytest.raises(EntryError) as exc:
        log.append(b"")
    assert exc.value.reason == "empty_entry"
    with pytest.raises(EntryError) as exc:
        log.append_many([event(1), b"x" * (MAX_ENTRY_BYTES + 1)])
    assert exc.value.reason == "entry_too_large"
    assert log.size() == 1  # a refused batch appends nothing
    with pytest.raises(NotFoundError):
        log.entry(1)
    with pytest.raises(NotFoundError):
        log.inclusion_proof(0, 2)
    with pytest.raises(NotFoundError):
        log.consistency_proof(1, 5)
    with pytest.raises(NotFoundError):
        log.root(2)


def test_concurrent_appenders_do_not_corrupt_the_tree(log: TransparencyLog) -> None:
    threads_n, per_thread = 4, 15
    results: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(per_thread):
                idx = (
                    log.append(event(t * 100 + i))
                    if i % 3
                    else log.append_many([event(t * 100 + i)])[0]
                )
                with lock:
                    results.append(idx)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert sorted(results) == list(range(threads_n * per_thread))
    log.issue_checkpoint()
    report = audit_store(log)
    assert report.tree_size == threads_n * per_thread


def test_checkpoints_issued_during_appends_never_shrink(
    log: TransparencyLog, engine: Engine, log_key: SigningKey, clock: Clock
) -> None:
    """Checkpoints issued while entries are appended (the node's housekeeping and
    ``bdx audit checkpoint``: two log objects on one database) are stored in size order, so
    the latest is the largest and a witness shown them in turn never sees a rollback."""
    other = TransparencyLog.open(engine, log_key, clock=clock)  # the CLI's own log object
    stop = threading.Event()
    errors: list[BaseException] = []

    def append(t: int) -> None:
        try:
            i = 0
            while not stop.is_set():
                log.append(event(t * 100_000 + i))
                i += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def issue(issuer: TransparencyLog) -> None:
        try:
            for _ in range(20):
                size = issuer.issue_checkpoint().checkpoint.size
                deadline = time.monotonic() + 10
                while issuer.size() == size and time.monotonic() < deadline:
                    time.sleep(0.001)  # let appends in before this issuer's next checkpoint
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    appenders = [threading.Thread(target=append, args=(t,)) for t in range(2)]
    issuers = [threading.Thread(target=issue, args=(lg,)) for lg in (log, other, log, other)]
    for th in appenders + issuers:
        th.start()
    for th in issuers:
        th.join()
    stop.set()
    for th in appenders:
        th.join()
    assert not errors
    stored = log.checkpoints()
    sizes = [c.checkpoint.size for c in stored]
    assert len(sizes) == 80 and sizes[-1] > sizes[0]
    assert sizes == sorted(sizes)
    latest = log.latest_checkpoint()
    assert latest is not None and latest.checkpoint == stored[-1].checkpoint
    assert latest.checkpoint.size == max(sizes)
    witness = Witness(engine, witness_key("witness.fr/w1"), clock=clock)
    seen = 0
    for signed in stored:
        size = signed.checkpoint.size
        proof = log.consistency_proof(seen, size) if 0 < seen < size else []
        witness.cosign(signed.to_bytes(), log.verifying_key, proof)
        seen = size


def test_latest_checkpoint_is_the_largest_tree_even_if_stored_later(
    log: TransparencyLog, engine: Engine
) -> None:
    """A database written before checkpoints were issued under the append lock may hold a
    smaller checkpoint stored after a larger one; the latest is still the largest."""
    log.append_many([event(i) for i in range(5)])
    small = log.issue_checkpoint()
    log.append_many([event(i) for i in range(5, 8)])
    large = log.issue_checkpoint()
    with engine.begin() as conn:  # the raced issuer's row, stored last
        conn.execute(
            insert(schema.checkpoints).values(
                tree_size=5,
                root_hash=small.checkpoint.root_hash,
                timestamp_ms=small.checkpoint.timestamp_ms,
                note=small.to_bytes(),
            )
        )
    assert [c.checkpoint.size for c in log.checkpoints()] == [5, 8, 5]
    latest = log.latest_checkpoint()
    assert latest is not None and latest.checkpoint == large.checkpoint
    assert log.maybe_issue_checkpoint(max_age_s=60) is None  # nothing new since size 8


def test_sqlite_engine_that_begins_itself_is_still_serialised(tmp_path: Path) -> None:
    # SQLAlchemy's documented pysqlite recipe: the driver never BEGINs, the engine does.
    engine = create_engine(f"sqlite:///{tmp_path / 'recipe.db'}")

    @sa_event.listens_for(engine, "connect")
    def _connect(dbapi_conn: object, _: object) -> None:
        dbapi_conn.isolation_level = None  # type: ignore[attr-defined]

    @sa_event.listens_for(engine, "begin")
    def _begin(conn: object) -> None:
        conn.exec_driver_sql("BEGIN")  # type: ignore[attr-defined]

    metadata.create_all(engine)
    log = TransparencyLog.open(engine, SigningKey(LOG_NAME, ed25519.Ed25519PrivateKey.generate()))
    threads = [
        threading.Thread(target=lambda t=t: [log.append(event(t * 10 + i)) for i in range(8)])
        for t in range(3)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert log.size() == 24
    log.issue_checkpoint()
    audit_store(log)


def test_reopening_with_another_origin_is_refused(log: TransparencyLog, engine: Engine) -> None:
    again = TransparencyLog.open(engine, SigningKey(LOG_NAME, ed25519.Ed25519PrivateKey.generate()))
    assert again.origin == log.origin
    with pytest.raises(OriginMismatchError):
        TransparencyLog.open(
            engine, SigningKey("other.example/log", ec.generate_private_key(ec.SECP256R1()))
        )


def test_checkpoints_are_signed_notes_issued_on_change_or_age(
    log: TransparencyLog, clock: Clock
) -> None:
    log.append_many([event(i) for i in range(5)])
    signed = log.maybe_issue_checkpoint(max_age_s=60)
    assert signed is not None
    cp = signed.checkpoint
    assert (cp.origin, cp.size, cp.root_hash) == (LOG_NAME, 5, log.root())
    raw = signed.to_bytes()
    lines = raw.decode().split("\n")
    assert lines[:4] == [LOG_NAME, "5", lines[2], f"bdx-checkpoint/v1 {int(clock() * 1000)}"]
    assert lines[4] == "" and lines[5].startswith("\u2014 " + LOG_NAME + " ")
    parsed = SignedCheckpoint.from_bytes(raw)
    assert parsed == signed and Checkpoint.parse_body(cp.body()) == cp
    parsed.verify(log.verifying_key)

    clock.advance(30)
    assert log.maybe_issue_checkpoint(max_age_s=60) is None
    log.append(event(5))
    grown = log.maybe_issue_checkpoint(max_age_s=60)
    assert grown is not None and grown.checkpoint.size == 6
    clock.advance(61)
    aged = log.maybe_issue_checkpoint(max_age_s=60)
    assert aged is not None and aged.checkpoint.size == 6
    assert aged.checkpoint.timestamp_ms > grown.checkpoint.timestamp_ms
    assert log.latest_checkpoint() == aged
    assert [c.checkpoint.size for c in log.checkpoints()] == [5, 6, 6]


def test_checkpoint_signature_and_format_errors(log: TransparencyLog) -> None:
    log.append(event(0))
    raw = log.issue_checkpoint().to_bytes()
    forged = raw.replace(b"\n1\n", b"\n2\n", 1)
    with pytest.raises(SignatureError) as exc:
        SignedCheckpoint.from_bytes(forged).verify(log.verifying_key)
    assert exc.value.reason == "bad_signature"
    stranger = VerifyingKey(LOG_NAME, ed25519.Ed25519PrivateKey.generate().public_key())
    with pytest.raises(SignatureError) as exc:
        SignedCheckpoint.from_bytes(raw).verify(stranger)
    assert exc.value.reason == "unsigned"
    other = VerifyingKey("other.example/log", ed25519.Ed25519PrivateKey.generate().public_key())
    with pytest.raises(SignatureError) as exc:
        SignedCheckpoint.from_bytes(raw).verify(other)
    assert exc.value.reason == "origin_mismatch"
    for bad, reason in [
        (b"no signatures\n", "bad_note"),
        (b"\xff\xfe", "bad_note"),
        (raw.replace(b"\n\n", b"\n\n\x01"), "bad_note"),
        (raw.replace(b"\n\n\xe2\x80\x94 ", b"\n\n- "), "bad_note"),
        (raw[:-3] + b"!!\n", "bad_base64"),
        (raw.replace(b"bdx-checkpoint/v1", b"bdx-checkpoint/v9"), "unsupported_checkpoint"),
        (raw.replace(b"\n1\n", b"\n01\n", 1), "bad_checkpoint"),
        (raw.replace(LOG_NAME.encode() + b"\n1\n", LOG_NAME.encode() + b"\n"), "bad_checkpoint"),
        (b"x" * (2 << 20), "note_too_large"),
    ]:
        with pytest.raises(NoteFormatError) as bad_note:
            SignedCheckpoint.from_bytes(bad)
        assert bad_note.value.reason == reason, bad[:80]
    with pytest.raises(NoteFormatError):
        SignedCheckpoint.from_bytes("text")  # type: ignore[arg-type]


def test_key_types_are_checked() -> None:
    with pytest.raises(KeyTypeError):
        SigningKey("a.example/log", rsa.generate_private_key(65537, 1024))  # type: ignore[arg-type]
    with pytest.raises(KeyTypeError):
        SigningKey("a.example/log", ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(KeyTypeError):
        VerifyingKey("a.example/log", object())  # type: ignore[arg-type]
    with pytest.raises(NoteFormatError):
        SigningKey("has space", ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(NoteFormatError):
        SigningKey("a+b", ed25519.Ed25519PrivateKey.generate())


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa-p256"])
def test_witness_cosigns_only_consistent_growth(
    log: TransparencyLog, engine: Engine, clock: Clock, kind: str
) -> None:
    wkey = witness_key("witness.fr/w1", kind)
    witness = Witness(engine, wkey, clock=clock)  # same database, its own tables
    log.append_many([event(i) for i in range(6)])
    first = log.issue_checkpoint()
    cosig = witness.cosign(first.to_bytes(), log.verifying_key)
    stored = log.add_cosignature(first.checkpoint, cosig, wkey.verifying_key())
    assert stored.verified_cosigners([wkey.verifying_key()]) == ["witness.fr/w1"]
    assert log.latest_checkpoint() == stored
    # Idempotent: storing the same cosignature twice keeps one line.
    again = log.add_cosignature(first.checkpoint, cosig, wkey.verifying_key())
    assert len(again.note.signatures) == 2

    log.append_many([event(i) for i in range(6, 11)])
    second = log.issue_checkpoint()
    witness.cosign(second.to_bytes(), log.verifying_key, log.consistency_proof(6, 11))
    assert witness.latest(LOG_NAME) == SignedCheckpoint.from_bytes(second.to_bytes())
    assert [c.checkpoint.size for c in witness.history(LOG_NAME)] == [6, 11]
    # Same checkpoint size again (a later timestamp): fine, no proof needed.
    clock.advance(5)
    witness.cosign(log.issue_checkpoint().to_bytes(), log.verifying_key)

    with pytest.raises(RollbackError):
        witness.cosign(first.to_bytes(), log.verifying_key)
    log.append(event(11))
    third = log.issue_checkpoint()
    # A proof for other sizes proves no fork (an honest log's proof goes stale when the
    # witness cosigns meanwhile): bad_proof, or stale_proof when the log says its old size.
    with pytest.raises(ProofError) as malformed:
        witness.cosign(third.to_bytes(), log.verifying_key, log.consistency_proof(5, 12))
    assert malformed.value.reason == "bad_proof"
    with pytest.raises(ProofError) as stale:
        witness.cosign(third.to_bytes(), log.verifying_key, log.consistency_proof(5, 12), 5)
    assert stale.value.reason == "stale_proof"
    # A proof of the right shape that does not link the two roots: a fork.
    forged = [bytes(32)] * len(log.consistency_proof(11, 12))
    with pytest.raises(SplitViewError) as exc:
        witness.cosign(third.to_bytes(), log.verifying_key, forged, 11)
    assert exc.value.reason == "split_view"
    with pytest.raises(SignatureError):
        witness.cosign(third.to_bytes(), witness_key(LOG_NAME).verifying_key())
    # A cosignature by another key, or over another checkpoint, is not stored.
    forged = cosign(third.checkpoint, witness_key("witness.fr/w1", kind))
    with pytest.raises(SignatureError):
        log.add_cosignature(third.checkpoint, forged, wkey.verifying_key())
    with pytest.raises(SignatureError):
        log.add_cosignature(third.checkpoint, cosig, wkey.verifying_key())
    future = cosign(third.checkpoint, wkey, int(clock() + 3600))
    with pytest.raises(SignatureError) as bad_time:
        log.add_cosignature(third.checkpoint, future, wkey.verifying_key())
    assert bad_time.value.reason == "bad_timestamp"
    unknown = Checkpoint(LOG_NAME, 12, b"\x00" * 32, 1)
    with pytest.raises(NotFoundError):
        log.add_cosignature(unknown, cosign(unknown, wkey, int(clock())), wkey.verifying_key())


def test_the_same_checkpoint_with_other_signature_lines_is_one_row_of_body_and_log_signature(
    log: TransparencyLog, engine: Engine, clock: Clock
) -> None:
    """A peer re-sent one checkpoint 50 times, each time with other junk signature lines:
    the witness compared whole notes, so each was a new row, and stored the lines with it
    (unverified text of the peer's choosing, up to the note limit). The same checkpoint is
    one row, stored as its body and the log's verified signature; each ask still gets a
    fresh cosignature of that checkpoint."""
    from sqlalchemy import select

    from certs.translog.note import Note, NoteSignature

    wkey = witness_key("witness.fr/w1")
    witness = Witness(engine, wkey, clock=clock)
    log.append_many([event(i) for i in range(3)])
    signed = log.issue_checkpoint()
    real = cosign(signed.checkpoint, witness_key("witness.fr/w2"), int(clock()))
    for i in range(50):
        junk = [NoteSignature(f"x{j}", os.urandom(4), os.urandom(40)) for j in range(20)]
        # a line named after the log under another key id: not the log's signature either
        junk.append(NoteSignature(LOG_NAME, os.urandom(4), os.urandom(64)))
        note = Note(signed.note.text, (*signed.note.signatures, real.note_signature(), *junk))
        got = witness.cosign(note.encode(), log.verifying_key, (), 3 if i else 0)
        got.verify(signed.checkpoint, wkey.verifying_key(), now=clock())
    with engine.connect() as conn:
        rows = conn.execute(select(schema.witnessed.c.note)).scalars().all()
    assert rows == [signed.to_bytes()]  # the body and the log's one signature line
    SignedCheckpoint.from_bytes(rows[0]).verify(log.verifying_key)
    assert witness.history(LOG_NAME) == [signed]


def test_a_witness_refuses_checkpoints_dated_ahead_of_its_clock_or_backdated(
    log: TransparencyLog, engine: Engine, clock: Clock, log_key: SigningKey
) -> None:
    """A checkpoint's time bounds when its entries were logged. A witness cosigned (and
    stored) checkpoints dated in 2100 and, after them, a larger tree dated in 1970."""
    wkey = witness_key("witness.fr/w1")
    witness_time = Clock(clock() - 3_600)  # the log's clock runs an hour ahead
    witness = Witness(engine, wkey, clock=witness_time)
    log.append_many([event(i) for i in range(3)])
    ahead = log.issue_checkpoint()
    with pytest.raises(SignatureError) as err:
        witness.cosign(ahead.to_bytes(), log.verifying_key)
    assert err.value.reason == "bad_timestamp" and witness.latest(LOG_NAME) is None
    witness_time.advance(3_600 - 60)  # within the allowed skew: cosigned
    witness.cosign(ahead.to_bytes(), log.verifying_key)
    clock.advance(-600)  # the log's clock set back: the same tree, then a larger one, earlier
    same = log.issue_checkpoint()
    with pytest.raises(SignatureError) as err:  # it would lower the bound for the next one
        witness.cosign(same.to_bytes(), log.verifying_key)
    assert err.value.reason == "bad_timestamp"
    log.append(event(3))
    backdated = log.issue_checkpoint()
    with pytest.raises(SignatureError) as err:
        witness.cosign(backdated.to_bytes(), log.verifying_key, log.consistency_proof(3, 4), 3)
    assert err.value.reason == "bad_timestamp"
    assert witness.latest(LOG_NAME) == SignedCheckpoint.from_bytes(ahead.to_bytes())
    # A fork is refused as one, with its evidence, however it is dated (not as a bad time).
    fork = SignedCheckpoint.sign(
        Checkpoint(LOG_NAME, 3, bytes(32), ahead.checkpoint.timestamp_ms + 7_200_000), log_key
    )
    with pytest.raises(SplitViewError):
        witness.cosign(fork.to_bytes(), log.verifying_key)


def test_an_idle_log_whose_clock_was_set_back_issues_its_next_checkpoint(
    log: TransparencyLog, clock: Clock
) -> None:
    """After a clock set forward was corrected, the last checkpoint's age was negative and an
    idle log issued no checkpoint until the clock caught up (years, for a clock in 2100)."""
    log.append(event(0))
    log.issue_checkpoint()
    clock.advance(-86_400)
    assert log.maybe_issue_checkpoint(60) is not None
    assert log.maybe_issue_checkpoint(60) is None  # now fresh


@pytest.mark.parametrize("stamp", [-1, 1 << 63])
def test_a_cosignature_time_out_of_range_is_refused_and_a_stored_one_is_passed_over(
    log: TransparencyLog, engine: Engine, clock: Clock, stamp: int
) -> None:
    """A witness's validly signed cosignature at time -1 was stored, and every later read of
    the checkpoint (exports, audits, the next rounds) failed encoding it (struct.error)."""
    wkey = witness_key("witness.fr/w1", "ed25519")
    log.append_many([event(i) for i in range(3)])
    first = log.issue_checkpoint()
    bad = cosign(first.checkpoint, wkey, stamp)
    with pytest.raises(SignatureError) as err:
        log.add_cosignature(first.checkpoint, bad, wkey.verifying_key())
    assert err.value.reason == "bad_timestamp"
    # A row written before this check (or by hand) is no cosignature, and breaks nothing.
    with engine.begin() as conn:
        row = conn.execute(schema.checkpoints.select()).first()
        assert row is not None
        conn.execute(
            insert(schema.cosignatures).values(
                checkpoint_id=row.id,
                witness=bad.witness,
                key_id=bad.key_id,
                timestamp=-1,  # (1 << 63 does not fit the column)
                signature=bad.signature,
            )
        )
    latest = log.latest_checkpoint()
    assert latest is not None and latest.cosignatures() == []
    audit_store(log)


def test_split_view_is_detected_when_witnesses_compare(
    new_engine: Callable[[str], Engine], clock: Clock
) -> None:
    """The log keeps two copies that agree on 5 entries, then fork at index 5. Witness 1
    sees copy A, witness 2 copy B; both cosign, and comparing their views exposes the log."""
    key = SigningKey(LOG_NAME, ed25519.Ed25519PrivateKey.generate())
    log_a = TransparencyLog.open(new_engine("a"), key, clock=clock)
    log_b = TransparencyLog.open(new_engine("b"), key, clock=clock)
    w1 = Witness(new_engine("w1"), witness_key("w1.example/w"), clock=clock)
    w2 = Witness(new_engine("w2"), witness_key("w2.example/w"), clock=clock)
    common = [event(i) for i in range(5)]
    for lg in (log_a, log_b):
        lg.append_many(common)
        cp = lg.issue_checkpoint()
    w1.cosign(log_a.latest_checkpoint().to_bytes(), key.verifying_key())  # type: ignore[union-attr]
    w2.cosign(cp.to_bytes(), key.verifying_key())
    log_a.append(b'{"event":"query_sent","peer":"nl"}')
    log_b.append(b'{"event":"query_sent","peer":"be"}')  # fork at index 5
    a6, b6 = log_a.issue_checkpoint(), log_b.issue_checkpoint()
    # Each witness alone sees a consistent history and cosigns.
    w1.cosign(a6.to_bytes(), key.verifying_key(), log_a.consistency_proof(5, 6))
    w2.cosign(b6.to_bytes(), key.verifying_key(), log_b.consistency_proof(5, 6))
    # Exchanging what they cosigned: same size, two roots, both signed by the log.
    with pytest.raises(SplitViewError) as exc:
        w1.check_peer_view(w2.latest(LOG_NAME).to_bytes(), key.verifying_key())  # type: ignore[union-attr]
    assert exc.value.evidence == (a6.to_bytes(), b6.to_bytes())
    # Different sizes: the log cannot produce a consistency proof from A's view to B's.
    log_b.append_many([event(i) for i in range(100, 103)])
    b9 = log_b.issue_checkpoint()
    w2.cosign(b9.to_bytes(), key.verifying_key(), log_b.consistency_proof(6, 9))
    with pytest.raises(SplitViewError):
        w1.check_peer_view(b9.to_bytes(), key.verifying_key(), log_b.consistency_proof(6, 9))
    with pytest.raises(ProofError):  # a proof for other sizes shows nothing either way
        w1.check_peer_view(b9.to_bytes(), key.verifying_key(), log_a.consistency_proof(5, 6))
    # An honest pair passes: A's own growth checks out against w1's view.
    log_a.append(event(200))
    a7 = log_a.issue_checkpoint()
    w1.check_peer_view(a7.to_bytes(), key.verifying_key(), log_a.consistency_proof(6, 7))
    check_views(a6, a6, key.verifying_key())
    with pytest.raises(SignatureError):
        w1.check_peer_view(b9.to_bytes(), witness_key(LOG_NAME).verifying_key())
    fresh = Witness(new_engine("w3"), witness_key("w3.example/w"))
    with pytest.raises(OriginMismatchError) as exc2:
        fresh.check_peer_view(b9.to_bytes(), key.verifying_key())
    assert exc2.value.reason == "unknown_log"


def test_concurrent_cosigning_of_a_fork_accepts_one_branch(
    new_engine: Callable[[str], Engine], clock: Clock
) -> None:
    """Two forked checkpoints of one size race to the same witness: one is cosigned, the
    other is refused as a split view (the witness lock serialises the judgement)."""
    key = SigningKey(LOG_NAME, ed25519.Ed25519PrivateKey.generate())
    logs = [TransparencyLog.open(new_engine(n), key, clock=clock) for n in ("a", "b")]
    witness = Witness(new_engine("w"), witness_key("w.example/w"), clock=clock)
    for lg in logs:
        lg.append_many([event(i) for i in range(5)])
    witness.cosign(logs[0].issue_checkpoint().to_bytes(), key.verifying_key())
    offers = []
    for n, lg in enumerate(logs):
        lg.append(b'{"fork":%d}' % n)
        offers.append((lg.issue_checkpoint().to_bytes(), lg.consistency_proof(5, 6)))
    outcomes: list[str] = []

    def offer(raw: bytes, proof: list[bytes]) -> None:
        try:
            witness.cosign(raw, key.verifying_key(), proof)
            outcomes.append("cosigned")
        except SplitViewError:
            outcomes.append("split_view")

    threads = [threading.Thread(target=offer, args=o) for o in offers * 2]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(outcomes) == ["cosigned", "cosigned", "split_view", "split_view"]
    assert {c.checkpoint.root_hash for c in witness.history(LOG_NAME)[1:]} == {
        witness.latest(LOG_NAME).checkpoint.root_hash  # type: ignore[union-attr]
    }


def test_a_witness_follows_a_log_across_a_key_renewal(
    new_engine: Callable[[str], Engine], clock: Clock
) -> None:
    """A node renews its signing certificate (a new key, the same log origin): its peers'
    witnesses cosign what it signs next (they re-verified the old checkpoint under the new
    key and refused every later one), and a fork is still a split view."""
    old = SigningKey(LOG_NAME, ec.generate_private_key(ec.SECP256R1()))
    new = SigningKey(LOG_NAME, ec.generate_private_key(ec.SECP256R1()))
    engine = new_engine("renewed")
    witness = Witness(new_engine("w-renew"), witness_key("w.example/w"), clock=clock)
    log = TransparencyLog.open(engine, old, clock=clock)
    log.append_many([event(i) for i in range(3)])
    witness.cosign(log.issue_checkpoint().to_bytes(), old.verifying_key())
    log = TransparencyLog.open(engine, new, clock=clock)  # the node restarts, renewed
    log.append(event(3))
    renewed = log.issue_checkpoint()
    witness.cosign(renewed.to_bytes(), new.verifying_key(), log.consistency_proof(3, 4))
    assert witness.latest(LOG_NAME) == SignedCheckpoint.from_bytes(renewed.to_bytes())
    witness.check_peer_view(renewed.to_bytes(), new.verifying_key())
    fork = TransparencyLog.open(new_engine("fork"), new, clock=clock)
    fork.append_many([event(i) for i in range(100, 105)])
    with pytest.raises(SplitViewError):
        witness.cosign(
            fork.issue_checkpoint().to_bytes(), new.verifying_key(), fork.consistency_proof(4, 5)
        )


def test_checkpoint_numbers_beyond_64_bits_are_malformed() -> None:
    """A size of 2^63 parsed, then overflowed the witness's BigInteger column (a 500)."""
    from certs.translog.checkpoint import Checkpoint as Cp

    root = "A" * 43 + "="
    body = f"{LOG_NAME}\n{2**63}\n{root}\nbdx-checkpoint/v1 1\n"
    Cp.parse_body(body.replace(str(2**63), str(2**63 - 1)))  # the largest is fine
    with pytest.raises(NoteFormatError) as exc:
        Cp.parse_body(body)
    assert exc.value.reason == "bad_checkpoint"


def test_the_store_audit_accepts_the_keys_a_log_was_signed_with(
    new_engine: Callable[[str], Engine], clock: Clock
) -> None:
    """After a key renewal the earlier checkpoints verify under the earlier key: the log's
    own audit passes with its earlier keys given, and fails without them."""
    from certs.translog.audit import audit_store

    old = SigningKey(LOG_NAME, ec.generate_private_key(ec.SECP256R1()))
    new = SigningKey(LOG_NAME, ec.generate_private_key(ec.SECP256R1()))
    engine = new_engine("renewal-audit")
    log = TransparencyLog.open(engine, old, clock=clock)
    log.append_many([event(i) for i in range(3)])
    log.issue_checkpoint()
    renewed = TransparencyLog.open(engine, new, clock=clock)
    renewed.append(event(3))
    renewed.issue_checkpoint()
    with pytest.raises(SignatureError):
        audit_store(renewed)
    with_history = TransparencyLog.open(
        engine, new, clock=clock, earlier_keys=[old.verifying_key()]
    )
    assert audit_store(with_history).checkpoints_checked == 2
    assert audit_store(renewed, [new.verifying_key(), old.verifying_key()]).tree_size == 4
    with pytest.raises(SignatureError):
        audit_store(renewed, [new.verifying_key()])
