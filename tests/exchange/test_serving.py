"""The API and peer servers of one node (``node.exchange.serving.ServerPair``), real uvicorn
servers on loopback ports."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from node.exchange.serving import ServerPair
from tests.exchange.service_support import free_port


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
