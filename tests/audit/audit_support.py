"""Helpers of the auditor tests: the node app with a given exchange log, served for real."""

from __future__ import annotations

import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine

from certs.translog import TransparencyLog
from node.api.app import create_app
from node.settings import Settings

with warnings.catch_warnings():
    # starlette warns once at import that it prefers the `httpx2` fork; the API is the same.
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

__all__ = ["TestClient", "auditor_app", "bearer", "serve"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def auditor_app(settings: Settings, engine: Engine, log: TransparencyLog | None) -> FastAPI:
    """The node's app on ``engine`` with ``log`` as its exchange log (``None``: no log)."""
    app = create_app(settings, engine=engine, open_gallery=False)
    app.state.exchange_log = log
    return app


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """``app`` under a real uvicorn server on a free loopback port; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
