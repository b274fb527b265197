"""The API and peer servers of one node (``node.exchange.serving.ServerPair``), real uvicorn
servers on loopback ports."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from certs.pki.bootstrap import build_region, write_region
from matcher.fingerprint import iso19794_2
from matcher.synthetic import synthetic_templates
from node.api.errors import STOPPING_RETRY_AFTER_S
from node.exchange.admission import PeerWorkClosedError
from node.exchange.serving import ServerPair
from tests.exchange.service_support import free_port, serving
from tests.exchange.test_node_service import by_peer, officer_query
from tests.exchange.test_peer_limits import ask, client, signed_query


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_the_peer_listener_opens_once_the_node_has_started() -> None:
    """The peer listener took connections while the app was still starting (its exchange not
    yet built): every peer got 503 "no exchange set up" and the node logged an ERROR for each,
    for as long as a start takes (tens of seconds with a cold cache). It opens after the
    API's start-up now; a start that fails opens nothing."""
    starting, release = threading.Event(), threading.Event()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        starting.set()
        await asyncio.to_thread(release.wait, 30)  # the exchange, galleries, search pool...
        yield

    api_port, peer_port = free_port(), free_port()
    api = uvicorn.Config(FastAPI(lifespan=lifespan), port=api_port, log_level="warning")
    peer = uvicorn.Config(FastAPI(), port=peer_port, log_level="warning", lifespan="off")
    pair = ServerPair(api, peer)
    thread = threading.Thread(target=lambda: asyncio.run(pair.serve()), daemon=True)
    thread.start()
    try:
        assert starting.wait(10)
        time.sleep(1)  # the peer server, started beside the API, had bound its port by now
        assert not _listening(peer_port)
        release.set()
        deadline = time.monotonic() + 10
        while not pair.started:
            assert time.monotonic() < deadline, "the pair did not start"
            time.sleep(0.05)
        assert _listening(peer_port)
    finally:
        release.set()
        pair.stop()
        thread.join(10)
    assert not thread.is_alive()


def test_a_stopping_node_answers_the_peer_queries_it_holds(tmp_path: Path) -> None:
    """Stopping a node (SIGTERM, SIGINT) stopped the API server first, whose shutdown tore
    the exchange and the search pool down under the queries the peer listener held: peers
    got unreachable or search_unavailable, and a quota unit could stay charged without its
    events. The peer listener and the peer threads now finish first. Here TH's peer thread
    for ID is held while ID's query waits behind it; TH is asked to stop, then the thread is
    let go: ID's query is answered, a hit, and logged at TH."""
    fingers = synthetic_templates(3, 2, seed=11)
    write_region(build_region(["TH", "ID"]), tmp_path / "region")
    with serving(tmp_path / "nodes", tmp_path / "region", ["TH", "ID"], peer_threads=2) as nodes:
        th, idn = nodes["TH"], nodes["ID"]
        th.enrol(["th-0", "th-1"], [fingers[0][0], fingers[1][0]])
        assert (
            by_peer(officer_query(idn, ["TH"], fingers[1][1]))["TH"]["outcome"] == "hit"
        )  # TH's threads set up
        work = th.app.state.peer_work
        release = threading.Event()
        work.submit("ID", lambda: release.wait(60) and None)  # ID's share of TH's threads
        results: list[dict[str, Any]] = []
        asking = threading.Thread(
            target=lambda: results.append(by_peer(officer_query(idn, ["TH"], fingers[0][1]))["TH"])
        )
        asking.start()
        deadline = time.monotonic() + 30
        while work.load("ID") != (1, 1):  # ID's query waits behind the held thread
            assert time.monotonic() < deadline
            time.sleep(0.02)
        th.pair.stop()
        time.sleep(1)  # the stop is under way: the peer listener finishes what it holds
        release.set()
        asking.join(60)
        th.thread.join(30)
        assert not th.thread.is_alive()
        assert [(r["status"], r["outcome"]) for r in results] == [("answered", "hit")]


