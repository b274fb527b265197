"""Shapes shared by several resources."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class WireModel(BaseModel):
    """Base of response models: built from ORM rows by attribute, unknown input refused."""

    model_config = ConfigDict(from_attributes=True, extra="forbid")


class ErrorBody(BaseModel):
    """Every error response."""

    error: str
    detail: str


ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (401, "no, malformed, unknown, expired or revoked bearer token"),
        (403, "the caller's role may not do this"),
        (422, "the request's values are refused"),
    )
}
