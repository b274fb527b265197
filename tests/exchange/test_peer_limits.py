"""What one certified peer may take of a node's peer port: its share of the peer threads
(:class:`~node.exchange.admission.PeerWork`) and a bounded number of logged refusals
(:class:`~node.exchange.admission.RefusalBudget`), the other peers unaffected. Three real
nodes (``serving``), each peer's requests posted with its own TLS certificate and keys."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from certs.pki import params as pki_params
from certs.pki.bootstrap import build_region, write_region
from certs.pki.tls import client_context
from matcher.fingerprint import iso19794_2
from matcher.fingerprint.template import FingerprintTemplate
from matcher.synthetic import synthetic_templates
from node.exchange import params
from node.exchange.admission import PeerWork, RefusalBudget
from node.exchange.messages import TemplateItem, b64url
from tests.exchange.service_support import ServiceNode, dated_region, serving
from tests.exchange.test_node_service import by_peer, officer_query

COUNTRIES = ("TH", "ID", "MY")
QUERIES = "/peer/v1/queries"


@pytest.fixture(scope="module")
def fingers() -> list[list[FingerprintTemplate]]:
    return synthetic_templates(6, 2, seed=5)


@pytest.fixture(scope="module")
def region_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("limits-region")
    write_region(build_region(COUNTRIES), root)
    return root


@pytest.fixture(scope="module")
def nodes(
    region_root: Path,
    fingers: list[list[FingerprintTemplate]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, ServiceNode]]:
    """TH answers on 2 peer threads (one per peer at most) and enrols the first 4 fingers."""
    data = tmp_path_factory.mktemp("limits-nodes")
    with serving(data, region_root, COUNTRIES, peer_threads=2) as running:
        running["TH"].enrol([f"th-{i}" for i in range(4)], [f[0] for f in fingers[:4]])
        yield running


def client(root: Path, country: str) -> httpx.Client:
    """An HTTP client presenting ``country``'s TLS certificate."""
    folder = root / "nodes" / country.lower()
    tls = client_context(folder / "tls.pem", folder / "tls.key", root / "root.pem")
    return httpx.Client(verify=tls, timeout=60)


def signed_query(
    node: ServiceNode, to: str, probe: FingerprintTemplate, purpose: str = "asylum"
) -> str:
    """A query of ``node``'s country to ``to`` (for ``purpose``), signed with its own key."""
    item = TemplateItem(
        format="iso19794-2:2005",
        format_version=20,
        finger_position=1,
        data=b64url(iso19794_2.encode(probe)),
    )
    requester = node.exchange.requester
    return requester.sign_query(requester.build_query(to, purpose, "fingerprint", [item]))


def ask(http: httpx.Client, node: ServiceNode, token: str) -> httpx.Response:
    """POST the query and poll a 202 until the reply is there."""
    r = http.post(
        node.peer_url + QUERIES, content=token, headers={"Content-Type": "application/jose"}
    )
    while r.status_code == 202:
        time.sleep(0.05)
        r = http.get(node.peer_url + r.headers["location"])
    return r


def reply(r: httpx.Response) -> dict[str, Any]:
    """The signed reply's payload."""
    assert r.status_code == 200, r.text
    body = r.text.split(".")[1]
    payload: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return payload


def outcome(r: httpx.Response) -> str:
    return str(reply(r)["outcome"])


