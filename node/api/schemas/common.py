"""Shapes shared by several resources."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Query
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict

#: Largest row id a page cursor may name (a signed 64-bit integer, as the databases store it).
MAX_ROW_ID = 2**63 - 1


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+23:00 is before year 1 in UTC
        raise ValueError("the time is out of range once converted to UTC") from None


#: A time with a zone, converted to UTC (out-of-range instants are a 422, not a 500).
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_in_utc)]
#: The ``after`` cursor of a page: the last row id of the previous page.
AfterId = Annotated[int, Query(ge=0, le=MAX_ROW_ID, description="next_after of the previous page")]


class WireModel(BaseModel):
    """Base of response models: built from ORM rows by attribute, unknown input refused."""

    model_config = ConfigDict(from_attributes=True, extra="forbid")


class ErrorBody(BaseModel):
    """Every error response."""

    error: str
    detail: str


#: Every error status the API answers, with what it means.
ERROR_STATUSES: dict[int, str] = {
    400: "the body is not valid JSON",
    401: "no, malformed, unknown, expired or revoked bearer token",
    403: "the caller's role may not do this",
    404: "no such subject, record, user, token, query, hit reference or log entry",
    409: "it exists already (a user name), or the gallery refused the change",
    413: "the body is larger than the limit of its path",
    415: "a JSON body sent with another Content-Type (send application/json)",
    422: "the request's values are refused",
    500: "an unexpected failure on this node; its log has the details",
    503: "the gallery, the exchange or the exchange log is not available on this node",
}


def errors(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI ``responses`` for the error statuses of a router: the ones every route can answer
    (400, 401, 403, 413, 422, 500, and 503 when the database is down) and ``statuses``
    (415 where routes take JSON bodies), each an :class:`ErrorBody`."""
    wanted = sorted({400, 401, 403, 413, 422, 500, 503, *statuses})
    return {s: {"model": ErrorBody, "description": ERROR_STATUSES[s]} for s in wanted}


ERROR_RESPONSES = errors()
