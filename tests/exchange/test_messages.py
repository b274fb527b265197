import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import create_engine

from node.exchange import references, replay
from node.exchange.messages import (
    Outcome,
    QueryPayload,
    ReplyPayload,
    Strength,
    TemplateItem,
    b64url,
    new_nonce,
    utc_now,
)

_FACE = TemplateItem(format="dlib-resnet/hog", format_version=1, data=b64url(bytes(600)))


def _query(**over: object) -> QueryPayload:
    fields: dict[str, object] = {
        "query_id": uuid.uuid4(),
        "requester": "TH",
        "responder": "ID",
        "created": utc_now(),
        "nonce": new_nonce(),
        "purpose": "border_control",
        "modality": "fingerprint",
        "templates": [
            TemplateItem(
                format="iso19794-2:2005",
                format_version=1,
                finger_position=2,
                data=b64url(b"FMR\x00 20\x00" + bytes(30)),
            )
        ],
    }
    fields.update(over)
    return QueryPayload.model_validate(fields)


def test_query_wire_is_stable_and_round_trips() -> None:
    q = _query(case_ref="TH-2026/0001")
    wire = q.wire()
    assert wire["v"] == 1 and wire["kind"] == "query" and wire["created"].endswith("Z")
    assert wire["sender"] == "TH"
    assert QueryPayload.from_wire(wire) == q
    with pytest.raises(ValueError):
        QueryPayload.from_wire({**wire, "sender": "ID"})


@pytest.mark.parametrize(
    "over",
    [
        {"requester": "Thailand"},
        {"responder": "TH"},
        {"modality": "iris"},
        {"templates": []},
        {"created": datetime(2026, 1, 1)},
        {"nonce": "short"},
        {"case_ref": "John Smith"},
        {"v": 2},
        {"extra": 1},
        {"modality": "face", "templates": [_FACE, _FACE]},  # one face a query
    ],
)
def test_malformed_queries_rejected(over: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        _query(**over)


def test_template_data_must_be_base64url_and_bounded() -> None:
    with pytest.raises(ValidationError):
        TemplateItem(format="x", format_version=1, data="***not base64***")
    with pytest.raises(ValidationError):
        TemplateItem(format="x", format_version=1, data=b64url(bytes(70_000)))


def test_reply_fields_follow_outcome() -> None:
    base = {
        "query_id": uuid.uuid4(),
        "requester": "TH",
        "responder": "ID",
        "created": utc_now(),
        "nonce": new_nonce(),
    }
    hit = ReplyPayload(
        **base, outcome=Outcome.HIT, reference="abcdEFGH1234abcdEFGH12", strength=Strength.STRONG
    )
    assert hit.wire()["outcome"] == "hit"
    ReplyPayload(**base, outcome=Outcome.NO_HIT)
    ReplyPayload(**base, outcome=Outcome.REFUSED, reason="quota_exhausted")
    with pytest.raises(ValidationError):
        ReplyPayload(**base, outcome=Outcome.NO_HIT, reference="abcdEFGH1234abcdEFGH12")
    with pytest.raises(ValidationError):
        ReplyPayload(**base, outcome=Outcome.REFUSED)
    with pytest.raises(ValidationError):
        ReplyPayload(**base, outcome=Outcome.HIT, reference="abcdEFGH1234abcdEFGH12")


def test_replay_guard(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'n.db'}")
    replay.metadata.create_all(engine)
    guard = replay.ReplayGuard(engine, timedelta(minutes=5))
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    guard.check("TH", "nonce-aaaaaaaaaaaa", now, now)
    guard.check("ID", "nonce-aaaaaaaaaaaa", now, now)  # another sender may reuse it
    with pytest.raises(replay.ReplayError) as info:
        guard.check("TH", "nonce-aaaaaaaaaaaa", now, now)
    assert info.value.reason == "replayed_nonce"
    with pytest.raises(replay.ReplayError) as info:
        guard.check("TH", "nonce-bbbbbbbbbbbb", now - timedelta(minutes=6), now)
    assert info.value.reason == "stale_message"
    with pytest.raises(replay.ReplayError):
        guard.check("TH", "nonce-cccccccccccc", now + timedelta(minutes=6), now)
    # Kept while a replay could still pass the time check (2 windows) plus the slack.
    assert guard.retention == timedelta(minutes=10) + replay.PURGE_SLACK
    assert guard.purge(now + guard.retention) == 0
    assert guard.purge(now + guard.retention + timedelta(microseconds=1)) == 2


def test_replay_purge_deletes_in_batches_by_the_time_index(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'n.db'}")
    replay.metadata.create_all(engine)
    guard = replay.ReplayGuard(engine, timedelta(minutes=5))
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    old = now - guard.retention - timedelta(seconds=1)
    rows = [
        {"sender": "TH", "nonce": f"old-{i:08d}", "seen_at": old}
        for i in range(replay.PURGE_BATCH + 5)
    ]
    rows += [{"sender": "TH", "nonce": f"new-{i:08d}", "seen_at": now} for i in range(3)]
    with engine.begin() as conn:
        conn.execute(replay.exchange_nonces.insert(), rows)
        sql = str(replay._PURGE_ONE_BATCH.compile(engine))  # cutoff, LIMIT and OFFSET
        args = (now.isoformat(), replay.PURGE_BATCH, 0)
        plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, args))
    # the batch is found by the seen_at index and deleted by primary key: no table scan
    assert "ix_exchange_nonces_seen_at (seen_at<?)" in plan and "SCAN" not in plan
    assert guard.purge(now) == replay.PURGE_BATCH + 5
    with engine.connect() as conn:
        left = conn.execute(replay.exchange_nonces.select()).all()
    assert sorted(r.nonce for r in left) == ["new-00000000", "new-00000001", "new-00000002"]
    guard.check("TH", "new-00000003", now, now)
    with pytest.raises(replay.ReplayError) as info:
        guard.check("TH", "new-00000001", now, now)
    assert info.value.reason == "replayed_nonce"


