"""Liveness on the wire."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Health(BaseModel):
    status: Literal["ok"]
    country: str
    version: str
    gallery: bool
