"""``GET /health``: liveness, identity, and how this node's PKI documents stand; no
authentication (how the admins' API tokens stand is ``GET /users/admin-tokens``, signed in)."""

from __future__ import annotations

from importlib.metadata import version

from fastapi import APIRouter, Request
from sqlalchemy import text

from node.api.deps import SessionDep, SettingsDep
from node.api.schemas.health import Health, PkiNotice
from node.exchange.pki_watch import explain
from node.exchange.setup import Exchange

router = APIRouter(tags=["health"])


@router.get("/health")
def health(request: Request, settings: SettingsDep, session: SessionDep) -> Health:
    session.execute(text("SELECT 1"))
    exchange: Exchange | None = getattr(request.app.state, "exchange", None)
    notices = exchange.pki_watch.notices() if exchange is not None else []
    missing: int = getattr(request.app.state, "missing_from_gallery", 0)
    return Health(
        status="degraded" if missing or any(n.refusing for n in notices) else "ok",
        country=settings.country,
        version=version("bdx"),
        gallery=request.app.state.gallery is not None,
        missing_from_gallery=missing,
        pki=[
            PkiNotice(
                document=n.document, state=n.state, reason=n.reason, at=n.at, detail=explain(n)
            )
            for n in notices
        ],
    )
