"""Liveness on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from certs.pki.standing import Document, State


class PkiNotice(BaseModel):
    """One of this node's PKI documents that needs its operator."""

    document: Document
    state: State = Field(
        description="expiring: nears its end (warning); stale, expired, refused: the peer "
        "exchange refuses until it is replaced"
    )
    reason: str = Field(description="stable code: stale_crl, expired, revoked, expires_soon...")
    at: datetime | None = Field(
        description="when it went or goes stale, expired or expires, was revoked (the CRL "
        "entry's revocation date) or becomes valid; null for a refusal without a date (a "
        "certificate not in the trust list, listed for another country or usage)"
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
