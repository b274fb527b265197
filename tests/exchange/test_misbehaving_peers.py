"""Peers that answer wrongly: each costs only its own result, never the other peers'.

A fake "MY" peer (a real uvicorn server with MY's TLS certificate from the project's PKI)
answers every query in one bad way; TH asks it and the real ID node together.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI, Response

from certs import jws
from certs.pki.bootstrap import Region
from certs.pki.revocation import crl_pem
from matcher.fingerprint.template import FingerprintTemplate
from node.exchange import params
from node.exchange.requester import QUERY_PATH, Peer, PeerResult, Requester
from tests.exchange.conftest import NodeHandle, tls_app
from tests.exchange.test_three_nodes import probe

ECDSA_SHA256 = bytes.fromhex("06082a8648ce3d040302")
UNKNOWN_ALGORITHM = bytes.fromhex("06082a8648ce3d040309")  # 1.2.840.10045.4.3.9: no such thing


def odd_certificate_token(region: Region, country: str, typ: str) -> str:
    """A JWS signed with ``country``'s real key whose x5c leaf names an unknown algorithm."""
    material = region.nodes[country]
    token = jws.sign(
        {"v": 1, "sender": country}, material.signing_key, [material.signing_cert], typ=typ
    )
    head, payload, sig = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    der = material.signing_cert.public_bytes(serialization.Encoding.DER)
    header["x5c"] = [base64.b64encode(der.replace(ECDSA_SHA256, UNKNOWN_ALGORITHM)).decode()]
    compact = json.dumps(header, separators=(",", ":")).encode()  # canonical, as signed
    head = base64.urlsafe_b64encode(compact).rstrip(b"=").decode()
    return f"{head}.{payload}.{sig}"


@contextmanager
def fake_peer(root: Path, answer: Callable[[], Response | Awaitable[Response]]) -> Iterator[str]:
    """Serve ``answer()`` (awaited when it is a coroutine) to every query over TLS with MY's
    certificate; yields the base URL."""
    app = FastAPI()
    calls: list[str] = []

    @app.post(QUERY_PATH)
    async def query() -> Response:
        calls.append("post")
        got = answer()
        return await got if inspect.isawaitable(got) else got

    with tls_app(app, root, "MY") as url:
        yield url
    assert calls, "the fake peer was never asked"


def ask_both(
    nodes: dict[str, NodeHandle], fake_url: str, fingers: list[list[FingerprintTemplate]]
) -> tuple[dict[str, object], list[dict[str, object]]]:
    th = nodes["TH"]
    before = th.log.size()
    results = asyncio.run(
        th.requester.query_peers(
            [Peer("ID", nodes["ID"].url), Peer("MY", fake_url)],
            "border_control",
            "fingerprint",
            probe(fingers[1][1]),
        )
    )
    events = [json.loads(e.data) for e in th.log.entries(before)]
    return {r.country: r for r in results}, events


def _check_isolated(by: dict[str, object], events: list[dict[str, object]], status: str) -> str:
    assert by["ID"].status == "answered" and by["ID"].reply.outcome == "hit"  # type: ignore[attr-defined]
    assert by["MY"].status == status  # type: ignore[attr-defined]
    received = {e["peer"]: e for e in events if e["type"] == "reply_received"}
    assert set(received) == {"ID", "MY"} and received["MY"]["status"] == status
    return str(by["MY"].detail)  # type: ignore[attr-defined]


