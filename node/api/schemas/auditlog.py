"""Wire shapes of the auditor API over the exchange log (``/audit/log/...``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class LogEntryOut(BaseModel):
    """One log entry: index, append time, leaf hash (hex), event type and the event."""

    model_config = ConfigDict(extra="forbid")

    index: int
    created_at: str
    leaf_hash: str
    type: str
    event: dict[str, Any]


class LogPage(BaseModel):
    """A page of matching entries; ``total`` counts every match, ``next_offset`` is the
    offset of the next page (``None`` on the last)."""

    items: list[LogEntryOut]
    total: int
    next_offset: int | None


class IntegrityOut(BaseModel):
    """The result of a full store audit and the latest signed checkpoint."""

    model_config = ConfigDict(extra="allow")

    ok: bool
    origin: str
    tree_size: int
    latest_checkpoint: dict[str, Any] | None


class DashboardOut(BaseModel):
    """Aggregates of the auditor dashboard (see :class:`node.audit.Dashboard`)."""

    daily_queries: list[dict[str, Any]]
    hit_rate: dict[str, dict[str, Any]]
    refusals: dict[str, int]
    quota: list[dict[str, Any]]
    integrity: IntegrityOut
    pruned: int = Field(
        0,
        description="entries of the window pruned by retention (exchange_log_days): their "
        "events are deleted and counted nowhere else",
    )
