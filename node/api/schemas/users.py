"""Users and tokens on the wire (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from node.api.schemas.common import WireModel
from node.db.models import Role
from node.services import params


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, examples=["officer-anna"])
    role: Role


class TokenOut(WireModel):
    """A token by its public id; the token itself is shown once, at issue, and its hash
    never leaves the node."""

    token_id: str
    created_at: datetime
    expires_at: datetime | None
    expires_in: int | None = Field(
        None,
        description="whole seconds from this answer until it expires, 0 once it has; null for "
        "a token without an end",
    )
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(
        description="when it last authenticated a request; the node writes the uses every "
        f"{params.TOKEN_USE_INTERVAL_S} s and as it stops (it may lag by that much); null: not "
        "used since it was issued (or since the node recorded uses)"
    )


class UserOut(WireModel):
    name: str
    role: Role
    active: bool
    created_at: datetime
    tokens: list[TokenOut] = Field(default_factory=list)


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expires_days: int | None = Field(None, ge=1, description="default: the longest allowed")


class TokenIssued(BaseModel):
    """The token is shown in this response only; the node keeps its hash."""

    token_id: str
    token: str
    user: str
    expires_at: datetime | None


class Me(BaseModel):
    name: str
    role: Role


class AdminTokensOut(BaseModel):
    """How long the node's active admins can still use the API (what the node's log warns
    of: ``bdx`` logs a WARNING while ``expiring``, an ERROR once ``none``)."""

    state: Literal["ok", "expiring", "none", "no_admin"] = Field(
        description="ok; expiring: every live API token of the active admins expires within "
        "window_days (an admin issues a new one over the API); none: no active admin holds a "
        "live token, nobody can manage users over the API until `bdx users token` on the "
        "node's machine issues an admin one; no_admin: no user has the admin role"
    )
    window_days: float = Field(
        description=f"the warning window: {params.ADMIN_TOKEN_WARNING_DAYS} days, at most "
        f"{params.ADMIN_TOKEN_WARNING_FRACTION:g} of token_max_days"
    )
    admins: list[str] = Field(description="the active admins holding a live token")
    tokens: int = Field(description="how many live tokens they hold")
    expires_at: datetime | None = Field(
        description="when the last of these expires (null: none live, or one without an end)"
    )
    detail: str | None = Field(description="what to do, unless ok")
