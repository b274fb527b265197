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
from pathlib import Path
from typing import Any

import httpx
import pytest

from certs.pki.bootstrap import build_region, write_region
from certs.pki.tls import client_context
from matcher.fingerprint import iso19794_2
from matcher.fingerprint.template import FingerprintTemplate
from matcher.synthetic import synthetic_templates
from node.exchange import params
from node.exchange.admission import PeerWork
from node.exchange.messages import TemplateItem, b64url
from tests.exchange.service_support import ServiceNode, serving

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


def signed_query(node: ServiceNode, to: str, probe: FingerprintTemplate) -> str:
    """A query of ``node``'s country to ``to``, signed with its own key."""
    item = TemplateItem(
        format="iso19794-2:2005",
        format_version=20,
        finger_position=1,
        data=b64url(iso19794_2.encode(probe)),
    )
    requester = node.exchange.requester
    return requester.sign_query(requester.build_query(to, "asylum", "fingerprint", [item]))


def ask(http: httpx.Client, node: ServiceNode, token: str) -> httpx.Response:
    """POST the query and poll a 202 until the reply is there."""
    r = http.post(
        node.peer_url + QUERIES, content=token, headers={"Content-Type": "application/jose"}
    )
    while r.status_code == 202:
        time.sleep(0.05)
        r = http.get(node.peer_url + r.headers["location"])
    return r


def outcome(r: httpx.Response) -> str:
    assert r.status_code == 200, r.text
    body = r.text.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["outcome"])


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


def test_a_flood_of_refusals_is_logged_up_to_its_budget_then_summed(
    nodes: dict[str, ServiceNode], region_root: Path, fingers: list[list[FingerprintTemplate]]
) -> None:
    """MY posts 100 one-byte bodies to ID: its first ones are refused (403 malformed) and
    logged one by one, the rest answered 429 (Retry-After) and not logged; MY's next logged
    refusal comes after one refusals_suppressed event counting them. TH's queries to ID, and
    MY's normal queries to TH (more than the budget), are answered as ever."""
    idn = nodes["ID"]
    flood = 100
    before = idn.app.state.exchange_log.size()
    with client(region_root, "MY") as myc:
        statuses = Counter(
            myc.post(idn.peer_url + QUERIES, content=b"x").status_code for _ in range(flood)
        )
        r = myc.post(idn.peer_url + QUERIES, content=b"x")
        assert r.status_code == 429 and r.json()["error"] == "too_many_refusals"
        assert r.headers["retry-after"] == str(params.REFUSAL_RETRY_AFTER_S)
        with client(region_root, "TH") as thc:  # another peer: its refusal and query as ever
            assert thc.post(idn.peer_url + QUERIES, content=b"x").status_code == 403
            token = signed_query(nodes["TH"], "ID", fingers[0][1])
            assert outcome(ask(thc, idn, token)) == "no_hit"
        logged = events(idn, before)
        mine = [e for e in logged if e["peer"] == "MY"]
        assert set(statuses) == {403, 429}
        assert [(e["type"], e["stage"], e["reason"]) for e in mine] == [
            ("query_refused", "signature", "malformed")
        ] * statuses[403]
        assert statuses[403] <= params.REFUSAL_BURST + 10  # a bounded number, not one each
        time.sleep(1.5 / params.REFUSAL_RATE_PER_S)  # a token comes back
        size = idn.app.state.exchange_log.size()
        assert myc.post(idn.peer_url + QUERIES, content=b"x").status_code == 403
        summary, refused = events(idn, size)
        assert refused["type"] == "query_refused" and refused["peer"] == "MY"
        assert summary["type"] == "refusals_suppressed" and summary["peer"] == "MY"
        assert summary["count"] == statuses[429] + 1
        assert summary["reasons"] == {"malformed": statuses[429] + 1}
        # An honest peer's queries take no token: more of them than the budget are answered.
        for i in range(int(params.REFUSAL_BURST) + 5):
            token = signed_query(nodes["MY"], "TH", fingers[i % 4][1])
            assert outcome(ask(myc, nodes["TH"], token)) == "hit"


def test_replayed_queries_are_signed_refusals_up_to_the_budget(
    nodes: dict[str, ServiceNode], region_root: Path, fingers: list[list[FingerprintTemplate]]
) -> None:
    """A verified query sent again and again (TH to MY): each replay is a signed
    replayed_nonce refusal, logged with its query_received, until TH's budget at MY is spent;
    then 429, nothing logged."""
    my = nodes["MY"]
    token = signed_query(nodes["TH"], "MY", fingers[0][1])
    before = my.app.state.exchange_log.size()
    with client(region_root, "TH") as thc:
        assert outcome(ask(thc, my, token)) == "no_hit"
        replies = [ask(thc, my, token) for _ in range(int(params.REFUSAL_BURST) + 20)]
    refused = [r for r in replies if r.status_code == 200]
    assert {outcome(r) for r in refused} == {"refused"}
    assert {r.status_code for r in replies} == {200, 429}
    kinds = Counter(
        (e["type"], e.get("reason")) for e in events(my, before) if e.get("peer") == "TH"
    )
    assert kinds[("query_refused", "replayed_nonce")] == len(refused)
    assert kinds[("query_received", None)] == len(refused) + 1
