"""An officer's queries read back from the exchange log (``GET /queries``,
``GET /queries/{id}``, ``bdx queries list|show``) and a late reply fetched
(``POST /queries/{id}/poll``, ``bdx queries poll``) after the node stopped waiting for a peer
that had accepted the query. Three nodes served as ``bdx serve`` serves them: TH asks, ID and
MY answer; ID's searches are made slow where a test needs a peer that answers late."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from certs.pki import params as pki_params
from certs.pki.bootstrap import build_region, write_region
from certs.pki.revocation import crl_pem
from certs.pki.tls import client_context
from matcher.fingerprint import iso19794_2
from matcher.fingerprint.template import FingerprintTemplate
from matcher.synthetic import synthetic_templates
from node.db.models import Role
from node.errors import NotFoundError
from node.exchange import params
from node.exchange.officer import UnknownPeerError, probe_items, query_peers
from node.exchange.requester import QUERY_PATH, Peer
from node.exchange.router import router as peer_routes
from node.services.queries import LIST_ACTION, POLL_ACTION, SHOW_ACTION
from node.services.users import UserService
from policy.decision import PolicyEngine
from policy.rules import parse_policy
from tests.exchange.service_support import ServiceNode, dated_region, serving
from tests.exchange.test_own_pki import FINGERS as PKI_FINGERS
from tests.exchange.test_own_pki import bdx_query, running

BDX = [sys.executable, "-c", "from node.cli import main; main()"]
FINGERS = 5
#: TH's deadline per peer in the tests that need it to give up (the nodes' is 5 s).
SHORT_WAIT_S = 1.0
#: Longest a search at ID is held by a test (it is released sooner).
HELD_SEARCH_S = 60.0


@dataclass
class Setup:
    th: ServiceNode
    id: ServiceNode
    my: ServiceNode
    tokens: dict[str, str]  # at TH, by user name
    region: Path  # the region's PKI folder

    def headers(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}


@pytest.fixture(scope="module")
def fingers() -> list[list[FingerprintTemplate]]:
    return synthetic_templates(FINGERS, 2, seed=23)


@pytest.fixture(scope="module")
def nodes(
    fingers: list[list[FingerprintTemplate]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("history-region")
    write_region(build_region(("TH", "ID", "MY")), root)
    with serving(tmp_path_factory.mktemp("history-nodes"), root, ("TH", "ID", "MY")) as served:
        served["ID"].enrol([f"id-{i}" for i in range(FINGERS)], [f[0] for f in fingers])
        served["MY"].enrol(["my-0"], [fingers[0][0]])
        th = served["TH"]
        tokens = {"officer": th.token}
        with th.app.state.sessions() as session:
            users = UserService(session)
            for name, role in (
                ("officer2", Role.OFFICER),
                ("admin", Role.ADMIN),
                ("auditor", Role.AUDITOR),
                ("operator", Role.OPERATOR),
            ):
                users.add_user(name, role, actor="test")
                tokens[name] = users.issue_token(name, expires_days=1, actor="test").token
        setup = Setup(th, served["ID"], served["MY"], tokens, root)
        # Each peer's first search after the enrolment loads the new gallery, longer than TH
        # waits on a loaded machine: done here, outside the tests' assertions.
        send(setup, ["ID", "MY"], fingers[0][1], case_ref="warm-up")
        yield setup


def send(
    nodes: Setup,
    to: list[str],
    probe: FingerprintTemplate,
    *,
    case_ref: str,
    user: str = "officer",
    purpose: str = "asylum",
) -> dict[str, dict[str, Any]]:
    """``user``'s query to ``to`` through TH's API: each peer's result."""
    r = post_query(nodes, to, probe, case_ref=case_ref, user=user, purpose=purpose)
    assert r.status_code == 200, r.text
    return {p["peer"]: p for p in r.json()["results"]}


def post_query(
    nodes: Setup,
    to: list[str],
    probe: FingerprintTemplate,
    *,
    case_ref: str,
    user: str = "officer",
    purpose: str = "asylum",
) -> httpx.Response:
    """``user``'s ``POST /queries`` to ``to`` through TH's API, as answered."""
    body = {
        "peers": to,
        "purpose": purpose,
        "modality": "fingerprint",
        "templates": [
            {"data": base64.b64encode(iso19794_2.encode(probe)).decode(), "finger_position": 1}
        ],
        "case_ref": case_ref,
    }
    return httpx.post(
        nodes.th.api_url + "/queries", json=body, headers=nodes.headers(user), timeout=60
    )


def get(nodes: Setup, path: str, user: str, **query: Any) -> httpx.Response:
    return httpx.get(nodes.th.api_url + path, params=query, headers=nodes.headers(user), timeout=60)


def poll(nodes: Setup, query_id: str, user: str = "officer") -> httpx.Response:
    return httpx.post(
        f"{nodes.th.api_url}/queries/{query_id}/poll", headers=nodes.headers(user), timeout=60
    )


def listed(nodes: Setup, user: str = "officer", **query: Any) -> list[dict[str, Any]]:
    r = get(nodes, "/queries", user, limit=1000, **query)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def audited(nodes: Setup, action: str) -> list[dict[str, Any]]:
    r = get(nodes, "/audit-events", "auditor", action=action, limit=1000)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def logged(node: ServiceNode, kind: str, query_id: str) -> list[dict[str, Any]]:
    events = [json.loads(e.data) for e in node.exchange.log.entries()]
    return [e for e in events if e.get("type") == kind and e.get("query_id") == query_id]


