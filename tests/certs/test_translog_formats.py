"""Signed-note, checkpoint and cosignature parsing: every malformed input has its reason."""

# ruff: noqa: F811 - fixtures are imported from test_translog_support and requested by name

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import Engine, create_engine, delete, update
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

from certs.translog import (
    Checkpoint,
    Cosignature,
    EntryError,
    KeyTypeError,
    NoteFormatError,
    SignedCheckpoint,
    SigningKey,
    TamperedError,
    TransparencyLog,
    VerifyingKey,
    audit_store,
    cosign,
    decode_event,
    encode_event,
    export_json,
    verify_export,
)
from certs.translog import schema as tables
from certs.translog.export import MAX_EXPORT_CHECKPOINTS
from certs.translog.keys import Purpose
from certs.translog.note import NoteSignature, parse_note
from certs.translog.params import MAX_NOTE_SIGNATURES
from certs.translog.sqlite import configure_sqlite

ROOT = bytes(range(32))
CP = Checkpoint(LOG_NAME, 7, ROOT, 1_700_000_000_000)


def test_checkpoint_body_is_canonical() -> None:
    body = CP.body()
    assert body == (
        f"{LOG_NAME}\n7\n{base64.b64encode(ROOT).decode()}\nbdx-checkpoint/v1 1700000000000\n"
    )
    assert Checkpoint.parse_body(body) == CP
    for bad in [
        body.replace(LOG_NAME, "", 1),
        body.replace(LOG_NAME, LOG_NAME + " ", 1),
        body.replace(base64.b64encode(ROOT).decode(), base64.b64encode(ROOT[:31]).decode()),
        body.replace("1700000000000", "+1700000000000"),
        body.replace("1700000000000", "99999999999999999999"),
        body + "extra\n",
    ]:
        with pytest.raises(NoteFormatError) as exc:
            Checkpoint.parse_body(bad)
        assert exc.value.reason == "bad_checkpoint", bad
    with pytest.raises(NoteFormatError) as exc:
        Checkpoint.parse_body(body.replace("=\n", "\n"))  # non-padded base64
    assert exc.value.reason == "bad_base64"


def test_note_signature_limits() -> None:
    key = SigningKey(LOG_NAME, ed25519.Ed25519PrivateKey.generate())
    signed = SignedCheckpoint.sign(CP, key)
    line = signed.note.signatures[0]
    many = signed.note.with_signatures(
        *(NoteSignature(f"w{i}.example", b"abcd", b"x" * 9) for i in range(MAX_NOTE_SIGNATURES))
    )
    with pytest.raises(NoteFormatError):
        parse_note(many.encode())
    short = NoteSignature(LOG_NAME, b"ab", b"")
    with pytest.raises(NoteFormatError):
        parse_note(signed.note.with_signatures(short).encode())
    assert parse_note(signed.to_bytes()).signatures == (line,)
    # C2SP signed-note: key names contain no Unicode space (the Go reference refuses the note).
    sig = signed.to_bytes().decode().split("\n\u2014 ")[1]
    for space in ("\u00a0", "\u2003", "\u0085", "\u2028"):
        named = signed.note.text + f"\n\u2014 w{space}x {sig.split(' ', 1)[1]}"
        with pytest.raises(NoteFormatError):
            parse_note(named.encode())
    # Adding the same line twice keeps one.
    assert signed.note.with_signatures(line) == signed.note


def test_cosignature_lines() -> None:
    log_signer = SigningKey(LOG_NAME, ed25519.Ed25519PrivateKey.generate())
    wkey = witness_key("w.example/w")
    signed = SignedCheckpoint.sign(CP, log_signer)
    cosig = cosign(CP, wkey, 1_700_000_001)
    both = SignedCheckpoint.from_bytes(signed.with_cosignatures(cosig).to_bytes())
    assert both.cosignatures() == [cosig]
    assert Cosignature.from_note_signature(cosig.note_signature()) == cosig
    assert both.verified_cosigners([wkey.verifying_key()]) == ["w.example/w"]
    # A line under the witness's name and key ID too short to hold a timestamp.
    stub = NoteSignature(wkey.name, wkey.verifying_key().key_id("cosignature"), b"\x00" * 5)
    with pytest.raises(NoteFormatError) as exc:
        SignedCheckpoint(CP, signed.note.with_signatures(stub)).verified_cosigners(
            [wkey.verifying_key()]
        )
    assert exc.value.reason == "bad_cosignature"


