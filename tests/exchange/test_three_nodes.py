"""Cross-border queries between three real nodes over mutual TLS with signed messages."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from certs import jws
from certs.pki.bootstrap import Region
from certs.pki.tls import client_context
from matcher.fingerprint import iso19794_2
from matcher.fingerprint.template import FingerprintTemplate
from node.errors import NotFoundError
from node.exchange import params
from node.exchange.messages import (
    Outcome,
    QueryPayload,
    ReplyPayload,
    TemplateItem,
    b64url,
    new_nonce,
)
from node.exchange.requester import QUERY_PATH, InvalidReplyError, Peer
from tests.exchange.conftest import NodeHandle, peers_of


def probe(t: FingerprintTemplate, position: int = 0) -> list[TemplateItem]:
    return [
        TemplateItem(
            format="iso19794-2:2005",
            format_version=20,
            finger_position=position,
            data=b64url(iso19794_2.encode(t)),
        )
    ]


def ask(
    node: NodeHandle,
    nodes: dict[str, NodeHandle],
    to: tuple[str, ...],
    items: list[TemplateItem],
    purpose: str = "border_control",
) -> dict[str, object]:
    results = asyncio.run(
        node.requester.query_peers(
            peers_of(nodes, *to), purpose, "fingerprint", items, case_ref="TH-2026/1"
        )
    )
    return {r.country: r for r in results}


def test_hit_and_no_hit_across_borders(
    nodes: dict[str, NodeHandle], fingers: list[list[FingerprintTemplate]]
) -> None:
    # finger 1's second impression: enrolled (first impression) at ID only.
    res = ask(nodes["TH"], nodes, ("ID", "MY"), probe(fingers[1][1]))
    hit, miss = res["ID"], res["MY"]
    assert hit.status == "answered" and hit.reply.outcome is Outcome.HIT
    assert hit.reply.reference and "id-1" not in hit.reply.reference
    assert hit.reply.strength is not None
    assert miss.status == "answered" and miss.reply.outcome is Outcome.REFUSED  # MY: asylum only
    assert miss.reply.reason == "purpose_not_allowed"
    res = ask(nodes["TH"], nodes, ("ID",), probe(fingers[8][1]))
    assert res["ID"].reply.outcome is Outcome.NO_HIT
    # the reference resolves at the responder only, and differs per query
    again = ask(nodes["TH"], nodes, ("ID",), probe(fingers[1][1]))["ID"]
    assert again.reply.reference != hit.reply.reference
    assert nodes["ID"].responder.hits.resolve(hit.reply.reference)[0] == "id-1"


def test_query_biometrics_are_not_persisted(
    nodes: dict[str, NodeHandle], fingers: list[list[FingerprintTemplate]]
) -> None:
    items = probe(fingers[2][1])
    raw = items[0].raw()
    ask(nodes["MY"], nodes, ("ID",), items, purpose="border_control")
    node = nodes["ID"]
    # neither the database file nor any log entry contains the template or its base64 form
    db_path = Path(node.engine.url.database or "")
    blob = db_path.read_bytes()
    assert raw not in blob and items[0].data.encode() not in blob
    for entry in node.log.entries():
        assert items[0].data.encode() not in entry.data and raw not in entry.data


def test_record_restriction_reports_no_hit_to_nationality(
    nodes: dict[str, NodeHandle], fingers: list[list[FingerprintTemplate]]
) -> None:
    nodes["ID"].restrictions["id-3"] = ["asylum_nationality:TH"]
    try:
        assert ask(nodes["TH"], nodes, ("ID",), probe(fingers[3][1]))["ID"].reply.outcome is (
            Outcome.NO_HIT
        )
        assert ask(nodes["MY"], nodes, ("ID",), probe(fingers[3][1]))["ID"].reply.outcome is (
            Outcome.HIT
        )
    finally:
        nodes["ID"].restrictions.clear()


def _post(node_from: NodeHandle, root: Path, to: NodeHandle, token: str) -> httpx.Response:
    folder = root / "nodes" / node_from.country.lower()
    ctx = client_context(folder / "tls.pem", folder / "tls.key", root / "root.pem")
    with httpx.Client(verify=ctx, timeout=10) as c:
        return c.post(
            to.url + QUERY_PATH, content=token, headers={"Content-Type": "application/jose"}
        )


def _query(sender: NodeHandle, to: str, items: list[TemplateItem], **over: object) -> QueryPayload:
    q = sender.requester.build_query(to, "border_control", "fingerprint", items)
    return q.model_copy(update=over) if over else q


def test_replay_is_refused(
    nodes: dict[str, NodeHandle],
    region_dir: tuple[Region, Path],
    fingers: list[list[FingerprintTemplate]],
) -> None:
    _, root = region_dir
    th, idn = nodes["TH"], nodes["ID"]
    calls = idn.search.calls
    token = th.requester.sign_query(_query(th, "ID", probe(fingers[1][1])))
    first = _post(th, root, idn, token)
    assert first.status_code == 200
    second = _post(th, root, idn, token)
    reply = th.requester._check_reply(
        second.text, peers_of(nodes, "ID")[0], QueryPayload.from_wire(_payload(token))
    )
    assert reply.outcome is Outcome.REFUSED and reply.reason == "replayed_nonce"
    stale = _query(th, "ID", probe(fingers[1][1]), created=datetime.now(UTC) - timedelta(hours=1))
    r = _post(th, root, idn, th.requester.sign_query(stale))
    assert "stale_message" in _payload(r.text).get("reason", "")
    assert idn.search.calls == calls + 1  # only the first was matched


def test_a_reused_query_id_links_nothing(
    nodes: dict[str, NodeHandle],
    region_dir: tuple[Region, Path],
    fingers: list[list[FingerprintTemplate]],
) -> None:
    """Two validly signed queries (fresh nonces) sharing one query id and hitting one record:
    both are answered, with unrelated references (the second was a 500 that told the
    requester it was the same record, and left no reply in the log)."""
    import json

    _, root = region_dir
    th, idn = nodes["TH"], nodes["ID"]
    qid = uuid.uuid4()
    before = idn.log.size()
    refs = []
    for _ in range(2):
        query = _query(th, "ID", probe(fingers[1][1])).model_copy(update={"query_id": qid})
        r = _post(th, root, idn, th.requester.sign_query(query))
        assert r.status_code == 200, r.text
        assert _payload(r.text)["outcome"] == "hit"
        refs.append(_payload(r.text)["reference"])
    assert refs[0] != refs[1]
    sent = [json.loads(e.data) for e in idn.log.entries(before)]
    assert [e["type"] for e in sent].count("reply_sent") == 2


def _payload(token: str) -> dict[str, object]:
    import base64
    import json

    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def test_wrong_recipient_and_tampered(
    nodes: dict[str, NodeHandle],
    region_dir: tuple[Region, Path],
    fingers: list[list[FingerprintTemplate]],
) -> None:
    _, root = region_dir
    th, idn = nodes["TH"], nodes["ID"]
    token = th.requester.sign_query(_query(th, "MY", probe(fingers[1][1])))
    r = _post(th, root, idn, token)
    assert r.status_code == 200 and _payload(r.text)["reason"] == "wrong_recipient"
    good = th.requester.sign_query(_query(th, "ID", probe(fingers[1][1])))
    head, _, sig = good.split(".")
    claims = _payload(good)
    claims["purpose"] = "law_enforcement"
    import json

    forged = b64url(json.dumps(claims, sort_keys=True, separators=(",", ":")).encode())
    r = _post(th, root, idn, f"{head}.{forged}.{sig}")
    assert r.status_code == 403 and r.json()["error"] == "bad_signature"
    r = _post(th, root, idn, "not-a-jws")
    assert r.status_code in (400, 403) and r.json()["error"]


def test_a_deeply_nested_query_is_refused_and_logged(
    nodes: dict[str, NodeHandle], region_dir: tuple[Region, Path]
) -> None:
    """A member's validly signed query of 2,000 nested brackets (6.5 KB) got a bare 500
    (RecursionError) and left no trace in the exchange log; now a logged malformed query."""
    from certs.pki.jose import sign_compact

    region, root = region_dir
    th, idn = nodes["TH"], nodes["ID"]
    payload = b'{"sender":"TH","v":1,"x":' + b"[" * 2_000 + b"]" * 2_000 + b"}"
    keys = region.nodes["TH"]
    token = sign_compact(payload, keys.signing_key, [keys.signing_cert], typ=params.QUERY_TYP)
    before = idn.log.size()
    r = _post(th, root, idn, token)
    assert (r.status_code, r.json()["error"]) == (403, "malformed")
    logged = [json.loads(e.data)["type"] for e in idn.log.entries(before)]
    assert logged == ["query_refused"]


def test_signed_by_another_country_than_tls(
    nodes: dict[str, NodeHandle],
    region_dir: tuple[Region, Path],
    fingers: list[list[FingerprintTemplate]],
) -> None:
    _, root = region_dir
    # MY's TLS connection carrying a query signed by TH: the signer is not the TLS peer.
    token = nodes["TH"].requester.sign_query(_query(nodes["TH"], "ID", probe(fingers[1][1])))
    r = _post(nodes["MY"], root, nodes["ID"], token)
    assert r.status_code == 403 and r.json()["error"] == "wrong_country"


def test_peer_down_and_stalled(
    nodes: dict[str, NodeHandle], fingers: list[list[FingerprintTemplate]]
) -> None:
    import socket
    import threading

    # a "peer" that accepts TCP connections and never answers
    stall = socket.socket()
    stall.bind(("127.0.0.1", 0))
    stall.listen()
    port = stall.getsockname()[1]
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()
    stop = threading.Event()
    try:
        from node.exchange.requester import Peer

        th = nodes["TH"]
        th.requester.timeout = 1.0
        results = asyncio.run(
            th.requester.query_peers(
                [
                    Peer("ID", nodes["ID"].url),
                    Peer("MY", f"https://127.0.0.1:{port}"),
                    Peer("SG", f"https://127.0.0.1:{dead_port}"),
                ],
                "border_control",
                "fingerprint",
                probe(fingers[1][1]),
            )
        )
        by = {r.country: r for r in results}
        assert by["ID"].status == "answered"
        assert by["MY"].status == "timeout"
        assert by["SG"].status == "unreachable"
    finally:
        nodes["TH"].requester.timeout = 5.0
        stop.set()
        stall.close()


def test_every_exchange_is_logged(nodes: dict[str, NodeHandle]) -> None:
    import json

    kinds = {json.loads(e.data)["type"] for e in nodes["ID"].log.entries()}
    assert {"query_received", "policy_decision", "reply_sent", "query_refused"} <= kinds
    sent = {json.loads(e.data)["type"] for e in nodes["TH"].log.entries()}
    assert {"query_sent", "reply_received"} <= sent
    with nodes["ID"].engine.connect() as conn:
        assert conn.execute(text("select count(*) from exchange_nonces")).scalar() > 0
    _ = uuid


def test_long_search_answers_202_and_requester_polls(
    nodes: dict[str, NodeHandle],
    region_dir: tuple[Region, Path],
    fingers: list[list[FingerprintTemplate]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from node.exchange import params

    # The responder answers 202 as soon as a search is not done at once; the requester polls
    # the status URL with backoff until the signed reply is ready.
    monkeypatch.setattr(params, "SYNC_WAIT_SECONDS", 0.0)
    th = nodes["TH"]
    first = _post(
        th,
        region_dir[1],
        nodes["ID"],
        th.requester.sign_query(_query(th, "ID", probe(fingers[1][1]))),
    )
    assert first.status_code == 202 and first.headers["Location"].startswith(QUERY_PATH)
    res = ask(nodes["TH"], nodes, ("ID",), probe(fingers[1][1]))
    assert res["ID"].status == "answered" and res["ID"].reply.outcome is Outcome.HIT


def test_status_url_only_for_the_requester(
    nodes: dict[str, NodeHandle], region_dir: tuple[Region, Path]
) -> None:
    _, root = region_dir
    folder = root / "nodes" / "my"
    ctx = client_context(folder / "tls.pem", folder / "tls.key", root / "root.pem")
    with httpx.Client(verify=ctx, timeout=10) as c:
        r = c.get(nodes["ID"].url + QUERY_PATH + "/" + str(uuid.uuid4()))
    assert r.status_code == 404 and r.json()["error"] == "unknown_query"


def test_a_server_with_another_countrys_certificate_is_sent_nothing(
    nodes: dict[str, NodeHandle], fingers: list[list[FingerprintTemplate]]
) -> None:
    """TH asks ID at an address where MY's node answers (a wrong address, or MY posing as ID:
    its certificate chains to the root and names the host). The certificate is checked as
    the connection opens, so the query and its templates never leave (MY received them and
    logged a wrong_recipient refusal)."""
    th, my = nodes["TH"], nodes["MY"]
    before = my.log.size()
    (got,) = asyncio.run(
        th.requester.query_peers(
            [Peer("ID", my.url)], "border_control", "fingerprint", probe(fingers[1][1])
        )
    )
    assert got.status == "untrusted_peer" and got.reply is None
    assert got.detail is not None and "wrong_country" in got.detail
    assert my.log.size() == before  # nothing reached MY


def test_a_querys_events_are_appended_together_in_order(
    nodes: dict[str, NodeHandle], fingers: list[list[FingerprintTemplate]]
) -> None:
    import json

    node = nodes["ID"]
    before = node.log.size()
    hit = ask(nodes["TH"], nodes, ("ID",), probe(fingers[1][1]))["ID"]
    assert hit.reply.outcome is Outcome.HIT
    events = [json.loads(e.data) for e in node.log.entries(before)]
    assert [e["type"] for e in events] == ["query_received", "policy_decision", "reply_sent"]
    assert {e["query_id"] for e in events} == {hit.query_id}
    assert (events[0]["templates"], events[0]["views"]) == (1, 1)
    # one transaction per batch: all or none (an event that may not be logged stops all)
    with pytest.raises(ValueError):
        node.responder.log.record_many([{"type": "x"}, {"type": "y", "template": "AAAA"}])
    assert node.log.size() == before + 3


class _Watched:
    """ID's probe search, noting the log's entries of each query as its search begins."""

    def __init__(self, node: NodeHandle) -> None:
        self.node, self.search = node, node.responder.search
        self.seen: list[list[dict[str, Any]]] = []
        self.start = node.log.size()

    def decode(self, modality: str, templates: list[TemplateItem]) -> object:
        return self.search.decode(modality, templates)

    def __call__(self, *args: Any) -> Any:
        self.seen.append([json.loads(e.data) for e in self.node.log.entries(self.start)])
        return self.search(*args)


def test_refusal_summaries_survive_an_append_that_fails(
    nodes: dict[str, NodeHandle],
    fingers: list[list[FingerprintTemplate]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ``refusals_suppressed`` summary due at an append that fails is logged by the next
    one (the budget had handed it out and forgotten it: it was lost)."""
    from sqlalchemy.exc import OperationalError

    from node.exchange.admission import RefusalBudget

    th, idn = nodes["TH"], nodes["ID"]
    now = [0.0]
    monkeypatch.setattr(
        idn.responder,
        "refusals",
        RefusalBudget(burst=1, rate_per_s=0, window_s=10, monotonic=lambda: now[0]),
    )
    before = idn.log.size()
    for _ in range(3):  # one logged, two counted
        wrong = th.requester.build_query(
            "MY", "border_control", "fingerprint", probe(fingers[1][1])
        )
        assert idn.responder.answer_verified(wrong).reply.reason == "wrong_recipient"
    now[0] = 20.0  # the window closed: the summary is due at the next append
    record_many, failures = idn.responder.log.record_many, iter([True])

    def flaky(events: list[dict[str, Any]]) -> None:
        if next(failures, False):
            raise OperationalError("INSERT INTO translog_entries", {}, Exception("disk I/O"))
        record_many(events)

    monkeypatch.setattr(idn.responder.log, "record_many", flaky)
    query = th.requester.build_query("ID", "border_control", "fingerprint", probe(fingers[1][1]))
    assert idn.responder.answer_verified(query).reply.outcome is Outcome.ERROR  # log: stage log
    idn.responder.flush_refusal_summaries(closing=True)
    events = [json.loads(e.data) for e in idn.log.entries(before)]
    summaries = [e for e in events if e["type"] == "refusals_suppressed"]
    assert [(e["peer"], e["count"]) for e in summaries] == [("TH", 2)]


