"""Helpers of the node tests (imported by the tests and their conftest)."""

from __future__ import annotations

import socket
import warnings

with warnings.catch_warnings():
    # starlette warns once at import that it prefers the `httpx2` fork; the API is the same.
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

__all__ = ["TestClient", "bearer", "free_port"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