def test_references_are_unlinkable_and_resolvable(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'n.db'}")
    references.metadata.create_all(engine)
    secret = bytes(range(32))
    hits = references.HitReferences(engine, secret)
    q1, q2 = uuid.uuid4(), uuid.uuid4()
    r1 = hits.issue(q1, "TH", "rec-42")
    r2 = hits.issue(q2, "TH", "rec-42")
    assert r1 != r2 and len(r1) == references.REF_CHARS
    assert "rec-42" not in r1
    assert hits.resolve(r1) == ("rec-42", str(q1), "TH")
    assert hits.resolve("unknown") is None
    # The same query id again, from the same or another requester, links nothing: every hit
    # draws its own salt. (Under v2 the same query id and nonce, resent once the nonce left
    # the replay table, gave the same reference for every probe of the subject.)
    r3 = hits.issue(q1, "TH", "rec-42")
    r4 = hits.issue(q1, "ID", "rec-42")
    assert len({r1, r2, r3, r4}) == 4 and hits.resolve(r4) == ("rec-42", str(q1), "ID")
    assert hits.resolve(r3) == ("rec-42", str(q1), "TH")
    make = references.make_reference
    salt = bytes(references.SALT_BYTES)
    assert make(b"x" * 32, salt, q1, "TH", "a") != make(b"y" * 32, salt, q1, "TH", "a")
    with pytest.raises(ValueError):
        make(b"short", salt, q1, "TH", "a")


def test_pending_replies_are_kept_per_requester() -> None:
    """Two peers whose queries share an id each poll their own reply (one entry per query
    id let the later peer's displace the earlier's)."""
    from concurrent.futures import Future

    from node.errors import NotFoundError
    from node.exchange.router import PendingReplies

    pending = PendingReplies()
    th, idn = Future(), Future()  # type: ignore[var-annotated]
    pending.add("q-1", "TH", th)
    pending.add("q-1", "ID", idn)
    assert pending.get("q-1", "TH") is th and pending.get("q-1", "ID") is idn
    with pytest.raises(NotFoundError):
        pending.get("q-1", "MY")


def test_template_data_is_canonical_unpadded_base64url() -> None:
    """One spelling per template: no padding, no character outside the alphabet (which a
    lenient decoder drops), no stray bits, and at least MIN_TEMPLATE_BYTES bytes."""
    from node.exchange.messages import MIN_TEMPLATE_BYTES, TemplateItem, b64url

    def item(data: str) -> TemplateItem:
        return TemplateItem(format="iso19794-2:2005", format_version=20, data=data)

    assert item(b64url(b"abcde")).raw() == b"abcde"
    assert item(b64url(bytes(MIN_TEMPLATE_BYTES))).raw() == bytes(MIN_TEMPLATE_BYTES)
    for bad in ("YQ==", "YWI=", "$$$$YWJj", "YWJj ZGU", "YWJjZGV", b64url(b"ab")):
        with pytest.raises(ValidationError):
            item(bad)


def test_a_time_before_the_first_utc_instant_is_a_validation_error() -> None:
    """Pydantic passes OverflowError through: it must be a ValidationError like any other."""
    with pytest.raises(ValidationError, match="out of range"):
        _query(created="0001-01-01T00:00:00+14:00")


def test_hit_references_expire_after_the_follow_up_period_in_batches(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'n.db'}")
    references.metadata.create_all(engine)
    hits = references.HitReferences(engine, bytes(32), timedelta(days=30))
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    old = now - timedelta(days=30, seconds=1)
    rows = [
        {
            "reference": f"{i:022d}",
            "query_id": str(uuid.UUID(int=i)),
            "requester": "TH",
            "record_ref": f"s{i}",
            "created_at": old,
        }
        for i in range(references.EXPIRE_BATCH + 5)
    ]
    with engine.begin() as conn:
        conn.execute(references.exchange_hits.insert(), rows)
        sql = str(references._EXPIRE_ONE_BATCH.compile(engine))
        args = (now.isoformat(), references.EXPIRE_BATCH, 0)
        plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, args))
    # the batch is found by the created_at index and deleted by primary key: no table scan
    assert "ix_exchange_hits_created_at (created_at<?)" in plan and "SCAN" not in plan
    young = hits.issue(uuid.uuid4(), "ID", "s7")
    assert hits.expire(now) == (references.EXPIRE_BATCH + 5, now - timedelta(days=30))
    assert hits.expire(now) == (0, now - timedelta(days=30))
    assert hits.resolve(young) is not None and hits.resolve(f"{0:022d}") is None
    # kept for ever without a period; a period must be positive
    assert references.HitReferences(engine, bytes(32)).expire(now) == (0, None)
    with pytest.raises(ValueError):
        references.HitReferences(engine, bytes(32), timedelta(0))


def test_issued_references_never_start_like_an_option(tmp_path: Path) -> None:
    """A base64url reference starts with '-' once in 64; an operator's `bdx subjects reference
    -AbC...` read it as an option."""
    engine = create_engine(f"sqlite:///{tmp_path / 'n.db'}")
    references.metadata.create_all(engine)
    hits = references.HitReferences(engine, bytes(32))
    issued = [hits.issue(uuid.uuid4(), "TH", f"s{i}") for i in range(1000)]
    assert not [r for r in issued if r.startswith("-")]
    assert len(set(issued)) == 1000 and {len(r) for r in issued} == {references.REF_CHARS}
    assert all(references.well_formed(r) for r in issued)