def test_requests_the_stop_cuts_off_answer_503_node_stopping(tmp_path: Path) -> None:
    """At a stop uvicorn waits for the API's requests (``timeout_graceful_shutdown``), then
    cancels them: an officer's query still waiting on a peer, and a search still waiting for
    its worker thread, got a bare "Internal Server Error" (text, 500). Both answer 503
    ``node_stopping`` with Retry-After now, and the query's fate is in the exchange log
    (``cancelled``). Here ID holds TH's query behind a held peer thread, and the search waits
    for the gallery that the test holds, until TH's stop has cut both off."""
    fingers = synthetic_templates(3, 2, seed=11)
    write_region(build_region(["TH", "ID"]), tmp_path / "region")
    nodes_dir, region = tmp_path / "nodes", tmp_path / "region"
    with serving(nodes_dir, region, ["TH", "ID"], peer_threads=2, graceful_s=1) as nodes:
        th, idn = nodes["TH"], nodes["ID"]
        th.enrol(["th-0"], [fingers[0][0]])
        idn.enrol(["id-1"], [fingers[1][0]])
        assert by_peer(officer_query(th, ["ID"], fingers[1][1]))["ID"]["outcome"] == "hit"
        exchange_log = th.exchange.log
        before = exchange_log.size()
        work, release = idn.app.state.peer_work, threading.Event()
        work.submit("TH", lambda: release.wait(60) and None)  # TH's share of ID's threads
        search = {
            "fingers": [{"template": base64.b64encode(iso19794_2.encode(fingers[0][1])).decode()}]
        }

        def searched() -> httpx.Response:
            with httpx.Client(timeout=30) as client:
                return client.post(
                    th.api_url + "/search/fingerprint",
                    json=search,
                    headers={"Authorization": f"Bearer {th.token}"},
                )

        answers: dict[str, httpx.Response] = {}
        held, let_go = threading.Event(), threading.Event()

        def hold_gallery() -> None:
            with th.app.state.gallery._lock.writing():
                held.set()
                let_go.wait(60)

        threading.Thread(target=hold_gallery, daemon=True).start()
        assert held.wait(10)
        asking = [
            threading.Thread(
                target=lambda: answers.update(query=officer_query(th, ["ID"], fingers[1][1]))
            ),
            threading.Thread(target=lambda: answers.update(search=searched())),
        ]
        for thread in asking:
            thread.start()
        deadline = time.monotonic() + 30
        while work.load("TH") != (1, 1):  # TH's query waits behind the held thread at ID
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.5)  # the search waits for the gallery
        th.pair.stop()
        while getattr(th.app.state, "exchange", None) is not None:  # cut off: the app's
            assert time.monotonic() < deadline  # shutdown tears the exchange down next
            time.sleep(0.02)
        let_go.set()
        for thread in asking:
            thread.join(30)
        release.set()
        th.thread.join(30)
        assert not th.thread.is_alive()
    for answer in answers.values():
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "node_stopping"
        assert answer.headers["Retry-After"] == str(STOPPING_RETRY_AFTER_S)
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert set(answers) == {"query", "search"}
    events = [json.loads(e.data) for e in exchange_log.entries(before)]
    sent = [e["query_id"] for e in events if e["type"] == "query_sent"]
    fates = [(e["query_id"], e["status"]) for e in events if e["type"] == "reply_received"]
    assert fates == [(sent[0], "cancelled")] and len(sent) == 1