class _Failing(_Watched):
    """ID's probe search, decoding probes but failing with ``failure`` when it would search."""

    def __init__(self, node: NodeHandle, failure: Exception) -> None:
        super().__init__(node)
        self.failure = failure

    def __call__(self, *args: Any) -> Any:
        raise self.failure


def test_a_querys_decision_is_logged_before_the_gallery_is_read(
    nodes: dict[str, NodeHandle],
    fingers: list[list[FingerprintTemplate]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A search cut short (the node killed mid-search) is on record with its decision: the
    events up to it are appended before the search begins, the outcome after it."""
    idn = nodes["ID"]
    watched = _Watched(idn)
    monkeypatch.setattr(idn.responder, "search", watched)
    hit = ask(nodes["TH"], nodes, ("ID",), probe(fingers[1][1]))["ID"]
    assert hit.reply.outcome is Outcome.HIT
    (at_search,) = watched.seen
    assert [e["type"] for e in at_search] == ["query_received", "policy_decision"]
    assert {e["query_id"] for e in at_search} == {hit.query_id}
    assert at_search[1]["allowed"] is True
    after = [json.loads(e.data) for e in idn.log.entries(watched.start)]
    assert [e["type"] for e in after] == [*(e["type"] for e in at_search), "reply_sent"]


def test_a_log_that_fails_before_the_search_stops_it(
    nodes: dict[str, NodeHandle],
    fingers: list[list[FingerprintTemplate]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The decision cannot be logged: no gallery record is read, the search is given back to
    the peer's quota, and the reply is a signed ``error`` logged at stage ``log`` (the log
    failed once); a log that stays down leaves no reply at all (none without its entries)."""
    from sqlalchemy.exc import OperationalError

    th, idn = nodes["TH"], nodes["ID"]
    calls, record_many = idn.search.calls, idn.responder.log.record_many
    failures = iter([True])

    def flaky(events: list[dict[str, Any]]) -> None:
        if next(failures, False):
            raise OperationalError("INSERT INTO translog_entries", {}, Exception("disk I/O"))
        record_many(events)

    monkeypatch.setattr(idn.responder.log, "record_many", flaky)
    before = idn.log.size()
    got = ask(th, nodes, ("ID",), probe(fingers[1][1]))["ID"]
    assert got.reply is not None and got.reply.outcome is Outcome.ERROR
    assert idn.search.calls == calls
    events = [json.loads(e.data) for e in idn.log.entries(before)]
    assert [e["type"] for e in events] == ["query_received", "policy_decision", "query_failed"]
    assert (events[-1]["stage"], events[-1]["reason"]) == ("log", "log_unavailable")
    _assert_search_given_back(idn, events)

    def down(events: list[dict[str, Any]]) -> None:
        raise OperationalError("INSERT INTO translog_entries", {}, Exception("disk I/O"))

    monkeypatch.setattr(idn.responder.log, "record_many", down)
    got = ask(th, nodes, ("ID",), probe(fingers[1][1]))["ID"]
    assert got.reply is None and idn.search.calls == calls
    assert idn.log.size() == before + 3


def test_a_search_that_fails_on_the_responders_side_is_a_signed_error(
    nodes: dict[str, NodeHandle],
    fingers: list[list[FingerprintTemplate]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A gallery the node cannot read, or search processes that stopped, are the node's
    failure: a signed ``error`` reply (not a refusal of the template), logged with the cause."""
    import json

    from matcher.errors import GalleryError
    from node.audit import AuditFilter, dashboard
    from node.service_errors import StoreUnavailableError

    th, idn = nodes["TH"], nodes["ID"]
    errors = dashboard(idn.log, idn.engine, AuditFilter()).hit_rate["inbound"].get("error", 0)
    for failure in (
        GalleryError("segment checksum mismatch", reason="bad_checksum"),
        StoreUnavailableError("a search process stopped", reason="search_unavailable"),
    ):
        monkeypatch.setattr(idn.responder, "search", _Failing(idn, failure))
        got = ask(th, nodes, ("ID",), probe(fingers[1][1]))["ID"]
        assert got.reply is not None and got.reply.outcome is Outcome.ERROR
        assert got.reply.reason == "search_unavailable"
        size = idn.log.size()
        events = [json.loads(e.data) for e in idn.log.entries(max(0, size - 4), size)]
        failed = [e for e in events if e["type"] == "query_failed"]
        assert failed and failed[-1]["reason"] == failure.reason  # type: ignore[attr-defined]
        assert failed[-1]["stage"] == "search"
        _assert_search_given_back(idn, events)
    assert dashboard(idn.log, idn.engine, AuditFilter()).hit_rate["inbound"]["error"] == errors + 2


def _assert_search_given_back(node: NodeHandle, events: list[dict[str, Any]]) -> None:
    """The failed query's search is back in the peer's quota, and its event says so."""
    granted = next(e for e in events if e["type"] == "policy_decision")["quota"]
    failed = next(e for e in events if e["type"] == "query_failed")
    assert failed["quota_returned"] is True
    assert failed["quota"] == {**granted, "used": granted["used"] - 1}
    ledger = node.responder.policy.ledger
    day = date.fromisoformat(granted["day"])
    assert ledger.used("TH", "fingerprint", day) == granted["used"] - 1


def test_a_reference_store_failure_after_the_search_is_a_signed_error(
    nodes: dict[str, NodeHandle],
    fingers: list[list[FingerprintTemplate]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hit reference cannot be stored after a granted search: a signed ``error``, and the
    search is given back to TH's quota (asking again must not cost a second search)."""
    import json

    from sqlalchemy.exc import OperationalError

    th, idn = nodes["TH"], nodes["ID"]

    def down(*args: object, **kwargs: object) -> str:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(idn.responder.hits, "issue", down)
    before = idn.log.size()
    got = ask(th, nodes, ("ID",), probe(fingers[1][1]))["ID"]
    assert got.reply is not None and got.reply.outcome is Outcome.ERROR
    events = [json.loads(e.data) for e in idn.log.entries(before)]
    assert [e["type"] for e in events] == ["query_received", "policy_decision", "query_failed"]
    assert (events[-1]["stage"], events[-1]["reason"]) == ("store", "database_unavailable")
    _assert_search_given_back(idn, events)


def test_a_quota_ledger_failure_is_a_signed_error(
    nodes: dict[str, NodeHandle],
    fingers: list[list[FingerprintTemplate]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ledger unavailable: no decision can be made, so no search; the requester gets a
    signed ``error`` (it was an unsigned 403 'forbidden' with only query_received logged)."""
    import json

    from policy.quota import QuotaStoreError

    th, idn = nodes["TH"], nodes["ID"]
    calls = idn.search.calls

    def down(*args: object, **kwargs: object) -> None:
        raise QuotaStoreError("quota ledger unavailable: database is locked")

    monkeypatch.setattr(idn.responder.policy.ledger, "consume", down)
    before = idn.log.size()
    got = ask(th, nodes, ("ID",), probe(fingers[1][1]))["ID"]
    assert got.reply is not None and got.reply.outcome is Outcome.ERROR
    events = [json.loads(e.data) for e in idn.log.entries(before)]
    assert [e["type"] for e in events] == ["query_received", "query_failed"]
    assert (events[-1]["stage"], events[-1]["reason"]) == ("policy", "quota_store_unavailable")
    assert idn.search.calls == calls


def test_a_database_failure_is_a_signed_error(
    nodes: dict[str, NodeHandle],
    fingers: list[list[FingerprintTemplate]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    from sqlalchemy.exc import OperationalError

    th, idn = nodes["TH"], nodes["ID"]

    def locked(*args: object, **kwargs: object) -> None:
        raise OperationalError("INSERT INTO exchange_nonces", {}, Exception("database is locked"))

    monkeypatch.setattr(idn.responder.replay, "check", locked)
    before = idn.log.size()
    got = ask(th, nodes, ("ID",), probe(fingers[1][1]))["ID"]
    assert got.reply is not None and got.reply.outcome is Outcome.ERROR
    failed = [json.loads(e.data) for e in idn.log.entries(before)][-1]
    assert (failed["type"], failed["stage"], failed["reason"]) == (
        "query_failed",
        "store",
        "database_unavailable",
    )


def test_a_query_answered_202_that_fails_is_not_kept(
    nodes: dict[str, NodeHandle],
    region_dir: tuple[Region, Path],
    fingers: list[list[FingerprintTemplate]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A query answered 202 keeps its future for polling; when answering then fails (say the
    exchange log could not be appended), the future's exception must not hold the query, and
    so the probe, in its traceback's frames: no match, no biometrics kept. Nor does asyncio
    log the failure again as never retrieved when the wait's wrapper is dropped."""
    import gc
    import time

    from node.exchange import params

    monkeypatch.setattr(params, "SYNC_WAIT_SECONDS", 0.0)
    th, idn = nodes["TH"], nodes["ID"]

    def failing(query: QueryPayload) -> object:
        time.sleep(0.2)  # past the 202
        raise RuntimeError("the exchange log could not be appended")

    monkeypatch.setattr(idn.responder, "answer_verified", failing)
    query = _query(th, "ID", probe(fingers[2][1]))
    query_id = query.query_id
    token = th.requester.sign_query(query)
    del query
    first = _post(th, region_dir[1], idn, token)
    assert first.status_code == 202
    folder = region_dir[1] / "nodes" / "th"
    ctx = client_context(folder / "tls.pem", folder / "tls.key", region_dir[1] / "root.pem")
    with httpx.Client(verify=ctx, timeout=10) as c:
        for _ in range(100):
            polled = c.get(idn.url + first.headers["Location"])
            if polled.status_code != 202:
                break
            time.sleep(0.05)
        assert polled.status_code == 500 and polled.json()["error"] == "internal_error"
        again = c.get(idn.url + first.headers["Location"])  # each poll answers the same
        assert again.status_code == 500 and again.json() == polled.json()
    kept = idn.server.config.app.state.pending_replies.get(str(query_id), "TH").exception()
    assert kept is not None and kept.__traceback__ is None  # no poll's frames hang on it
    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, QueryPayload)]
    assert not [q for q in alive if q.query_id == query_id]
    # The reply expires (as it would after PENDING_TTL_SECONDS) and everything of it is dropped.
    monkeypatch.setattr(params, "PENDING_TTL_SECONDS", 0.0)
    with pytest.raises(NotFoundError):
        idn.server.config.app.state.pending_replies.get("expire-the-others", "TH")
    gc.collect()
    unretrieved = [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert unretrieved == []


def test_a_query_dated_before_the_first_utc_instant_is_refused_and_logged(
    nodes: dict[str, NodeHandle],
    region_dir: tuple[Region, Path],
    fingers: list[list[FingerprintTemplate]],
) -> None:
    """``0001-01-01T00:00:00+14:00`` is valid ISO 8601 but precedes ``datetime.min`` in UTC:
    a malformed query, refused and logged (it was a 500 with a traceback, and no log entry)."""
    region, root = region_dir
    th, idn = nodes["TH"], nodes["ID"]
    wire = _query(th, "ID", probe(fingers[1][1])).wire()
    wire["created"] = "0001-01-01T00:00:00+14:00"
    material = region.nodes["TH"]
    token = jws.sign(wire, material.signing_key, [material.signing_cert], typ=params.QUERY_TYP)
    before = idn.log.size()
    r = _post(th, root, idn, token)
    assert r.status_code in (400, 422) and r.json()["error"] == "malformed_query", r.text
    events = [json.loads(e.data) for e in idn.log.entries(before)]
    assert [e.get("reason") for e in events if e["type"] == "query_refused"] == ["malformed_query"]


@pytest.mark.parametrize(
    "created",
    [
        datetime(2001, 1, 1, tzinfo=UTC),
        datetime.now(UTC) + timedelta(days=365 * 50),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_a_reply_dated_outside_the_clock_difference_is_invalid(
    nodes: dict[str, NodeHandle],
    region_dir: tuple[Region, Path],
    fingers: list[list[FingerprintTemplate]],
    created: datetime,
) -> None:
    """A correctly signed reply to the very query, dated long before it or in the future:
    its time would go into the exchange log as the answer's, so it is refused."""
    region, _ = region_dir
    th = nodes["TH"]
    query = _query(th, "MY", probe(fingers[1][1]))
    reply = ReplyPayload.model_validate(
        {
            "query_id": query.query_id,
            "requester": "TH",
            "responder": "MY",
            "created": created,
            "nonce": new_nonce(),
            "outcome": "no_hit",
        }
    )
    material = region.nodes["MY"]
    token = jws.sign(
        reply.wire(), material.signing_key, [material.signing_cert], typ=params.REPLY_TYP
    )
    peer = Peer("MY", nodes["MY"].url)
    with pytest.raises(InvalidReplyError, match="clock difference"):
        th.requester._check_reply(token, peer, query)
    now = reply.model_copy(update={"created": datetime.now(UTC)})
    token = jws.sign(
        now.wire(), material.signing_key, [material.signing_cert], typ=params.REPLY_TYP
    )
    assert th.requester._check_reply(token, peer, query) == now
