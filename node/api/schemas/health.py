"""Liveness on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from certs.pki.standing import Document, State
from node.services import params


class PkiNotice(BaseModel):
    """One of this node's PKI documents that needs its operator."""

    document: Document
    state: State = Field(
        description="expiring: nears its end (warning); stale, expired, refused: the peer "
        "exchange refuses until it is replaced"
    )
    reason: str = Field(description="stable code: stale_crl, expired, revoked, expires_soon...")
    at: datetime | None = Field(description="when it went or goes stale, or expires")
    detail: str


class AdminTokens(BaseModel):
    """The node's admins are about to lose, or have lost, the use of the API (no names: the
    route answers anyone; the node's log names them)."""

    state: Literal["expiring", "none"] = Field(
        description="expiring: every live API token of the active admins expires within "
        f"{params.ADMIN_TOKEN_WARNING_DAYS} days (an admin issues a new one over the API); "
        "none: no active admin holds a live token, nobody can manage users over the API until "
        "`bdx users token` on the node's machine issues an admin one"
    )
    expires_at: datetime | None = Field(
        description="when the last live admin token expires (expiring); null for none"
    )
    detail: str


class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(
        description="degraded: the API serves, but this node's peer exchange refuses because "
        "of a notice in pki, or records are missing from the gallery (missing_from_gallery)"
    )
    country: str
    version: str
    gallery: bool
    missing_from_gallery: int = Field(
        0,
        description="active records the start-up reconcile found without a template in the "
        "gallery (a database newer than its gallery): never found until their subjects are "
        "re-enrolled; counted at start-up",
    )
    pki: list[PkiNotice] = Field(
        default_factory=list,
        description="this node's trust list, CRL and own certificates that need the operator",
    )
    admin_tokens: AdminTokens | None = Field(
        None,
        description="present only while the node's admins are about to lose, or have lost, "
        "the use of the API (absent: in order, or no user has the admin role yet); does not "
        "make status degraded: officers' and peers' work goes on",
    )