class Clock:
    """A monotonic clock that moves only when a test moves it."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@contextmanager
def own_budget(node: ServiceNode) -> Iterator[Clock]:
    """``node``'s responder with a fresh refusal budget (the project's tunables) on a clock the
    test moves; the previous one back afterwards."""
    responder = node.exchange.responder
    previous, clock = responder.refusals, Clock()
    responder.refusals = RefusalBudget(monotonic=clock)
    try:
        yield clock
    finally:
        responder.refusals = previous


def events(node: ServiceNode, since: int) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in node.app.state.exchange_log.entries(since)]


def wait_for(check: Any, what: str) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_a_peer_holding_its_share_of_threads_leaves_the_others_theirs(
    nodes: dict[str, ServiceNode], region_root: Path, fingers: list[list[FingerprintTemplate]]
) -> None:
    """ID's share (1 of TH's 2 peer threads) is held by a job waiting on an event: ID's
    queries wait behind it, in ID's own queue, while MY's query is answered; released, ID's
    are answered too. Beyond ID's queue, its query is refused 503 peer_busy (Retry-After)
    and logged. Before, every query went into one shared pool: ID's held both threads."""
    th = nodes["TH"]
    with client(region_root, "ID") as idc:  # a first query sets TH's peer threads up
        assert outcome(ask(idc, th, signed_query(nodes["ID"], "TH", fingers[0][1]))) == "hit"
    work: PeerWork = th.app.state.peer_work
    assert work.per_peer == 1
    release = threading.Event()
    work.submit("ID", lambda: release.wait(60) and None)  # ID's share, held
    answered: list[str] = []

    def id_query(i: int) -> None:
        with client(region_root, "ID") as http:
            answered.append(outcome(ask(http, th, signed_query(nodes["ID"], "TH", fingers[i][1]))))

    held = [threading.Thread(target=id_query, args=(i,)) for i in range(3)]
    try:
        for t in held:
            t.start()
        wait_for(lambda: work.load("ID") == (1, 3), "ID's queries did not queue behind its share")
        with client(region_root, "MY") as myc:
            assert outcome(ask(myc, th, signed_query(nodes["MY"], "TH", fingers[1][1]))) == "hit"
        assert answered == [] and work.load("ID") == (1, 3)  # MY went past ID's queue

        for _ in range(work.queued - 3):  # ID's queue full
            work.submit("ID", lambda: release.wait(60) and None)
        before = th.app.state.exchange_log.size()
        with client(region_root, "ID") as idc:
            r = idc.post(
                th.peer_url + QUERIES, content=signed_query(nodes["ID"], "TH", fingers[2][1])
            )
        assert r.status_code == 503 and r.json()["error"] == "peer_busy"
        assert r.headers["retry-after"] == str(params.PEER_BUSY_RETRY_AFTER_S)
        assert [(e["type"], e["peer"], e["stage"], e["reason"]) for e in events(th, before)] == [
            ("query_refused", "ID", "admission", "peer_busy")
        ]
    finally:
        release.set()
        for t in held:
            t.join(60)
    assert sorted(answered) == ["hit", "hit", "hit"]
    wait_for(lambda: work.load("ID") == (0, 0), "ID's queue did not drain")