def test_reply_signed_under_an_unknown_algorithm(
    nodes: dict[str, NodeHandle],
    region_dir: tuple[Region, Path],
    fingers: list[list[FingerprintTemplate]],
) -> None:
    region, root = region_dir
    token = odd_certificate_token(region, "MY", params.REPLY_TYP)
    with fake_peer(root, lambda: Response(token, media_type="application/jose")) as url:
        by, events = ask_both(nodes, url, fingers)
    assert "bad_certificate" in _check_isolated(by, events, "invalid_reply")


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("https://[::1", "InvalidURL"),
        ("https://127.0.0.1:JaneDoe/x", "InvalidURL"),
        ("https://127.0.0.2:1/elsewhere", "another origin"),
        ("https://jane-doe-1980.example/x", "another origin"),
    ],
)
def test_a_202_pointing_nowhere_or_elsewhere(
    nodes: dict[str, NodeHandle],
    region_dir: tuple[Region, Path],
    fingers: list[list[FingerprintTemplate]],
    location: str,
    expected: str,
) -> None:
    """An unparsable Location, or one on another origin (which would receive this node's client
    certificate), is an invalid reply; the other origin is never contacted."""
    _, root = region_dir
    with fake_peer(root, lambda: Response(status_code=202, headers={"Location": location})) as url:
        by, events = ask_both(nodes, url, fingers)
    detail = _check_isolated(by, events, "invalid_reply")
    assert expected in detail
    assert "jane" not in detail.lower() and "127.0.0.2" not in detail  # none of the peer's text


def test_an_oversized_reply_is_not_buffered(
    nodes: dict[str, NodeHandle],
    region_dir: tuple[Region, Path],
    fingers: list[list[FingerprintTemplate]],
) -> None:
    _, root = region_dir
    big = b"A" * (params.MAX_REPLY_BYTES + 1)
    with fake_peer(root, lambda: Response(big, media_type="application/jose")) as url:
        by, events = ask_both(nodes, url, fingers)
    assert "larger than" in _check_isolated(by, events, "invalid_reply")


def test_a_query_signed_under_an_unknown_algorithm_is_refused_and_logged(
    nodes: dict[str, NodeHandle], region_dir: tuple[Region, Path]
) -> None:
    import httpx

    from certs.pki.tls import client_context

    region, root = region_dir
    idn = nodes["ID"]
    before = idn.log.size()
    folder = root / "nodes" / "th"
    ctx = client_context(folder / "tls.pem", folder / "tls.key", root / "root.pem")
    with httpx.Client(verify=ctx, timeout=10) as client:
        response = client.post(
            idn.url + QUERY_PATH,
            content=odd_certificate_token(region, "TH", params.QUERY_TYP),
            headers={"Content-Type": "application/jose"},
        )
    assert response.status_code == 403 and response.json()["error"] == "bad_certificate"
    events = [json.loads(e.data) for e in idn.log.entries(before)]
    assert [(e["type"], e["stage"], e["reason"]) for e in events] == [
        ("query_refused", "signature", "bad_certificate")
    ]


def test_refusals_before_the_signature_are_logged(
    nodes: dict[str, NodeHandle], region_dir: tuple[Region, Path], tmp_path: Path
) -> None:
    """A TLS certificate of the region's CA that is not in the trust list, and a body that is
    not a compact JWS at all, are refused (403, 422) and logged like every later refusal."""
    import httpx

    from certs.pki import CsrBuilder, Usage
    from certs.pki.keys import certificate_pem, generate_key, private_key_pem
    from certs.pki.tls import client_context

    region, root = region_dir
    idn = nodes["ID"]
    key = generate_key()
    csr = (
        CsrBuilder()
        .country("TH")
        .node_name("bdx-th-unlisted")
        .usage(Usage.TLS)
        .dns_names(["localhost"])
        .ip_addresses(["127.0.0.1"])
        .sign(key)
    )
    (tmp_path / "t.pem").write_bytes(certificate_pem(region.ca.issue(csr, Usage.TLS)))
    (tmp_path / "t.key").write_bytes(private_key_pem(key))
    unlisted = client_context(tmp_path / "t.pem", tmp_path / "t.key", root / "root.pem")
    folder = root / "nodes" / "th"
    listed = client_context(folder / "tls.pem", folder / "tls.key", root / "root.pem")
    before = idn.log.size()
    with httpx.Client(verify=unlisted, timeout=10) as client:
        r = client.post(idn.url + QUERY_PATH, content="x.y.z")
    assert r.status_code == 403 and r.json()["error"] == "not_in_trust_list"
    with httpx.Client(verify=listed, timeout=10) as client:
        r = client.post(idn.url + QUERY_PATH, content="é.y.z".encode())
    assert r.status_code == 422 and r.json()["error"] == "malformed_jws"
    events = [json.loads(e.data) for e in idn.log.entries(before)]
    assert [(e["type"], e["peer"], e["stage"], e["reason"]) for e in events] == [
        ("query_refused", None, "tls", "not_in_trust_list"),
        ("query_refused", "TH", "signature", "malformed_jws"),
    ]


