"""``GET /health``: liveness and identity, no authentication."""

from __future__ import annotations

from importlib.metadata import version

from fastapi import APIRouter, Request
from sqlalchemy import text

from node.api.deps import SessionDep, SettingsDep
from node.api.schemas.health import Health

router = APIRouter(tags=["health"])


@router.get("/health")
def health(request: Request, settings: SettingsDep, session: SessionDep) -> Health:
    session.execute(text("SELECT 1"))
    return Health(
        status="ok",
        country=settings.country,
        version=version("bdx"),
        gallery=request.app.state.gallery is not None,
    )