def test_a_flood_of_unverified_refusals_is_logged_up_to_its_budget_then_summed(
    nodes: dict[str, ServiceNode], region_root: Path, fingers: list[list[FingerprintTemplate]]
) -> None:
    """MY posts 100 one-byte bodies to ID (its clock standing still): the first REFUSAL_BURST
    are refused (403 malformed) and logged one by one, the rest answered 429 (Retry-After) and
    not logged. A token later one more is logged, no summary yet; once the window has closed
    one refusals_suppressed event counts them. TH's queries to ID, and MY's normal queries to
    TH (more than the budget), are answered as ever."""
    idn = nodes["ID"]
    burst = int(params.REFUSAL_BURST)
    with own_budget(idn) as clock, client(region_root, "MY") as myc:
        before = idn.app.state.exchange_log.size()
        statuses = [myc.post(idn.peer_url + QUERIES, content=b"x") for _ in range(100)]
        assert [r.status_code for r in statuses] == [403] * burst + [429] * (100 - burst)
        assert statuses[-1].json()["error"] == "too_many_refusals"
        assert statuses[-1].headers["retry-after"] == str(params.REFUSAL_RETRY_AFTER_S)
        with client(region_root, "TH") as thc:  # another peer: its refusal and query as ever
            assert thc.post(idn.peer_url + QUERIES, content=b"x").status_code == 403
            token = signed_query(nodes["TH"], "ID", fingers[0][1])
            assert outcome(ask(thc, idn, token)) == "no_hit"
        mine = [e for e in events(idn, before) if e["peer"] == "MY"]
        assert [(e["type"], e["stage"], e["reason"]) for e in mine] == [
            ("query_refused", "signature", "malformed")
        ] * burst
        clock.t += 1 / params.REFUSAL_RATE_PER_S  # a token comes back
        size = idn.app.state.exchange_log.size()
        assert myc.post(idn.peer_url + QUERIES, content=b"x").status_code == 403
        assert [(e["type"], e["peer"]) for e in events(idn, size)] == [("query_refused", "MY")]
        clock.t += params.REFUSAL_SUMMARY_WINDOW_S  # the window closes: the next round logs it
        size = idn.app.state.exchange_log.size()
        idn.exchange.responder.flush_refusal_summaries()
        [summary] = events(idn, size)
        assert summary["type"] == "refusals_suppressed" and summary["peer"] == "MY"
        assert summary["count"] == 100 - burst
        assert summary["reasons"] == {"malformed": 100 - burst}
        # An honest peer's queries take no token: more of them than the budget are answered.
        for i in range(burst + 5):
            token = signed_query(nodes["MY"], "TH", fingers[i % 4][1])
            assert outcome(ask(myc, nodes["TH"], token)) == "hit"


def test_replayed_queries_are_signed_refusals_beyond_the_budget_too(
    nodes: dict[str, ServiceNode], region_root: Path, fingers: list[list[FingerprintTemplate]]
) -> None:
    """A verified query sent again and again (TH to MY): each replay is answered a signed
    replayed_nonce refusal, also beyond TH's budget at MY; the first REFUSAL_BURST are logged
    with their query_received, the others only counted. Before, the rest were answered 429."""
    my = nodes["MY"]
    burst = int(params.REFUSAL_BURST)
    token = signed_query(nodes["TH"], "MY", fingers[0][1])
    with own_budget(my), client(region_root, "TH") as thc:
        before = my.app.state.exchange_log.size()
        assert outcome(ask(thc, my, token)) == "no_hit"
        replies = [reply(ask(thc, my, token)) for _ in range(burst + 20)]
        assert {(r["outcome"], r["reason"]) for r in replies} == {("refused", "replayed_nonce")}
        kinds = Counter(
            (e["type"], e.get("reason")) for e in events(my, before) if e.get("peer") == "TH"
        )
        assert kinds[("query_refused", "replayed_nonce")] == burst
        assert kinds[("query_received", None)] == burst + 1


@pytest.mark.parametrize("defect", ["too_few_minutiae", "bad_resolution"])
def test_unusable_probes_are_refused_before_anything_is_logged_beyond_the_budget(
    nodes: dict[str, ServiceNode],
    region_root: Path,
    fingers: list[list[FingerprintTemplate]],
    defect: str,
) -> None:
    """MY sends TH (which holds a gallery) probes the search cannot use (3 minutiae; a
    resolution outside the matcher's range): each is a signed unusable/unsupported refusal and
    gives its search back; the refusal budget bounds TH's log as for any refusal. Since the
    decision is logged before the search, a probe that passed decoding but failed in the
    search had its decision logged and its refusal kept beyond the budget: 3 entries each,
    unbounded (the quota given back)."""
    th = nodes["TH"]
    burst, sent = int(params.REFUSAL_BURST), int(params.REFUSAL_BURST) + 10
    t = fingers[1][1]
    if defect == "too_few_minutiae":
        bad = replace(
            t, x=t.x[:3], y=t.y[:3], angle=t.angle[:3], kind=t.kind[:3], quality=t.quality[:3]
        )
    else:
        bad = replace(t, resolution_ppi=100, orientation=None)
    with own_budget(th), client(region_root, "MY") as myc:
        before = th.app.state.exchange_log.size()
        replies = [reply(ask(myc, th, signed_query(nodes["MY"], "TH", bad))) for _ in range(sent)]
        assert {r["outcome"] for r in replies} == {"refused"}
        assert len({r["reason"] for r in replies}) == 1
        kinds = Counter(e["type"] for e in events(th, before) if e.get("peer") == "MY")
        assert kinds == {"query_received": burst, "policy_decision": burst, "query_refused": burst}
        refused = [e for e in events(th, before) if e["type"] == "query_refused"]
        assert {e["stage"] for e in refused} == {"template"}
        assert all(e["quota_returned"] for e in refused)


