"""Request body size limits, enforced before and while the body is read."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from node.api.errors import error_response


class BodySizeLimit:
    """Refuse bodies larger than the limit of their path with 413.

    A declared ``Content-Length`` above the limit is refused before anything is read; a body
    without one (chunked) is counted as it arrives and refused as soon as it passes the limit.
    ``overrides`` maps path prefixes to their own limits (image uploads are larger than JSON).
    """

    def __init__(
        self, app: ASGIApp, *, default: int, overrides: Sequence[tuple[str, int]] = ()
    ) -> None:
        self.app = app
        self.default = default
        self.overrides = sorted(overrides, key=lambda item: -len(item[0]))

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.overrides:
            if path.startswith(prefix):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            response = error_response(
                413, "payload_too_large", f"request body of {declared} bytes exceeds {limit}"
            )
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"request body exceeds {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
