"""``GET /health``: liveness, identity, and how this node's PKI documents and its admins' API
tokens stand; no authentication."""

from __future__ import annotations

from importlib.metadata import version

from fastapi import APIRouter, Request
from sqlalchemy import text

from node.api.deps import SessionDep, SettingsDep
from node.api.schemas.health import AdminTokens, Health, PkiNotice
from node.exchange.pki_watch import explain
from node.exchange.setup import Exchange
from node.services.users import UserService

router = APIRouter(tags=["health"])


# Unset fields are left out: ``admin_tokens`` appears only while it has something to say.
@router.get("/health", response_model_exclude_unset=True)
def health(request: Request, settings: SettingsDep, session: SessionDep) -> Health:
    session.execute(text("SELECT 1"))
    exchange: Exchange | None = getattr(request.app.state, "exchange", None)
    notices = exchange.pki_watch.notices() if exchange is not None else []
    missing: int = getattr(request.app.state, "missing_from_gallery", 0)
    extra: dict[str, AdminTokens] = {}
    standing = UserService(session).admin_standing()
    if standing is not None and standing.state != "ok":
        expires = standing.last if standing.state == "expiring" else None
        extra["admin_tokens"] = AdminTokens(
            state=standing.state, expires_at=expires, detail=_ADMIN_DETAIL[standing.state]
        )
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
        **extra,
    )


#: ``admin_tokens.detail`` by state: what to do, without the admins' names (the log has them).
_ADMIN_DETAIL = {
    "expiring": "every live API token of the node's active admins expires by expires_at: "
    "issue an admin a new token before then",
    "none": "no active admin holds a live API token: nobody can manage users over the API; "
    "`bdx users token NAME` on the node's machine issues an admin one",
}