def test_policy_refusals_beyond_the_budget_are_still_signed_and_summed(
    nodes: dict[str, ServiceNode], region_root: Path, fingers: list[list[FingerprintTemplate]]
) -> None:
    """TH sends 40 border_control queries to MY (which answers asylum ones only), then an
    officer at TH searches MY for border_control: every one is answered its signed
    purpose_not_allowed refusal, the officer sees it as MY's answer. MY's log holds the first
    REFUSAL_BURST refusals one by one and, once the window closed, one summary of the rest.
    Before, the queries beyond the budget were answered an unsigned 429 and the officer saw
    http_error."""
    my, th = nodes["MY"], nodes["TH"]
    burst, sent = int(params.REFUSAL_BURST), int(params.REFUSAL_BURST) + 10
    with own_budget(my) as clock, client(region_root, "TH") as thc:
        before = my.app.state.exchange_log.size()
        replies = [
            reply(ask(thc, my, signed_query(th, "MY", fingers[i % 6][1], "border_control")))
            for i in range(sent)
        ]
        assert [(r["outcome"], r["reason"]) for r in replies] == [
            ("refused", "purpose_not_allowed")
        ] * sent
        got = by_peer(officer_query(th, ["MY"], fingers[0][1], "border_control"))["MY"]
        assert (got["status"], got["outcome"], got["reason"]) == (
            "answered",
            "refused",
            "purpose_not_allowed",
        )
        clock.t += params.REFUSAL_SUMMARY_WINDOW_S
        my.exchange.responder.flush_refusal_summaries()
        logged = [e for e in events(my, before) if e.get("peer") == "TH"]
    refused = [e for e in logged if e["type"] == "query_refused"]
    assert [e["reason"] for e in refused] == ["purpose_not_allowed"] * burst
    [summary] = [e for e in logged if e["type"] == "refusals_suppressed"]
    assert summary["count"] == sent + 1 - burst
    assert summary["reasons"] == {"purpose_not_allowed": sent + 1 - burst}


