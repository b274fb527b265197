"""The node's access log: method, route *template*, status and duration of every request.

uvicorn's own access log writes the request's path and query string, and here those carry
subject ids (``/subjects/PERSON-1980-1234``, ``/gallery/enrol?subject=...``): personal data
in a log file. This middleware logs the matched route's template instead
(``/subjects/{external_id}``), never the raw path or the query, and ``bdx serve`` turns
uvicorn's access log off.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("bdx.access")

#: What is logged for a request that matched no route (its path could be anything).
UNMATCHED = "<no route>"


def route_template(scope: Scope) -> str:
    """The template of the route ``scope`` matched (``/subjects/{external_id}``), or
    :data:`UNMATCHED`. FastAPI's own routes record themselves in the scope; Starlette's plain
    ones (``/openapi.json``, ``/docs``) record only their endpoint, so the app's route holding
    that endpoint gives the template."""
    path = getattr(scope.get("route"), "path", None)
    if path:
        return str(path)
    endpoint = scope.get("endpoint")
    app = scope.get("app")
    if endpoint is not None and app is not None:
        for route in getattr(getattr(app, "router", None), "routes", ()):
            if getattr(route, "endpoint", None) is endpoint:
                return str(route.path)
    return UNMATCHED


class AccessLog:
    """ASGI middleware: one INFO line per HTTP request, without path values or query."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client sees when the app raises before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            ms = (time.perf_counter() - start) * 1000
            log.info("%s %s %d %.1fms", scope["method"], route_template(scope), status, ms)


def to_stderr(level: int = logging.INFO) -> None:
    """Print the access log on stderr as uvicorn printed its own (``bdx serve``)."""
    if not any(getattr(h, "_bdx_access", False) for h in log.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        handler._bdx_access = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
