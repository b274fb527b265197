"""Every error leaves the API as ``{"error": reason, "detail": message}`` with its status.

Typed errors (:class:`~matcher.errors.BdxError`) map by class to a status; framework errors
(validation, unknown route, wrong method, size limit) get the same body shape. A database
that fails under a request (down, connection lost, locked by another process) is a 503, as the
CLI's exit 7; a request the node's stop cuts off is a 503 ``node_stopping``
(:class:`StopCutOff`). Unexpected exceptions become a bare 500 without internals; the server log
has the traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from certs.errors import CertsError
from matcher.errors import BdxError, GalleryError, ImageError, MatcherError
from node.api.access import route_template
from node.errors import ConfigError, NotFoundError, PeerError
from node.service_errors import (
    AuthenticationError,
    ConflictError,
    DatabaseUnavailableError,
    ExchangeUnavailableError,
    InternalServiceError,
    InvalidRequestError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RetryLaterError,
    StoreUnavailableError,
)
from policy.errors import PolicyError

log = logging.getLogger(__name__)

#: Most specific first; the first class the error is an instance of gives the status.
STATUS_BY_ERROR: tuple[tuple[type[BdxError], int], ...] = (
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (PayloadTooLargeError, 413),
    (InvalidRequestError, 422),
    (RetryLaterError, 429),
    (StoreUnavailableError, 503),
    (ExchangeUnavailableError, 503),
    (DatabaseUnavailableError, 503),
    (InternalServiceError, 500),
    (PeerError, 502),
    (ConfigError, 500),
    (CertsError, 403),
    (PolicyError, 403),
    (GalleryError, 409),
    (ImageError, 422),
    (MatcherError, 422),
)
#: Reasons whose status differs from their class's.
STATUS_BY_REASON = {
    "too_large": 413,
    "unknown_reference": 404,
    "stale_proof": 409,  # a witness moved on: ask again (c2sp.org/tlog-witness answers 409)
    "bad_proof": 422,
    "peer_busy": 503,  # a peer's queries queue is full: this node is busy for it
    "history_indexing": 503,  # the query history's index is far behind the log: ask again
}

_HTTP_REASONS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
BEARER_REALM = 'Bearer realm="bdx"'
#: Retry-After (seconds) of a 503 ``database_unavailable``: a SQLite lock another process holds
#: or a PostgreSQL restart lasts seconds, and each retry costs the node a connection attempt (a
#: busy-timeout wait on SQLite), so clients wait longer than after ``database_busy`` (1 s).
DATABASE_RETRY_AFTER_S = 5
#: Retry-After (seconds) of a 503 ``node_stopping``: a node is stopped to be restarted, most
#: often, and a start takes tens of seconds (the exchange, the galleries' warm-up, the search
#: processes); asked again sooner, the client finds no node listening.
STOPPING_RETRY_AFTER_S = 30


def error_response(
    status: int, reason: str, detail: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": reason, "detail": detail}, status_code=status, headers=headers)


def status_of(exc: BdxError) -> int:
    if exc.reason in STATUS_BY_REASON:
        return STATUS_BY_REASON[exc.reason]
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 400


async def _bdx_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BdxError)
    status = status_of(exc)
    headers = None
    if status == 401:
        # RFC 6750 section 3: no error code when the request carried no credentials at all.
        challenge = BEARER_REALM
        if exc.reason != "missing_token":
            description = exc.message.replace('"', "'")
            challenge += f', error="invalid_token", error_description="{description}"'
        headers = {"WWW-Authenticate": challenge}
    if isinstance(exc, RetryLaterError):  # a peer over its share: its refusal is logged, bounded
        headers = {"Retry-After": str(exc.retry_after_s)}
    elif isinstance(exc, DatabaseFailedError):  # logged where it was caught
        headers = {"Retry-After": str(DATABASE_RETRY_AFTER_S)}
    elif status >= 500:
        log.error("request failed: %s [%s]", exc.message, exc.reason)
    return error_response(status, exc.reason, exc.message, headers)


#: FastAPI's own 400 for a body its JSON parser gave up on (a 5,000-digit number, nesting too
#: deep, invalid UTF-8): the same failure as an invalid document, so the same reason.
_BODY_PARSE_DETAIL = "There was an error parsing the body"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        return error_response(400, "malformed_json", "the request body is not valid JSON")
    sent = request.headers.get("content-type", "")
    body_errors = [err for err in errors if tuple(err.get("loc", ()))[:1] == ("body",)]
    if body_errors and "json" not in sent.lower() and request.method in ("POST", "PUT"):
        # A JSON document sent as form data or octets (``curl -d`` does that) is not read as
        # JSON: say so, not that the object is missing.
        return error_response(
            415,
            "unsupported_media_type",
            f"send the body as JSON (Content-Type: application/json), not {sent or 'untyped'}",
        )
    parts = []
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return error_response(422, "invalid_request", "; ".join(parts))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and exc.detail == _BODY_PARSE_DETAIL:
        return error_response(
            400, "malformed_json", "the request body is not valid JSON the node can read"
        )
    reason = _HTTP_REASONS.get(exc.status_code, f"http_{exc.status_code}")
    return error_response(exc.status_code, reason, str(exc.detail), exc.headers)


async def _unstorable_value(request: Request, exc: Exception) -> JSONResponse:
    """A value the database cannot hold (a NUL character in text on PostgreSQL, a number out
    of its column's range): bad input, not a failure. Logged without the statement, whose
    parameters are the request's values."""
    route = route_template(request.scope)
    log.info("value refused by the database on %s %s", request.method, route)
    return error_response(
        422,
        "invalid_request",
        "a value the node cannot store (a NUL character, or a number out of range)",
    )


async def _database_busy(request: Request, exc: Exception) -> JSONResponse:
    """No database connection came free in time: the node is overloaded, not broken."""
    log.warning("no database connection within the pool timeout (%s)", type(exc).__name__)
    response = error_response(503, "database_busy", "the node is busy; retry shortly")
    response.headers["Retry-After"] = "1"
    return response


class DatabaseFailedError(DatabaseUnavailableError):
    """The database failed under a request (:func:`database_failed`), already logged in one
    line where it was caught: answered 503 ``database_unavailable`` with Retry-After."""


def database_failed(exc: BaseException, method: str, route: str) -> DatabaseFailedError | None:
    """``exc`` as :class:`DatabaseFailedError` when it is the database failing: its server
    down or refusing connections, the connection broken, or (SQLite) another process holding
    the write lock past the busy timeout, or the disk full. Nothing of the request is at fault
    (the CLI's exit 7). Logged here in one line, the driver's first line only: the statement
    and its parameters (the request's values, personal data among them) stay out of the log.
    ``None`` for other errors (a constraint violated is a bug: a 500)."""
    if not isinstance(exc, DBAPIError):
        return None
    if not isinstance(exc, OperationalError | InterfaceError) and not exc.connection_invalidated:
        return None
    why = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else ""
    kind = type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__
    log.error("database unavailable on %s %s: %s (%s)", method, route, why, kind)
    return DatabaseFailedError("the node's database is unavailable; retry shortly")


async def _database_failed(request: Request, exc: Exception) -> JSONResponse:
    """The database failed under the request (:func:`database_failed`): 503."""
    route = route_template(request.scope)
    failed = database_failed(exc, request.method, route)
    if failed is None:
        raise exc
    return await _bdx_error(request, failed)


async def _changed_meanwhile(request: Request, exc: Exception) -> JSONResponse:
    """Rows this request updated were changed or deleted by another one in between (say a
    subject deleted while its restrictions were edited): the caller may look and retry."""
    return error_response(
        409, "changed_meanwhile", "another request changed these records meanwhile; retry"
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The route template, never the path: paths carry subject ids (node.api.access).
    route = route_template(request.scope)
    log.exception("unexpected error on %s %s", request.method, route)
    headers = getattr(request.app.state, "security_headers", None)  # no middleware runs here
    return error_response(
        500, "internal_error", "internal error; the node's log has details", headers
    )


class StopCutOff:
    """ASGI middleware: a request the node's stop cuts off is answered 503 ``node_stopping``
    with Retry-After, not uvicorn's bare 500.

    At a stop, uvicorn waits ``timeout_graceful_shutdown`` for the requests in progress
    (:data:`node.exchange.serving.GRACEFUL_SHUTDOWN_S`), then cancels their tasks; nothing
    else cancels a request's task (a client that goes away does not). An officer's query
    waiting on a slow peer (up to its 30 s deadline), a search or an enrolment waiting for its
    worker thread got "Internal Server Error" in plain text, and an ERROR traceback each. A
    query's fate is in the exchange log all the same (``cancelled``,
    :mod:`node.exchange.requester`). A worker thread's job finishes before the cancellation
    reaches the request: what it changed may have been saved, and the detail says so. A
    response already begun is cut as before (uvicorn closes the connection)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except asyncio.CancelledError:
            if started:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # answered: the task ends as the server wanted it to
            route = route_template(scope)
            log.warning("%s %s cut off by the node's stop: 503", scope["method"], route)
            detail = (
                "the node is stopping and cut this request off before its answer; ask again "
                "once it is back (a change the request made may have been saved)"
            )
            headers = {"Retry-After": str(STOPPING_RETRY_AFTER_S)}
            await error_response(503, "node_stopping", detail, headers)(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(BdxError, _bdx_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(PoolTimeoutError, _database_busy)
    app.add_exception_handler(StaleDataError, _changed_meanwhile)
    app.add_exception_handler(DataError, _unstorable_value)
    app.add_exception_handler(DBAPIError, _database_failed)
    app.add_exception_handler(Exception, _unexpected)