def test_queries_waiting_for_a_peer_thread_at_a_stop_are_dropped_on_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A peer's query still waiting in its queue (:class:`PeerWork`) when the stop had shut
    the peer threads down was lost without a word: the running job's end handed it to the
    executor already shut down, a RuntimeError in a pool thread that nobody reads. It is
    dropped on purpose now (the listener is closed: its reply could never be delivered), one
    ``queries_dropped`` event per peer in the exchange log and a WARNING say so, and a job
    offered after the stop is refused (503 ``node_stopping``), not lost. Here TH's query waits
    at ID behind a held peer thread of TH's share while ID stops."""
    fingers = synthetic_templates(3, 2, seed=11)
    write_region(build_region(["TH", "ID"]), tmp_path / "region")
    with serving(tmp_path / "nodes", tmp_path / "region", ["TH", "ID"], peer_threads=2) as nodes:
        th, idn = nodes["TH"], nodes["ID"]
        idn.enrol(["id-1"], [fingers[1][0]])
        assert by_peer(officer_query(th, ["ID"], fingers[1][1]))["ID"]["outcome"] == "hit"
        exchange_log = idn.exchange.log
        before = exchange_log.size()
        work, release = idn.app.state.peer_work, threading.Event()
        work.submit("TH", lambda: release.wait(60) and None)  # TH's share of ID's threads
        asking = threading.Thread(target=lambda: officer_query(th, ["ID"], fingers[1][1]))
        asking.start()
        deadline = time.monotonic() + 30
        while work.load("TH") != (1, 1):  # TH's query waits behind the held thread at ID
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with caplog.at_level(logging.WARNING, logger="node.exchange.serving"):
            idn.pair.stop()
            deadline = time.monotonic() + 30
            while not work.closed:  # the listener has stopped: the peer threads are being
                assert time.monotonic() < deadline  # shut down
                time.sleep(0.02)
            release.set()  # the held job ends: TH's query would be next
            idn.thread.join(30)
            assert not idn.thread.is_alive()
        asking.join(30)
    events = [json.loads(e.data) for e in exchange_log.entries(before)]
    dropped = [e for e in events if e["type"] == "queries_dropped"]
    assert [(e["node"], e["peer"], e["count"], e["reason"]) for e in dropped] == [
        ("ID", "TH", 1, "node_stopping")
    ]
    assert not [e for e in events if e["type"] == "query_received"]  # it never ran
    warnings = [r for r in caplog.records if r.name == "node.exchange.serving"]
    assert [r.levelno for r in warnings] == [logging.WARNING]
    assert "TH: 1" in warnings[0].getMessage()
    assert work.load("TH") == (0, 0)  # the held job's end was booked, nothing handed on
    with pytest.raises(PeerWorkClosedError) as refused:
        work.submit("TH", lambda: None)
    assert refused.value.reason == "node_stopping"
    # Kept closed in the app's state: a request still reaching the peer route is refused
    # (cleared, the router made a new pool that nothing shut down).
    assert idn.app.state.peer_work is work and idn.app.state.peer_executor is None


def test_a_query_offered_after_the_peer_threads_closed_is_refused_503_node_stopping(
    tmp_path: Path,
) -> None:
    """Once the stop has closed the peer threads' queues (:meth:`PeerWork.close`), a query
    that still reaches the peer route is answered 503 ``node_stopping`` with Retry-After (it
    raised inside a pool thread before, and its request waited for the stop to cut it off),
    and it is not charged to the peer as a refusal of its own."""
    fingers = synthetic_templates(3, 2, seed=11)
    region = tmp_path / "region"
    write_region(build_region(["TH", "ID"]), region)
    with serving(tmp_path / "nodes", region, ["TH", "ID"], peer_threads=2) as nodes:
        th, idn = nodes["TH"], nodes["ID"]
        idn.enrol(["id-1"], [fingers[1][0]])
        assert by_peer(officer_query(th, ["ID"], fingers[1][1]))["ID"]["outcome"] == "hit"
        exchange_log = idn.exchange.log
        before = exchange_log.size()
        assert idn.app.state.peer_work.close() == {}  # as the stop closes it: nothing waited
        with client(region, "TH") as http:
            answer = ask(http, idn, signed_query(th, "ID", fingers[1][1], "border_control"))
        events = [json.loads(e.data) for e in exchange_log.entries(before)]
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "node_stopping"
    assert answer.headers["Retry-After"] == str(STOPPING_RETRY_AFTER_S)
    assert not [e for e in events if e["type"] == "query_refused"]