def test_a_flood_grows_the_log_by_its_budget_and_one_summary_a_window(
    nodes: dict[str, ServiceNode], region_root: Path
) -> None:
    """MY floods ID with bodies that are no JWS, 20 every 10 s of ID's (test-moved) clock for
    300 s: ID's log grows by at most REFUSAL_BURST + REFUSAL_RATE_PER_S * 300 refusals and one
    refusals_suppressed event per window (and one more when the node stops). Before, the
    summary was flushed before each of MY's logged refusals: one every step."""
    idn = nodes["ID"]
    span, step, per_step = 300.0, 10.0, 20
    with own_budget(idn) as clock:
        before = idn.app.state.exchange_log.size()
        start = clock.t
        with client(region_root, "MY") as myc:
            while clock.t - start < span:
                for _ in range(per_step):
                    assert myc.post(idn.peer_url + QUERIES, content=b"x").status_code in (403, 429)
                clock.t += step
        idn.exchange.responder.flush_refusal_summaries(closing=True)
        mine = Counter(e["type"] for e in events(idn, before) if e["peer"] == "MY")
    windows = int(span // params.REFUSAL_SUMMARY_WINDOW_S) + 1
    assert mine["refusals_suppressed"] <= windows
    assert mine["query_refused"] <= params.REFUSAL_BURST + params.REFUSAL_RATE_PER_S * span
    assert set(mine) == {"query_refused", "refusals_suppressed"}


def test_refusals_of_this_nodes_own_stale_crl_never_become_429(
    tmp_path: Path, fingers: list[list[FingerprintTemplate]]
) -> None:
    """TH's own CRL is stale: each of ID's queries, more than the budget, is refused 403
    stale_crl (stage tls), never answered 429 too_many_refusals: the refusal is TH's state,
    not ID's doing (before, the 31st and later were 429, and the shared bucket of TLS
    refusals was spent for every peer). They are logged one by one up to a budget of their
    own, the rest counted (logged one by one without end, any member could append ~500
    entries a second to TH's log while its CRL was stale)."""
    issued = datetime.now(UTC) - pki_params.CRL_VALIDITY - pki_params.DEFAULT_GRACE
    region = dated_region(("TH", "ID"), crl_issued=issued - timedelta(days=1))
    write_region(region, tmp_path / "region")
    sent = int(params.REFUSAL_BURST) + 10
    with serving(tmp_path / "data", tmp_path / "region", ("TH", "ID")) as running:
        th, idn = running["TH"], running["ID"]
        before = th.app.state.exchange_log.size()
        with client(tmp_path / "region", "ID") as http:
            answers = [
                http.post(th.peer_url + QUERIES, content=signed_query(idn, "TH", fingers[0][1]))
                for _ in range(sent)
            ]
        assert {(r.status_code, r.json()["error"]) for r in answers} == {(403, "stale_crl")}
        th.exchange.responder.flush_refusal_summaries(closing=True)  # as the node stops
        logged = events(th, before)
    burst = int(params.REFUSAL_BURST)
    assert [(e["type"], e.get("stage"), e.get("reason")) for e in logged[:burst]] == [
        ("query_refused", "tls", "stale_crl")
    ] * burst
    assert [(e["type"], e["count"], e["reasons"]) for e in logged[burst:]] == [
        ("refusals_suppressed", sent - burst, {"stale_crl": sent - burst})
    ]


def test_a_refused_query_whose_unit_stays_charged_is_always_logged(
    nodes: dict[str, ServiceNode],
    fingers: list[list[FingerprintTemplate]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A query the policy allowed (a unit charged) whose templates are then refused gives the
    unit back; when the ledger fails to (QuotaStoreError), its events are the only record of
    the charge. Beyond ID's refusal budget they were dropped with the rest: the auditor saw
    ID's count jump by one with no entry for it."""
    from dataclasses import replace

    from node.services.search import MAX_FINGERS
    from policy.quota import QuotaStoreError

    th, idn = nodes["TH"], nodes["ID"]
    responder = th.exchange.responder

    def ledger_down(decision: object) -> None:
        raise QuotaStoreError("the quota ledger is unavailable")

    monkeypatch.setattr(responder.policy, "return_search", ledger_down)
    monkeypatch.setattr(responder, "refusals", RefusalBudget(burst=0))  # ID's budget spent
    view = replace(fingers[1][1], finger_position=0)
    item = TemplateItem(
        format="iso19794-2:2005",
        format_version=20,
        data=b64url(iso19794_2.encode_views([view] * (MAX_FINGERS + 1))),
    )
    requester = idn.exchange.requester
    token = requester.sign_query(requester.build_query("TH", "asylum", "fingerprint", [item]))
    before = th.app.state.exchange_log.size()
    with client(th.app.state.settings.pki_dir, "ID") as http:
        r = http.post(th.peer_url + QUERIES, content=token)
    assert r.status_code == 200, r.text
    refused = [e for e in events(th, before) if e["type"] == "query_refused"]
    assert [(e["stage"], e["quota_returned"]) for e in refused] == [("template", False)]