def bdx(nodes: Setup, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BDX_TOKEN": nodes.tokens[user]}
    env.pop("BDX_TOKEN_FILE", None)
    command = [*BDX, "queries", *args, "--url", nodes.th.api_url]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


@contextmanager
def slow_peer(
    nodes: Setup, monkeypatch: pytest.MonkeyPatch, *, sync_wait_s: float
) -> Iterator[threading.Event]:
    """ID's fingerprint searches wait until the event yielded is set (at the latest when the
    block ends), ID answers 202 after ``sync_wait_s`` and TH gives up after SHORT_WAIT_S."""
    search = nodes.id.exchange.responder.search
    original = search._fingerprint
    release, done = threading.Event(), threading.Event()

    def slow(*args: Any, **kwargs: Any) -> Any:
        release.wait(HELD_SEARCH_S)
        try:
            return original(*args, **kwargs)
        finally:
            done.set()

    with monkeypatch.context() as patched:
        patched.setattr(search, "_fingerprint", slow)
        patched.setattr(params, "SYNC_WAIT_SECONDS", sync_wait_s)
        patched.setattr(nodes.th.exchange.requester, "timeout", SHORT_WAIT_S)
        try:
            yield release
        finally:
            release.set()
            # ID's peer threads are shared by TH's queries: the held search ends first.
            assert done.wait(HELD_SEARCH_S)


def kept_reply_done(nodes: Setup, query_id: str) -> None:
    """Wait until ID's reply of ``query_id``, kept for polling, is made."""
    nodes.id.app.state.pending_replies.get(query_id, "TH").result(timeout=30)


def test_an_officer_reads_back_their_own_queries(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    before = datetime.now(UTC)
    got = send(nodes, ["ID", "MY"], fingers[1][1], case_ref="own-1")
    seen = len(audited(nodes, SHOW_ACTION)), len(audited(nodes, LIST_ACTION))
    items = listed(nodes, case_ref="own-1")
    assert [(q["peer"], q["status"]) for q in items] == [("ID", "answered"), ("MY", "answered")]
    first = items[0]
    assert (first["query_id"], first["outcome"], first["reference"]) == (
        got["ID"]["query_id"],
        "hit",
        got["ID"]["reference"],
    )
    assert items[1]["outcome"] == "no_hit" and items[1]["reference"] is None
    r = get(nodes, f"/queries/{got['ID']['query_id']}", "officer")
    assert r.status_code == 200, r.text
    shown = r.json()
    assert {k: shown[k] for k in ("peer", "purpose", "modality", "case_ref", "officer")} == {
        "peer": "ID",
        "purpose": "asylum",
        "modality": "fingerprint",
        "case_ref": "own-1",
        "officer": "user:officer",
    }
    sent_at = datetime.fromisoformat(shown["sent_at"])
    assert before <= sent_at <= datetime.fromisoformat(shown["replied_at"]) <= datetime.now(UTC)
    assert (shown["late"], shown["pollable"]) == (False, False)
    assert shown["reply_jws"] == got["ID"]["reply_jws"]
    assert [r["status"] for r in shown["replies"]] == ["answered"]
    # Reading one's own queries is not recorded.
    assert (len(audited(nodes, SHOW_ACTION)), len(audited(nodes, LIST_ACTION))) == seen


def test_the_listing_filters_and_pages(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    send(nodes, ["ID"], fingers[2][1], case_ref="filter-a")
    middle = datetime.now(UTC)
    send(nodes, ["ID", "MY"], fingers[2][1], case_ref="filter-b")
    assert [q["case_ref"] for q in listed(nodes, case_ref="filter-a")] == ["filter-a"]
    to_my = listed(nodes, peer="MY", case_ref="filter-b")
    assert [q["peer"] for q in to_my] == ["MY"]
    later = listed(nodes, since=middle.isoformat())
    assert {q["case_ref"] for q in later} == {"filter-b"} and len(later) == 2
    everything = listed(nodes)
    r = get(nodes, "/queries", "officer", limit=2, offset=1)
    page = r.json()
    assert [q["query_id"] for q in page["items"]] == [q["query_id"] for q in everything[1:3]]
    assert page["total"] == len(everything) and page["next_offset"] == 3
    last = get(nodes, "/queries", "officer", limit=2, offset=len(everything) - 1).json()
    assert len(last["items"]) == 1 and last["next_offset"] is None
    bad = get(nodes, "/queries", "officer", peer="Thailand")
    assert bad.status_code == 422


def test_another_officers_query_is_not_found(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    mine = send(nodes, ["ID"], fingers[1][1], case_ref="private-1")["ID"]["query_id"]
    unknown = "00000000-0000-4000-8000-000000000000"
    theirs = get(nodes, f"/queries/{mine}", "officer2")
    never = get(nodes, f"/queries/{unknown}", "officer2")
    assert theirs.status_code == never.status_code == 404
    # The same answer as for a query never sent: nothing says it exists.
    assert theirs.json() == {k: v.replace(unknown, mine) for k, v in never.json().items()}
    assert theirs.json()["error"] == "unknown_query"
    assert listed(nodes, "officer2", case_ref="private-1") == []
    assert poll(nodes, mine, "officer2").status_code == 404
    named = get(nodes, "/queries", "officer2", officer="officer")
    assert named.status_code == 403 and named.json()["error"] == "own_queries_only"
    # Naming oneself is what an officer sees anyway.
    send(nodes, ["ID"], fingers[1][1], case_ref="private-2", user="officer2")
    assert [q["officer"] for q in listed(nodes, "officer2", officer="officer2")] == [
        "user:officer2"
    ]


def test_admins_and_auditors_read_every_officers_queries_on_the_record(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    qid = send(nodes, ["ID"], fingers[3][1], case_ref="review-1")["ID"]["query_id"]
    send(nodes, ["ID"], fingers[3][1], case_ref="review-1", user="officer2")
    for user in ("admin", "auditor"):
        every = listed(nodes, user, case_ref="review-1")
        assert [q["officer"] for q in every] == ["user:officer", "user:officer2"]
        one = listed(nodes, user, case_ref="review-1", officer="officer")
        assert [q["query_id"] for q in one] == [qid]
        assert get(nodes, f"/queries/{qid}", user).json()["case_ref"] == "review-1"
    lists = [e for e in audited(nodes, LIST_ACTION) if e["details"]["case_ref"] == "review-1"]
    assert [(e["actor"], e["target"], e["details"]["returned"]) for e in lists] == [
        ("user:admin", None, 2),
        ("user:admin", "user:officer", 1),
        ("user:auditor", None, 2),
        ("user:auditor", "user:officer", 1),
    ]
    shows = [e for e in audited(nodes, SHOW_ACTION) if e["target"] == qid]
    assert [(e["actor"], e["details"]) for e in shows] == [
        ("user:admin", {"officer": "user:officer", "peer": "ID"}),
        ("user:auditor", {"officer": "user:officer", "peer": "ID"}),
    ]
    # ...and in the tamper-evident log.
    mirrored = [
        e
        for e in (json.loads(x.data) for x in nodes.th.exchange.log.entries())
        if e.get("type") == "node_action" and e.get("action") == SHOW_ACTION
    ]
    assert [e["target"] for e in mirrored][-2:] == [qid, qid]


@pytest.mark.parametrize(
    ("user", "path", "status"),
    [
        (None, "/queries", 401),
        ("operator", "/queries", 403),
        ("operator", "/queries/00000000-0000-4000-8000-000000000000", 403),
    ],
)
def test_who_may_read_the_history(nodes: Setup, user: str | None, path: str, status: int) -> None:
    headers = nodes.headers(user) if user is not None else {}
    r = httpx.get(nodes.th.api_url + path, headers=headers, timeout=60)
    assert r.status_code == status, r.text


def test_an_unknown_query_is_not_found_for_an_admin_either(nodes: Setup) -> None:
    r = get(nodes, "/queries/not-a-query-id", "admin")
    assert r.status_code == 404 and r.json()["error"] == "unknown_query"
    assert bdx(nodes, "officer", "show", "00000000-0000-4000-8000-000000000000").returncode == 4


def test_a_reply_that_came_after_the_node_stopped_waiting_is_fetched_late(
    nodes: Setup, fingers: list[list[FingerprintTemplate]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ID accepts the query (202) and searches longer than TH waits: TH's officer got
    ``timeout``, although ID answers a hit a moment later and keeps it for polling."""
    with slow_peer(nodes, monkeypatch, sync_wait_s=0.2) as release:
        got = send(nodes, ["ID"], fingers[2][1], case_ref="late-1")["ID"]
        qid = got["query_id"]
        assert (got["status"], got["pollable"]) == ("timeout", True), got
        # Still searching: pending, and it may be polled again.
        early = bdx(nodes, "officer", "poll", qid, "--json")
        assert early.returncode == 6, early.stderr
        assert json.loads(early.stdout)["status"] == "pending"
        assert "[pending]" in early.stderr
        release.set()
        kept_reply_done(nodes, qid)
        r = poll(nodes, qid, "admin")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["outcome"], body["late"], body["pollable"]) == (
        "answered",
        "hit",
        True,
        False,
    )
    assert body["reference"] and body["reply_jws"].count(".") == 2
    assert [(x["status"], x["late"]) for x in body["replies"]] == [
        ("timeout", False),
        ("pending", True),
        ("answered", True),
    ]
    # The reference TH got late is the one ID logged for this query.
    assert logged(nodes.id, "reply_sent", qid)[-1]["reference"] == body["reference"]
    replies = logged(nodes.th, "reply_received", qid)
    status_url = f"{nodes.id.peer_url}{QUERY_PATH}/{qid}"
    assert [e.get("status_url") for e in replies] == [status_url, status_url, None]
    assert [e.get("late", False) for e in replies] == [False, True, True]
    assert replies[-1]["reference"] == body["reference"]
    # The admin's poll is on the record; the officer's own is not.
    polls = [e for e in audited(nodes, POLL_ACTION) if e["target"] == qid]
    assert [(e["actor"], e["details"]["status"]) for e in polls] == [("user:admin", "answered")]
    shown = bdx(nodes, "officer", "show", qid)
    assert shown.returncode == 0 and "answered (late reply)" in shown.stdout
    # Answered: nothing is left to fetch.
    again = poll(nodes, qid)
    assert again.status_code == 409 and again.json()["error"] == "not_timed_out"
    cli = bdx(nodes, "officer", "poll", qid)
    assert cli.returncode == 3 and "[not_timed_out]" in cli.stderr


def test_a_reply_the_peer_no_longer_holds_is_expired(
    nodes: Setup, fingers: list[list[FingerprintTemplate]], monkeypatch: pytest.MonkeyPatch
) -> None:
    with slow_peer(nodes, monkeypatch, sync_wait_s=0.2) as release:
        got = send(nodes, ["ID"], fingers[1][1], case_ref="late-2")["ID"]
        qid = got["query_id"]
        assert got["status"] == "timeout" and got["pollable"]
        release.set()
        kept_reply_done(nodes, qid)
        monkeypatch.setattr(params, "PENDING_TTL_SECONDS", 0.0)  # ID forgets it now
        gone = bdx(nodes, "officer", "poll", qid, "--json")
    assert gone.returncode == 4, gone.stderr
    body = json.loads(gone.stdout)
    assert (body["status"], body["late"], body["pollable"]) == ("expired", True, False)
    assert body["outcome"] is None and body["detail"]
    assert logged(nodes.th, "reply_received", qid)[-1]["status"] == "expired"
    again = poll(nodes, qid)
    assert again.status_code == 409 and again.json()["error"] == "not_timed_out"


def test_a_query_the_peer_never_accepted_has_nothing_to_poll(
    nodes: Setup, fingers: list[list[FingerprintTemplate]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """TH gives up before ID answers anything (202 included): no status URL is kept."""
    with slow_peer(nodes, monkeypatch, sync_wait_s=HELD_SEARCH_S):
        got = send(nodes, ["ID"], fingers[1][1], case_ref="late-3")["ID"]
    assert (got["status"], got["pollable"]) == ("timeout", False), got
    r = poll(nodes, got["query_id"])
    assert r.status_code == 409 and r.json()["error"] == "no_status_url", r.text
    assert "status_url" not in logged(nodes.th, "reply_received", got["query_id"])[-1]


@pytest.mark.parametrize(("user", "status"), [("auditor", 403), ("operator", 403)])
def test_only_the_officer_or_an_admin_polls(
    nodes: Setup, fingers: list[list[FingerprintTemplate]], user: str, status: int
) -> None:
    qid = send(nodes, ["ID"], fingers[1][1], case_ref="poll-who")["ID"]["query_id"]
    r = poll(nodes, qid, user)
    assert r.status_code == status and r.json()["error"] == "wrong_role", r.text


def test_the_command_line_lists_and_shows(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    qid = send(nodes, ["ID"], fingers[1][1], case_ref="cli-1")["ID"]["query_id"]
    out = bdx(nodes, "officer", "list", "--case-ref", "cli-1", "--json")
    assert out.returncode == 0, out.stderr
    assert [q["query_id"] for q in json.loads(out.stdout)["items"]] == [qid]
    text = bdx(nodes, "officer", "list", "--case-ref", "cli-1", "--peer", "id")
    assert text.returncode == 0 and qid in text.stdout and "answered" in text.stdout
    shown = bdx(nodes, "officer", "show", qid, "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["case_ref"] == "cli-1"
    other = bdx(nodes, "officer2", "show", qid)
    assert other.returncode == 4 and "[unknown_query]" in other.stderr
    refused = bdx(nodes, "operator", "list")
    assert refused.returncode == 5 and "[wrong_role]" in refused.stderr


@contextmanager
def slow_link(nodes: Setup, monkeypatch: pytest.MonkeyPatch, seconds: float) -> Iterator[None]:
    """TH's late polls take ``seconds`` longer to reach ID, as over a slow link."""
    requester = nodes.th.exchange.requester
    original = requester._poll_once

    async def slow(client: httpx.AsyncClient, peer: Peer, status_url: str) -> str:
        await asyncio.sleep(seconds)
        return await original(client, peer, status_url)

    with monkeypatch.context() as patched:
        patched.setattr(requester, "_poll_once", slow)
        yield


def timed_out_query(
    nodes: Setup,
    fingers: list[list[FingerprintTemplate]],
    monkeypatch: pytest.MonkeyPatch,
    case_ref: str,
) -> str:
    """A query ID accepted (202) and TH gave up on; ID's reply is made and kept."""
    with slow_peer(nodes, monkeypatch, sync_wait_s=0.2) as release:
        got = send(nodes, ["ID"], fingers[2][1], case_ref=case_ref)["ID"]
        assert (got["status"], got["pollable"]) == ("timeout", True), got
        release.set()
        kept_reply_done(nodes, got["query_id"])
    qid: str = got["query_id"]
    return qid


def test_concurrent_polls_of_one_query_fetch_its_reply_once(
    nodes: Setup, fingers: list[list[FingerprintTemplate]], monkeypatch: pytest.MonkeyPatch
) -> None:
    qid = timed_out_query(nodes, fingers, monkeypatch, "race-1")
    users = ("officer", "officer", "admin", "admin")
    start = threading.Barrier(len(users))
    answers: list[tuple[str, int, str]] = []

    def one(user: str) -> None:
        start.wait()
        r = poll(nodes, qid, user)
        answers.append((user, r.status_code, r.json().get("status") or r.json()["error"]))

    threads = [threading.Thread(target=one, args=(u,)) for u in users]
    with slow_link(nodes, monkeypatch, 0.5):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    # One poll fetched the reply; the others, in turn after it, found the query answered.
    assert sorted((code, status) for _, code, status in answers) == [
        (200, "answered"),
        (409, "not_timed_out"),
        (409, "not_timed_out"),
        (409, "not_timed_out"),
    ], answers
    late = [e["status"] for e in logged(nodes.th, "reply_received", qid) if e.get("late")]
    assert late == ["answered"]


def test_an_answer_stands_whatever_is_logged_after_it(
    nodes: Setup, fingers: list[list[FingerprintTemplate]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll slower than the one that fetched the answer logs its ``pending`` after it (as
    another process of the node would): the query stays answered, its hit reference shown."""
    qid = timed_out_query(nodes, fingers, monkeypatch, "final-1")
    answered = poll(nodes, qid)
    assert answered.status_code == 200 and answered.json()["status"] == "answered"
    reference = answered.json()["reference"]
    nodes.th.exchange.requester.log.record_many(
        [
            {
                "type": "reply_received",
                "node": "TH",
                "peer": "ID",
                "query_id": qid,
                "status": "pending",
                "elapsed_ms": 1500.0,
                "detail": "the peer is still searching",
                "reply_jws": None,
                "at": datetime.now(UTC).isoformat(),
                "status_url": f"{nodes.id.peer_url}{QUERY_PATH}/{qid}",
                "late": True,
            }
        ]
    )
    [item] = listed(nodes, case_ref="final-1")
    assert (item["status"], item["reference"], item["pollable"], item["late"]) == (
        "answered",
        reference,
        False,
        True,
    )
    shown = get(nodes, f"/queries/{qid}", "officer").json()
    assert [r["status"] for r in shown["replies"]] == ["timeout", "answered", "pending"]
    assert (shown["status"], shown["reference"]) == ("answered", reference)
    again = poll(nodes, qid)
    assert again.status_code == 409 and again.json()["error"] == "not_timed_out"


def test_a_query_cancelled_after_the_peer_accepted_it_is_polled(
    nodes: Setup, fingers: list[list[FingerprintTemplate]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """TH stops (its exchange is cancelled) while ID, which answered 202, still searches:
    the status URL is logged with ``cancelled`` and the reply is fetched later."""
    requester = nodes.th.exchange.requester
    items = probe_items("fingerprint", [(iso19794_2.encode(fingers[3][1]), 1)], images=False)

    async def stopped_while_waiting() -> str:
        task = asyncio.ensure_future(
            requester.query_peers(
                [nodes.th.exchange.peers["ID"]],
                "asylum",
                "fingerprint",
                items,
                case_ref="cancel-1",
                officer="user:officer",
            )
        )
        while not (sent := listed(nodes, case_ref="cancel-1")):
            await asyncio.sleep(0.05)
        qid: str = sent[0]["query_id"]
        while True:  # ID keeps the reply once it answers 202
            try:
                nodes.id.app.state.pending_replies.get(qid, "TH")
                break
            except NotFoundError:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the 202 reaches TH
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await requester.aclose()
        return qid

    with slow_peer(nodes, monkeypatch, sync_wait_s=0.2) as release:
        monkeypatch.setattr(requester, "timeout", HELD_SEARCH_S)
        qid = asyncio.run(stopped_while_waiting())
        release.set()
        kept_reply_done(nodes, qid)
    [cancelled] = logged(nodes.th, "reply_received", qid)
    assert cancelled["status"] == "cancelled"
    assert cancelled["status_url"] == f"{nodes.id.peer_url}{QUERY_PATH}/{qid}"
    assert get(nodes, f"/queries/{qid}", "officer").json()["pollable"] is True
    r = poll(nodes, qid)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["outcome"]) == ("answered", "hit")


def test_an_admins_refused_poll_is_recorded(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    qid = send(nodes, ["ID"], fingers[1][1], case_ref="admin-409")["ID"]["query_id"]
    r = poll(nodes, qid, "admin")
    assert r.status_code == 409 and r.json()["error"] == "not_timed_out"
    polls = [e for e in audited(nodes, POLL_ACTION) if e["target"] == qid]
    assert [(e["actor"], e["details"]) for e in polls] == [
        (
            "user:admin",
            {
                "officer": "user:officer",
                "peer": "ID",
                "status": "answered",
                "refused": "not_timed_out",
            },
        )
    ]
    # The officer's own refused poll is not recorded, as their own polls are not.
    assert poll(nodes, qid).status_code == 409
    assert len([e for e in audited(nodes, POLL_ACTION) if e["target"] == qid]) == 1


def test_the_command_lines_next_page_keeps_the_filters(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    for _ in range(3):
        send(nodes, ["ID"], fingers[1][1], case_ref="cli-page")
    ids = [q["query_id"] for q in listed(nodes, case_ref="cli-page")]
    first = bdx(nodes, "officer", "list", "--case-ref", "cli-page", "--peer", "id", "--limit", "1")
    assert first.returncode == 0, first.stderr
    assert ids[0] in first.stdout
    hint = first.stderr.strip().removeprefix("more: ")
    assert hint == "bdx queries list --case-ref cli-page --peer ID --limit 1 --offset 1"
    # Following the hint lists the next query of the same filters.
    words = shlex.split(hint)
    assert words[:3] == ["bdx", "queries", "list"]
    second = bdx(nodes, "officer", *words[2:])
    assert second.returncode == 0, second.stderr
    assert second.stdout.split("\t")[1] == ids[1]
    assert "--case-ref cli-page" in second.stderr and "--offset 2" in second.stderr


@pytest.mark.parametrize("since", ["yesterday", "2026-13-01", "0001-01-01T00:00+05:00"])
def test_the_command_line_refuses_a_bad_since(nodes: Setup, since: str) -> None:
    r = bdx(nodes, "officer", "list", "--since", since)
    assert r.returncode == 2 and "--since" in r.stderr, (r.returncode, r.stderr)


@pytest.mark.parametrize(
    ("option", "value"), [("--peer", "M Y"), ("--peer", "X"), ("--officer", "Bad Name")]
)
def test_the_command_line_refuses_a_bad_filter_value(nodes: Setup, option: str, value: str) -> None:
    """A filter value the node would refuse (its 422 was exit 3) is a usage error, exit 2."""
    r = bdx(nodes, "admin", "list", option, value)
    assert r.returncode == 2 and option in r.stderr, (r.returncode, r.stderr)


def test_the_no_token_message_names_every_role_that_reads(nodes: Setup) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("BDX_TOKEN", "BDX_TOKEN_FILE")}
    r = subprocess.run(
        [*BDX, "queries", "list", "--url", nodes.th.api_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "officer, admin or auditor token" in r.stderr, r.stderr


def test_the_command_line_takes_a_since_without_zone_as_utc(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    before = datetime.now(UTC).replace(tzinfo=None).isoformat()
    qid = send(nodes, ["ID"], fingers[1][1], case_ref="cli-since")["ID"]["query_id"]
    r = bdx(nodes, "officer", "list", "--since", before, "--json")
    assert r.returncode == 0, r.stderr
    assert [q["query_id"] for q in json.loads(r.stdout)["items"]] == [qid]


def test_housekeeping_indexes_the_sent_queries_before_anyone_reads_them(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    """The node's housekeeping brings the index of sent queries up to the exchange log, so the
    first reading after an upgrade (or a long quiet spell) does not index the log itself."""
    from sqlalchemy import select

    from node.exchange.setup import housekeeping_round
    from node.repositories.sent_queries import sent_queries

    got = send(nodes, ["ID"], fingers[2][1], case_ref="housekeeping")
    qid = got["ID"]["query_id"]
    engine = nodes.th.app.state.engine
    column = sent_queries.c.query_id
    asyncio.run(housekeeping_round(nodes.th.exchange, 3600.0))
    with engine.connect() as conn:
        assert conn.execute(select(column).where(column == qid)).all() == [(qid,)]


def test_a_reading_far_behind_the_log_answers_503_until_housekeeping_indexed_it(
    nodes: Setup, fingers: list[list[FingerprintTemplate]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reading catches the index up ``QUERY_INDEX_REQUEST_CHUNKS`` chunks at most: further
    behind (after an upgrade, a restore), 503 ``history_indexing`` with Retry-After, exit 6
    (try again later) on the command line, rather than a partial history; once housekeeping
    indexed the rest, the reading answers."""
    from node.exchange.setup import housekeeping_round

    monkeypatch.setattr(params, "QUERY_INDEX_CHUNK", 1)
    monkeypatch.setattr(params, "QUERY_INDEX_REQUEST_CHUNKS", 1)
    monkeypatch.setattr(params, "QUERY_INDEX_ROUND_CHUNKS", 0)  # TH's own rounds index nothing
    # Two queries sent, each logged and answered: 4 entries behind at least.
    got = send(nodes, ["ID", "MY"], fingers[2][1], case_ref="indexing")
    qid = got["ID"]["query_id"]
    r = get(nodes, "/queries", "officer", case_ref="indexing")
    assert r.status_code == 503 and r.json()["error"] == "history_indexing", r.text
    assert r.headers["Retry-After"] == str(params.QUERY_INDEX_RETRY_AFTER_S)
    shown = get(nodes, f"/queries/{qid}", "officer")
    assert shown.status_code == 503 and shown.json()["error"] == "history_indexing"
    out = bdx(nodes, "officer", "list", "--case-ref", "indexing")
    assert out.returncode == 6 and "[history_indexing]" in out.stderr, out.stderr
    monkeypatch.setattr(params, "QUERY_INDEX_ROUND_CHUNKS", 10_000)
    asyncio.run(housekeeping_round(nodes.th.exchange, 3600.0))
    found = {q["query_id"] for q in listed(nodes, case_ref="indexing")}
    assert found == {got["ID"]["query_id"], got["MY"]["query_id"]}


def test_a_query_refused_here_is_in_the_history(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    """A query this node's own outbound rules refused (a purpose they do not allow for ID, a
    country they name no peer for) never left the node, and the officers' history lists it
    all the same: refused_locally, its reason, the rule's words, no result and no probe
    data; an auditor reads it too, and there is nothing to poll."""
    results = send(nodes, ["ID"], fingers[2][1], case_ref="refused-1", purpose="tourism")
    assert results["ID"]["status"] == "refused_locally"
    unknown = post_query(nodes, ["ZZ"], fingers[2][1], case_ref="refused-1", purpose="tourism")
    assert unknown.status_code == 422 and unknown.json()["error"] == "unknown_peer"
    items = {q["peer"]: q for q in listed(nodes, case_ref="refused-1")}
    ids = {p: q["query_id"] for p, q in items.items()}
    assert set(ids) == {"ID", "ZZ"} and all(ids.values())
    assert ids["ID"] == results["ID"]["query_id"]
    assert {p: q["reason"] for p, q in items.items()} == {
        "ID": results["ID"]["reason"],
        "ZZ": "unknown_peer",
    }
    for q in items.values():
        assert q["status"] == "refused_locally" and q["purpose"] == "tourism"
        assert q["officer"] == "user:officer" and q["detail"]
        assert q["outcome"] is None and q["replied_at"] is None and not q["pollable"]
    assert "tourism" in items["ID"]["detail"]
    # the result's detail is the history's: one sentence, the rule's
    assert results["ID"]["detail"] == items["ID"]["detail"]
    audited_ids = {q["query_id"] for q in listed(nodes, "auditor", case_ref="refused-1")}
    assert audited_ids == set(ids.values())
    shown = get(nodes, f"/queries/{ids['ID']}", "officer")
    assert shown.status_code == 200, shown.text
    assert shown.json()["replies"] == [] and shown.json()["reply_jws"] is None
    refused_poll = poll(nodes, ids["ID"])
    assert refused_poll.status_code == 409 and refused_poll.json()["error"] == "not_timed_out"
    # on the exchange log once, as the decision it is: no probe data
    (decision,) = logged(nodes.th, "policy_decision", ids["ID"])
    assert decision["direction"] == "outbound" and decision["allowed"] is False
    assert not {"templates", "data", "views", "images"} & set(decision)
    assert not logged(nodes.th, "query_sent", ids["ID"])
    # the command line lists and shows it
    text = bdx(nodes, "officer", "list", "--case-ref", "refused-1")
    assert text.returncode == 0 and text.stdout.count("refused_locally") == 2, text.stderr
    one = bdx(nodes, "officer", "show", ids["ZZ"])
    assert one.returncode == 0 and "status: refused_locally" in one.stdout
    assert "reason: unknown_peer" in one.stdout


def query_cli(
    nodes: Setup, tmp_path: Path, probe: FingerprintTemplate, *args: str
) -> subprocess.CompletedProcess[str]:
    """``bdx query`` of ``probe`` through TH, as the officer."""
    file = tmp_path / "probe.iso"
    file.write_bytes(iso19794_2.encode(probe))
    env = {**os.environ, "BDX_TOKEN": nodes.tokens["officer"]}
    env.pop("BDX_TOKEN_FILE", None)
    command = [*BDX, "query", str(file), *args, "--finger", "1", "--url", nodes.th.api_url]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_bdx_query_to_a_country_that_is_no_peer(
    nodes: Setup, fingers: list[list[FingerprintTemplate]], tmp_path: Path
) -> None:
    """``--to`` a well-formed code this node has no peer for (ZZ, FR) is an option value
    refused: exit 2, in one line naming them (the node refused the whole query, asked
    nobody, and lists the attempt); a
    value that is no country code at all is refused before the node is asked (exit 2, a
    ``[usage]`` line); a purpose the rules refuse for a real peer is a refusal (exit 5)."""
    probe = fingers[3][1]
    for to in ("ZZ", "FR", "ID,ZZ"):
        out = query_cli(nodes, tmp_path, probe, "--to", to, "--purpose", "tourism")
        assert out.returncode == 2, (to, out.stdout, out.stderr)
        (line,) = out.stderr.splitlines()
        assert line.startswith("bdx: error: --to: ") and line.endswith("[unknown_peer]")
        assert "ZZ" in line or "FR" in line
        assert "ID" not in line.split("[")[0].split(":", 2)[2]
        assert "nobody was asked" in line and out.stdout == ""  # no results: none asked
    out = query_cli(nodes, tmp_path, probe, "--to", "ZZ", "--purpose", "asylum", "--case-ref", "zz")
    assert out.returncode == 2 and "[unknown_peer]" in out.stderr
    assert [q["reason"] for q in listed(nodes, case_ref="zz")] == ["unknown_peer"]
    bad = query_cli(nodes, tmp_path, probe, "--to", "Z9", "--purpose", "asylum")
    assert bad.returncode == 2 and bad.stderr.endswith("[usage]\n") and "--to" in bad.stderr
    refused = query_cli(nodes, tmp_path, probe, "--to", "ID", "--purpose", "tourism")
    assert refused.returncode == 5 and "[refused_locally]" in refused.stderr
    answered = query_cli(nodes, tmp_path, probe, "--to", "ID", "--purpose", "asylum")
    assert answered.returncode == 0, answered.stderr


def test_each_port_lists_the_routes_it_serves(nodes: Setup) -> None:
    """The API port's /openapi.json lists the API's routes and no peer route (those refuse
    any request without a client certificate, which that port never has); the peer port's
    (mutual TLS) lists the peer routes, and nothing else."""
    th = nodes.th
    api = httpx.get(th.api_url + "/openapi.json", timeout=30)
    assert api.status_code == 200
    api_paths = set(api.json()["paths"])
    assert {"/queries", "/queries/{query_id}", "/users"} <= api_paths
    assert not [p for p in api_paths if p.startswith("/peer/")]
    folder = nodes.region / "nodes" / "my"
    tls = client_context(folder / "tls.pem", folder / "tls.key", nodes.region / "root.pem")
    with httpx.Client(verify=tls, timeout=30) as client:
        peer = client.get(th.peer_url + "/openapi.json")
        assert peer.status_code == 200, peer.text
        peer_paths = set(peer.json()["paths"])
        assert "/peer/v1/queries" in peer_paths
        assert all(p.startswith("/peer/v1/") for p in peer_paths)
        # every path listed answers there (not the 404 of a route the port does not serve)
        assert client.get(th.peer_url + "/peer/v1/queries/x").json()["error"] != "not_found"
        assert client.get(th.peer_url + "/users").status_code == 404
    served = {
        str(getattr(r, "path", ""))
        for r in peer_routes.routes
        if getattr(r, "include_in_schema", True)
    }
    assert peer_paths == served and not served & api_paths


def quota_used(node: ServiceNode, peer: str) -> list[int]:
    """What ``node``'s quotas for ``peer``'s queries have granted today, by modality."""
    return [q.used for q in node.exchange.policy.quota_standings()[2] if q.peer == peer]


def test_a_query_naming_a_country_that_is_no_peer_asks_nobody(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    """A query to ZZ (no peer of TH's) and ID is refused as a whole (422 unknown_peer, naming
    ZZ only): ID is not asked (nothing on its exchange log, its quota not charged, no
    query_sent at TH), and the history lists the refused attempt to ZZ, as refused_locally."""
    probe = fingers[4][1]
    seen, used = len(list(nodes.id.exchange.log.entries())), quota_used(nodes.id, "TH")
    r = post_query(nodes, ["ZZ", "ID"], probe, case_ref="mixed-1")
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "unknown_peer"
    assert "ZZ" in r.json()["detail"] and "ID" not in r.json()["detail"]
    assert len(list(nodes.id.exchange.log.entries())) == seen
    assert quota_used(nodes.id, "TH") == used
    events = [json.loads(e.data) for e in nodes.th.exchange.log.entries()]
    mine = [e for e in events if e.get("case_ref") == "mixed-1"]
    assert [(e["type"], e["peer"]) for e in mine] == [("policy_decision", "ZZ")]
    (item,) = listed(nodes, case_ref="mixed-1")
    assert item["peer"] == "ZZ" and item["status"] == "refused_locally"
    assert item["reason"] == "unknown_peer" and "ZZ" in item["detail"]
    assert item["query_id"] == mine[0]["query_id"]
    # ID alone is asked (the checks above can see it)
    assert send(nodes, ["ID"], probe, case_ref="mixed-2")["ID"]["status"] == "answered"
    assert len(list(nodes.id.exchange.log.entries())) > seen
    assert quota_used(nodes.id, "TH") != used


def test_bdx_query_to_an_unknown_and_a_real_peer_exits_2_having_asked_nobody(
    nodes: Setup, fingers: list[list[FingerprintTemplate]], tmp_path: Path
) -> None:
    """``bdx query --to ZZ,ID``: exit 2 means nothing was sent: ID, which would have answered
    a hit, is not asked; the refused attempt is in bdx queries list."""
    seen = len(list(nodes.id.exchange.log.entries()))
    out = query_cli(
        nodes, tmp_path, fingers[1][1], "--to", "ZZ,ID", "--purpose", "asylum", "--case-ref", "mx"
    )
    assert out.returncode == 2, (out.stdout, out.stderr)
    (line,) = out.stderr.splitlines()
    assert line.startswith("bdx: error: --to: no peer of this node is ZZ")
    assert line.endswith("[unknown_peer]") and out.stdout == ""
    assert len(list(nodes.id.exchange.log.entries())) == seen
    assert [(q["peer"], q["reason"]) for q in listed(nodes, case_ref="mx")] == [
        ("ZZ", "unknown_peer")
    ]
    shown = bdx(nodes, "officer", "list", "--case-ref", "mx")
    assert shown.returncode == 0 and "refused_locally" in shown.stdout, shown.stderr


def test_an_unknown_peer_is_told_before_this_nodes_own_pki_refusal(tmp_path: Path) -> None:
    """With this node's own CRL stale, ``--to ZZ,ID`` is still the request error (exit 2,
    unknown_peer, nobody asked) and ``--to ID`` the node's refusal (exit 5, own_stale_crl);
    the refusal's detail is the same in the POST /queries result and in the history."""
    issued = datetime.now(UTC) - pki_params.CRL_VALIDITY - pki_params.DEFAULT_GRACE
    with running(dated_region(("TH", "ID"), crl_issued=issued - timedelta(days=1)), tmp_path) as n:
        th = n["TH"]
        code, err = bdx_query(th, "ZZ,ID", tmp_path)
        assert code == 2 and err.rstrip().endswith("[unknown_peer]"), err
        code, err = bdx_query(th, "ID", tmp_path)
        assert code == 5 and "own_stale_crl" in err, err
        headers = {"Authorization": f"Bearer {th.token}"}
        body = {
            "peers": ["ID"],
            "purpose": "border_control",
            "modality": "fingerprint",
            "templates": [
                {
                    "data": base64.b64encode(iso19794_2.encode(PKI_FINGERS[0][1])).decode(),
                    "finger_position": 1,
                }
            ],
            "case_ref": "pki-1",
        }
        r = httpx.post(th.api_url + "/queries", json=body, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        (result,) = r.json()["results"]
        assert result["reason"] == "own_stale_crl" and result["detail"]
        history = httpx.get(
            th.api_url + "/queries", params={"case_ref": "pki-1"}, headers=headers, timeout=30
        )
        (item,) = history.json()["items"]
        assert (item["reason"], item["detail"]) == (result["reason"], result["detail"])


def test_the_peer_ports_schema_is_a_peer_route(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The peer port's GET /openapi.json passes the peer routes' certificate checks (a
    revoked member is refused it, 403 revoked, as /peer/v1/witness/latest), gets the
    security headers and is access-logged."""
    root = tmp_path / "region"
    root.mkdir()
    region = build_region(("TH", "MY"))
    write_region(region, root)
    with serving(tmp_path / "n", root, ("TH", "MY")) as served:
        th = served["TH"]
        folder = root / "nodes" / "my"
        tls = client_context(folder / "tls.pem", folder / "tls.key", root / "root.pem")
        with httpx.Client(verify=tls, timeout=30) as client:
            with caplog.at_level(logging.INFO, logger="bdx.access"):
                ok = client.get(th.peer_url + "/openapi.json")
                # logged as the response ends, in the server's thread
                deadline = time.monotonic() + SHORT_WAIT_S
                while not access_lines(caplog) and time.monotonic() < deadline:
                    time.sleep(SHORT_WAIT_S / 100)
            assert ok.status_code == 200 and "/peer/v1/queries" in ok.json()["paths"]
            assert ok.headers["X-Content-Type-Options"] == "nosniff"
            assert access_lines(caplog), caplog.records
            assert access_lines(caplog)[0].startswith("GET /peer/v1/openapi.json 200")
            region.ca.revoke(region.nodes["MY"].tls_cert)
            (root / "crl.pem").write_bytes(crl_pem(region.ca.crl()))
            th.exchange.credentials.reload()
            for path in ("/peer/v1/witness/latest", "/openapi.json"):
                refused = client.get(th.peer_url + path)
                assert refused.status_code == 403, (path, refused.text)
                assert refused.json()["error"] == "revoked"
                assert refused.headers["X-Content-Type-Options"] == "nosniff"


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bdx.access"]


def test_a_country_with_a_rule_but_no_address_is_no_peer_whatever_its_rule_allows(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    """MY has an outbound rule that allows only border_control and no address in TH's
    settings: a query to MY and ID for asylum (which MY's rule forbids) is refused as a whole
    as unknown_peer, as for border_control, not sent to ID with MY refused for its purpose."""
    rules = 'version = "noaddr"\ncountry = "TH"\n[outbound.ID]\npurposes = ["border_control", "asylum"]\n[outbound.MY]\npurposes = ["border_control"]\n'  # noqa: E501
    ex = nodes.th.exchange
    engine = PolicyEngine(parse_policy(rules), ex.policy.ledger)
    known = {k: v for k, v in ex.peers.items() if k != "MY"}
    items = probe_items("fingerprint", [(iso19794_2.encode(fingers[3][1]), 1)], images=False)
    seen = sum(1 for _ in nodes.id.exchange.log.entries())
    for purpose in ("border_control", "asylum"):
        with pytest.raises(UnknownPeerError, match="MY"):
            asyncio.run(
                query_peers(
                    ex.requester,
                    engine,
                    known,
                    ["MY", "ID"],
                    purpose,
                    "fingerprint",
                    items,
                    case_ref="noaddr-" + purpose,
                    officer="user:officer",
                )
            )
    assert sum(1 for _ in nodes.id.exchange.log.entries()) == seen


def test_the_peer_ports_own_404_has_the_security_headers_and_is_access_logged(
    nodes: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    """A path that is no peer route (the API's /users, a POST to /openapi.json) is answered
    404 by the peer port itself, outside the app: with the same security headers as every
    other answer, and a line in the access log naming no path."""
    folder = nodes.region / "nodes" / "my"
    tls = client_context(folder / "tls.pem", folder / "tls.key", nodes.region / "root.pem")
    with (
        httpx.Client(verify=tls, timeout=30) as client,
        caplog.at_level(logging.INFO, logger="bdx.access"),
    ):
        for method, path in (("GET", "/users/admin"), ("POST", "/openapi.json")):
            r = client.request(method, nodes.th.peer_url + path)
            assert r.status_code == 404 and r.json()["error"] == "not_found"
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["Cache-Control"] == "no-store"
        deadline = time.monotonic() + SHORT_WAIT_S
        while len(unmatched(caplog)) < 2 and time.monotonic() < deadline:
            time.sleep(SHORT_WAIT_S / 100)
    lines = unmatched(caplog)  # the module's node also logs the other tests' late answers
    assert [line.split()[:3] for line in lines] == [
        ["GET", "<no", "route>"],
        ["POST", "<no", "route>"],
    ], lines
    assert not [line for line in lines if "admin" in line]


def unmatched(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [line for line in access_lines(caplog) if " <no route> " in line]