def test_configure_sqlite() -> None:
    engine = create_engine("sqlite://")
    configure_sqlite(engine, synchronous="FULL")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    with pytest.raises(ValueError):
        configure_sqlite(create_engine("sqlite://"), synchronous="OFF")
    configure_sqlite(create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"))  # no-op


def test_long_checkpoint_chains_are_thinned(log: TransparencyLog, clock: Clock) -> None:
    for i in range(MAX_EXPORT_CHECKPOINTS + 10):
        log.append(event(i))
        log.issue_checkpoint()
        clock.advance(1)
    data = export_json(log, start=0, end=3)
    report = verify_export(data, log.verifying_key)
    assert report.checkpoints_verified == MAX_EXPORT_CHECKPOINTS
    assert report.tree_size == MAX_EXPORT_CHECKPOINTS + 10
    assert min(report.cosigners) == 1  # the chain starts at the first checkpoint covering 0


def test_missing_subtree_and_head_rewrites_are_detected(
    log: TransparencyLog, engine: Engine
) -> None:
    log.append_many([event(i) for i in range(12)])
    log.issue_checkpoint()
    with engine.begin() as conn:
        conn.execute(update(tables.head).values(compact_range=bytes(64)))
    with pytest.raises(TamperedError) as exc:
        audit_store(log)
    assert exc.value.reason == "head_mismatch"
    with engine.begin() as conn:
        conn.execute(
            delete(tables.nodes).where(tables.nodes.c.level == 2, tables.nodes.c.node_index == 1)
        )
    with pytest.raises(TamperedError) as exc:
        audit_store(log)
    assert (exc.value.reason, exc.value.index) == ("node_missing", 4)
    with pytest.raises(TamperedError) as exc:
        log.inclusion_proof(0, 12)
    assert exc.value.reason == "node_missing"


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa-p256"])
def test_vkeys_round_trip(kind: str) -> None:
    key = witness_key("w.example/w", kind).verifying_key()
    purposes: tuple[Purpose, ...] = ("note", "cosignature")
    for purpose in purposes:
        text = key.to_vkey(purpose)
        assert text.startswith("w.example/w+" + key.key_id(purpose).hex() + "+")
        parsed, got = VerifyingKey.from_vkey(text)
        assert (parsed, got) == (key, purpose)
    name, key_id, material = key.to_vkey().split("+", 2)
    ed_junk, ec_junk, unknown = (
        base64.b64encode(prefix + b"abc").decode() for prefix in (b"\x01", b"\x02", b"\x09")
    )
    for bad, reason in [
        ("only+two", "bad_vkey"),
        (f"{name}+{key_id}+%%%", "bad_vkey"),
        (f"{name}+00000000+{material}", "bad_vkey"),
        (f"{name}+{key_id}+{ed_junk}", "bad_vkey"),
        (f"{name}+{key_id}+{ec_junk}", "bad_vkey"),
    ]:
        with pytest.raises(NoteFormatError) as exc:
            VerifyingKey.from_vkey(bad)
        assert exc.value.reason == reason, bad
    with pytest.raises(KeyTypeError):
        VerifyingKey.from_vkey(f"{name}+{key_id}+{unknown}")
    renamed = f"other.example+{key_id}+{material}"
    if kind == "ed25519":  # Ed25519 key IDs commit to the name; C2SP ECDSA IDs do not
        with pytest.raises(NoteFormatError):
            VerifyingKey.from_vkey(renamed)
    else:
        assert VerifyingKey.from_vkey(renamed)[0].name == "other.example"


def test_events_are_canonical_and_never_biometric() -> None:
    a = encode_event("query_received", {"peer": "fr", "outcome": {"hit": False, "n": 2}})
    b = encode_event("query_received", {"outcome": {"n": 2, "hit": False}, "peer": "fr"})
    assert a == b == (b'{"event":"query_received","outcome":{"hit":false,"n":2},"peer":"fr","v":1}')
    assert decode_event(a)["peer"] == "fr"
    assert encode_event("refusal", {"reason": "policy: café"}) == (
        '{"event":"refusal","reason":"policy: café","v":1}'.encode()
    )
    for fields, reason in [
        ({"query": {"template": "AAAA"}}, "biometric_data"),
        ({"items": [{"Face_Image": "x"}]}, "biometric_data"),
        ({"blob": b"\x00"}, "bad_event"),
        ({1: "x"}, "bad_event"),
        ({"score": float("nan")}, "bad_event"),
        ({"when": object()}, "bad_event"),
        ({"event": "spoof"}, "bad_event"),
    ]:
        with pytest.raises(EntryError) as exc:
            encode_event("query_received", fields)  # type: ignore[arg-type]
        assert exc.value.reason == reason, fields
    with pytest.raises(EntryError):
        encode_event("", {})
    for raw in (b"[1]", b"{", b'{"peer":"fr"}', b"[" * 100_000 + b"]" * 100_000):
        with pytest.raises(EntryError):
            decode_event(raw)
