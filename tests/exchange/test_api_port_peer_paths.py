"""A peer route's path on the API port is answered as any path the API port does not serve.

The peer routes are mounted in the one app both listeners serve. On the API port they refused
a request without a client certificate (401/403), answered a wrong method 405 and redirected a
trailing slash, which told anyone who could reach the API port that they exist. Now every
``/peer/v1`` path there answers exactly as an unknown path (status, body, headers, access log
line); the peer port answers as before.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from certs.pki.bootstrap import build_region, write_region
from certs.pki.tls import client_context
from node.exchange import router as peer_router
from node.exchange.messages import MAX_QUERY_BYTES
from tests.exchange.service_support import ServiceNode, serving

UNKNOWN = "/no-such-route"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = build_region(("TH", "ID"))
    folder = tmp_path_factory.mktemp("peer-paths-region")
    write_region(built, folder)
    return folder


@pytest.fixture(scope="module")
def th(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceNode]:
    with serving(tmp_path_factory.mktemp("peer-paths-nodes"), root, ["TH", "ID"]) as nodes:
        yield nodes["TH"]


def peer_requests() -> list[tuple[str, str]]:
    """Every peer route's method and path (its parameters filled in), and the same paths
    asked the wrong way: another method, a trailing slash, the prefix itself."""
    asked: list[tuple[str, str]] = []
    for route in peer_router.router.routes:
        path = re.sub(r"\{[^}]+\}", "TH", getattr(route, "path", ""))
        for method in sorted(getattr(route, "methods", ())):
            asked += [(method, path), (method, path + "/")]
        asked.append(("DELETE", path))
    prefix = peer_router.router.prefix
    return [*asked, ("GET", prefix), ("GET", prefix + "/"), ("POST", prefix + "/queries/")]


def answer(http: httpx.Client, method: str, path: str, **options: Any) -> tuple[Any, ...]:
    r = http.request(method, path, **options)
    headers = {k: v for k, v in r.headers.items() if k.lower() != "date"}
    return r.status_code, r.content, headers


def access_lines(caplog: pytest.LogCaptureFixture, count: int) -> list[str]:
    """The access log's ``count`` lines without their durations (a line is written once the
    answer has gone: waited for, 10 s at most)."""
    deadline = time.monotonic() + 10
    while True:
        lines = [r.getMessage() for r in caplog.records if r.name == "bdx.access"]
        if len(lines) >= count or time.monotonic() > deadline:
            return [line.rsplit(" ", 1)[0] for line in lines]
        time.sleep(0.01)


def test_every_peer_path_on_the_api_port_is_an_unknown_path(
    th: ServiceNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bdx.access")
    bodies: dict[str, Any] = {"content": b"x.y.z", "headers": {"Authorization": "Bearer x"}}
    with httpx.Client(base_url=th.api_url, timeout=30, follow_redirects=False) as http:
        for method, path in peer_requests():
            caplog.clear()
            got = answer(http, method, path, **bodies)
            unknown = answer(http, method, UNKNOWN, **bodies)
            assert got == unknown, (method, path)
            assert got[0] == 404 and b'"not_found"' in got[1]
            line, other = access_lines(caplog, 2)
            assert line == other == f"{method} <no route> 404", (method, path)
            assert "peer" not in line


def test_the_peer_query_body_limit_is_the_peer_ports_alone(th: ServiceNode) -> None:
    """A body above the API's JSON limit but within the largest signed query: on the API
    port refused as for any unknown path (the JSON limit); on the peer port read, up to
    MAX_QUERY_BYTES and no more."""
    big = b"a" * (1024 * 1024 + 10)
    assert len(big) < MAX_QUERY_BYTES
    headers = {"Content-Type": "application/jose"}
    queries = peer_router.router.prefix + "/queries"
    with httpx.Client(base_url=th.api_url, timeout=30) as http:
        got = answer(http, "POST", queries, content=big, headers=headers)
        assert got == answer(http, "POST", UNKNOWN, content=big, headers=headers)
        assert got[0] == 413 and b"payload_too_large" in got[1]

    folder = th.app.state.settings.pki_dir / "nodes" / "id"
    tls = client_context(folder / "tls.pem", folder / "tls.key", folder.parent.parent / "root.pem")
    with httpx.Client(base_url=th.peer_url, verify=tls, timeout=30) as peer:
        r = peer.post(queries, content=big, headers=headers)
        assert r.status_code not in (404, 413) and r.json()["error"] != "not_found"
        r = peer.post(queries, content=b"a" * (MAX_QUERY_BYTES + 1), headers=headers)
        assert (r.status_code, r.json()["error"]) == (413, "payload_too_large")
        assert f"exceeds {MAX_QUERY_BYTES}" in r.json()["detail"]
        r = peer.post(queries, content=b"x.y.z")
        assert r.status_code in (400, 403, 422) and r.json()["error"] != "not_found"
        r = peer.get("/openapi.json")
        assert r.status_code == 200 and queries in r.json()["paths"]