def test_a_compressed_reply_is_read_once() -> None:
    """A peer (or a proxy before it) that gzips its reply anyway: the body is decoded once
    (the rebuilt response kept Content-Encoding and httpx decoded it a second time)."""
    import gzip

    body = b"eyJhbGciOiJFUzI1NiJ9.payload.sig" * 20
    assert _fetch_raw("gzip", gzip.compress(body)) == body


def _fetch_raw(encoding: str, content: bytes) -> bytes:
    """What ``bounded_request`` keeps of a 200 carrying ``content`` in ``encoding``."""
    import httpx

    from node.exchange.requester import bounded_request

    async def chunks() -> AsyncIterator[bytes]:  # streamed, as off the network
        for at in range(0, len(content), 16384):
            yield content[at : at + 16384]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Encoding": encoding}, content=chunks())

    async def fetch() -> bytes:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return (
                await bounded_request(client, "GET", httpx.URL("https://peer.example/x"))
            ).content

    return asyncio.run(fetch())


def test_a_compression_bomb_is_refused_at_the_bound_not_inflated() -> None:
    """64 KiB of gzip that inflates to 64 MiB: refused once the inflated body passes the
    bound, with memory for the bound only (httpx inflated each chunk whole, on the event
    loop, before the size was looked at; a few kilobytes of nested gzip took gigabytes)."""
    import gzip
    import tracemalloc

    from node.exchange.requester import InvalidReplyError

    bomb = gzip.compress(bytes(64 << 20), compresslevel=9)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidReplyError, match="larger than"):
            _fetch_raw("gzip", bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * params.MAX_REPLY_BYTES + len(bomb) * 4, peak


@pytest.mark.parametrize(
    ("encoding", "content"),
    [
        ("gzip, gzip", b"x"),  # nested layers: each multiplies what a few bytes inflate to
        ("br", b"x"),
        ("gzip", b"not gzip at all"),
        ("gzip", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"),  # cut short
    ],
)
def test_an_encoding_not_asked_for_or_broken_is_refused(encoding: str, content: bytes) -> None:
    from node.exchange.requester import InvalidReplyError

    with pytest.raises(InvalidReplyError, match=r"encoding|decode"):
        _fetch_raw(encoding, content)


def test_a_deflated_reply_is_read() -> None:
    import zlib

    body = b"eyJhbGciOiJFUzI1NiJ9.payload.sig" * 20
    assert _fetch_raw("deflate", zlib.compress(body)) == body
    assert _fetch_raw("identity", body) == body


def test_a_compression_bomb_costs_only_its_peer(
    nodes: dict[str, NodeHandle],
    region_dir: tuple[Region, Path],
    fingers: list[list[FingerprintTemplate]],
) -> None:
    """Over real TLS: the bomb's peer is ``invalid_reply``; the good peer still answers."""
    import gzip

    _, root = region_dir
    bomb = gzip.compress(bytes(16 << 20), compresslevel=9)
    headers = {"Content-Encoding": "gzip"}
    with fake_peer(root, lambda: Response(bomb, headers=headers)) as url:
        by, events = ask_both(nodes, url, fingers)
    assert "larger than" in _check_isolated(by, events, "invalid_reply")


@pytest.mark.parametrize("code", ["malformed_query", "Jane Doe <x@example>"])
def test_a_peers_error_text_is_not_kept(
    nodes: dict[str, NodeHandle],
    region_dir: tuple[Region, Path],
    fingers: list[list[FingerprintTemplate]],
    code: str,
) -> None:
    """A peer's error body is free text (it may echo the probe, or name someone): the officer
    and the append-only exchange log get its status and a well-formed error code only."""
    _, root = region_dir
    body = {"error": code, "detail": "bad template Rk1SACAyMAAAAAEmAAAB of Jane Doe"}
    with fake_peer(root, lambda: Response(json.dumps(body), status_code=422)) as url:
        by, events = ask_both(nodes, url, fingers)
    detail = _check_isolated(by, events, "http_error")
    assert detail == ("HTTP 422 malformed_query" if code == "malformed_query" else "HTTP 422")
    assert "Jane" not in json.dumps(events) and "Rk1S" not in json.dumps(events)


def test_an_error_body_nested_past_the_parsers_depth(
    nodes: dict[str, NodeHandle],
    region_dir: tuple[Region, Path],
    fingers: list[list[FingerprintTemplate]],
) -> None:
    """A JSON body nested 60,000 deep (well under the reply size limit) made the error's
    parse raise RecursionError, which sank every peer's result of the query."""
    _, root = region_dir
    nested = Response("[" * 60_000, status_code=500, media_type="application/json")
    with fake_peer(root, lambda: nested) as url:
        by, events = ask_both(nodes, url, fingers)
    assert _check_isolated(by, events, "http_error") == "HTTP 500"


async def _stall() -> Response:
    """A peer that takes 4 s, then says it is busy."""
    await asyncio.sleep(4)
    return Response(json.dumps({"error": "busy"}), status_code=503)


def _pooled(th: NodeHandle, region: Region, timeout: float) -> Requester:
    """TH's requester as a serving node has it (pooled), on trust anchors of its own."""
    r = th.requester
    return Requester(
        country="TH",
        trust=region.anchors(),
        signing_key=r.signing_key,
        signing_chain=r.signing_chain,
        tls=r.tls,
        exchange_log=r.log,
        timeout=timeout,
        pooled=True,
    )


def test_a_stalled_peer_holds_only_its_own_connections(
    nodes: dict[str, NodeHandle],
    region_dir: tuple[Region, Path],
    fingers: list[list[FingerprintTemplate]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One pool for all peers: queries to a stalled peer took every connection, and a good
    peer's answers waited for the stalled one's deadline or timed out unasked."""
    region, root = region_dir
    monkeypatch.setattr(params, "MAX_CONNECTIONS_PER_PEER", 2, raising=False)
    monkeypatch.setattr(params, "MAX_PEER_CONNECTIONS", 2, raising=False)  # the old name
    requester = _pooled(nodes["TH"], region, timeout=3.0)

    async def four(url: str) -> list[list[PeerResult]]:
        try:
            return list(
                await asyncio.gather(
                    *(
                        requester.query_peers(
                            [Peer("MY", url), Peer("ID", nodes["ID"].url)],
                            "border_control",
                            "fingerprint",
                            probe(fingers[1][1]),
                        )
                        for _ in range(4)
                    )
                )
            )
        finally:
            await requester.aclose()

    with fake_peer(root, _stall) as url:
        runs = asyncio.run(four(url))
    at_id = [r for run in runs for r in run if r.country == "ID"]
    assert [r.status for r in at_id] == ["answered"] * 4, [r.detail for r in at_id]
    assert max(r.elapsed_ms for r in at_id) < 2000
    at_my = [r for run in runs for r in run if r.country == "MY"]
    assert {r.status for r in at_my} == {"timeout"}


def test_a_new_crl_spares_the_exchanges_in_flight(
    nodes: dict[str, NodeHandle],
    region_dir: tuple[Region, Path],
    fingers: list[list[FingerprintTemplate]],
) -> None:
    """A CRL re-issued while a query is out: the pooled client was closed under it, and a peer
    that may have answered a hit was recorded as unreachable. New exchanges get a new client
    (their connections are validated against the new CRL); those in flight finish."""
    region, root = region_dir
    requester = _pooled(nodes["TH"], region, timeout=5.0)

    async def swap(url: str) -> tuple[list[PeerResult], list[PeerResult]]:
        try:
            first = asyncio.ensure_future(
                requester.query_peers(
                    [Peer("MY", url)], "border_control", "fingerprint", probe(fingers[1][1])
                )
            )
            await asyncio.sleep(0.5)
            number = requester.trust.crl.number
            requester.trust.refresh_crl(crl_pem(region.ca.crl()))
            assert requester.trust.crl.number > number
            second = await requester.query_peers(
                [Peer("ID", nodes["ID"].url)], "border_control", "fingerprint", probe(fingers[1][1])
            )
            return await first, second
        finally:
            await requester.aclose()

    with fake_peer(root, _stall) as url:
        first, second = asyncio.run(swap(url))
    assert (first[0].status, first[0].detail) == ("http_error", "HTTP 503 busy")
    assert second[0].status == "answered"


def test_replies_in_and_queries_out_are_logged_when_the_node_stops_waiting(
    nodes: dict[str, NodeHandle],
    region_dir: tuple[Region, Path],
    fingers: list[list[FingerprintTemplate]],
) -> None:
    """A query cancelled (the node shutting down) after one peer answered a hit: the hit was
    only in that peer's log. Now this node logs the replies it had, the others cancelled."""
    _, root = region_dir
    th = nodes["TH"]
    before = th.log.size()

    async def cancelled(url: str) -> None:
        task = asyncio.ensure_future(
            th.requester.query_peers(
                [Peer("ID", nodes["ID"].url), Peer("MY", url)],
                "border_control",
                "fingerprint",
                probe(fingers[1][1]),
            )
        )
        await asyncio.sleep(1.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with fake_peer(root, _stall) as url:
        asyncio.run(cancelled(url))
    events = [json.loads(e.data) for e in th.log.entries(before)]
    received = {e["peer"]: e for e in events if e["type"] == "reply_received"}
    assert set(received) == {"ID", "MY"}
    assert received["ID"]["status"] == "answered" and received["ID"]["outcome"] == "hit"
    assert received["MY"]["status"] == "cancelled"
    sent = {e["peer"]: e["query_id"] for e in events if e["type"] == "query_sent"}
    assert {p: e["query_id"] for p, e in received.items()} == sent


def test_clients_replaced_after_a_crl_are_all_closed(
    nodes: dict[str, NodeHandle],
    region_dir: tuple[Region, Path],
    fingers: list[list[FingerprintTemplate]],
) -> None:
    """Two exchanges with one peer right after a CRL change: closing the old client yielded
    before the new one was stored, so the second exchange made a client of its own that was
    never tracked, nor closed (a leaked keep-alive connection)."""
    import httpx

    region, _ = region_dir
    requester = _pooled(nodes["TH"], region, timeout=5.0)
    made: list[httpx.AsyncClient] = []
    new_client = requester._new_client

    def spy(connections: int) -> httpx.AsyncClient:
        made.append(new_client(connections))
        return made[-1]

    requester._new_client = spy  # type: ignore[method-assign]
    ask = [Peer("ID", nodes["ID"].url)], "border_control", "fingerprint", probe(fingers[1][1])

    async def run() -> None:
        try:
            await requester.query_peers(*ask)
            requester.trust.refresh_crl(crl_pem(region.ca.crl()))
            await asyncio.gather(requester.query_peers(*ask), requester.query_peers(*ask))
        finally:
            await requester.aclose()

    asyncio.run(run())
    assert len(made) == 2 and all(c.is_closed for c in made), [c.is_closed for c in made]
