"""``/users`` and ``/tokens``: user and token administration (admin), ``/users/me`` (anyone),
``/users/admin-tokens`` (admin or auditor)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, status

from node.api.deps import (
    AdminUser,
    CurrentUser,
    SessionDep,
    SettingsDep,
    actor,
    require_role,
)
from node.api.schemas.common import ErrorBody, errors
from node.api.schemas.users import (
    AdminTokensOut,
    Me,
    RoleChange,
    TokenCreate,
    TokenIssued,
    TokenOut,
    UserCreate,
    UserOut,
)
from node.db.base import utc_now
from node.db.models import ApiToken, Role, User
from node.services.users import (
    Principal,
    UserService,
    admin_warning_window,
    seconds_left,
)

router = APIRouter(tags=["users"], responses=errors(404, 409, 415))

#: The 409 of the routes that take a user's admin rights (disable, role)...
#: (Routes have no docstring: the operation's description is its role, ``document_roles``.)
_LAST_ADMIN: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorBody,
        "description": "last_admin: no other active admin holds a live token (neither "
        "revoked nor expired), so nobody could manage users over the API; make another user "
        "admin and issue them a token first",
    }
}
#: ... and of the revocation of an active admin's live token: the owner's other live tokens
#: count too (an admin may revoke one of theirs while they hold another).
_LAST_ADMIN_TOKEN: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorBody,
        "description": "last_admin: the token is an active admin's live token (neither "
        "revoked nor expired) and no active admin, its owner included, holds another live "
        "token, so nobody could manage users over the API; issue an admin (this one or "
        "another) a second token first",
    }
}


def _service(session: SessionDep, settings: SettingsDep) -> UserService:
    return UserService(session, token_max_days=settings.token_max_days)


def _out(service: UserService, user: User) -> UserOut:
    return _with_tokens(user, service.tokens_of(user))


def _token(row: ApiToken) -> TokenOut:
    out = TokenOut.model_validate(row)
    out.expires_in = seconds_left(row.expires_at, utc_now())
    return out


def _with_tokens(user: User, tokens: Sequence[ApiToken]) -> UserOut:
    out = UserOut.model_validate(user)
    out.tokens = [_token(t) for t in tokens]
    return out


@router.get("/users/me")
def who_am_i(principal: CurrentUser) -> Me:
    return Me(name=principal.name, role=principal.role)


#: Who reads ``/users/admin-tokens``: an admin, and an auditor, who still can once no admin
#: holds a live token (nobody could read an admin-only route then).
AdminOrAuditor = Annotated[Principal, Depends(require_role(Role.ADMIN, Role.AUDITOR))]
#: ``detail`` of a node where no user has the admin role.
_NO_ADMIN = (
    "no user has the admin role: on this node's machine `bdx users role NAME admin` (or `bdx "
    "users add NAME --role admin`) makes one and `bdx users token NAME` issues them a token"
)


@router.get(
    "/users/admin-tokens",
    summary="How long the node's active admins can still use the API (what its log warns of)",
)
def admin_tokens(
    caller: AdminOrAuditor, session: SessionDep, settings: SettingsDep
) -> AdminTokensOut:
    window = admin_warning_window(settings.token_max_days)
    standing = _service(session, settings).read_admin_standing(window, actor=actor(caller))
    days = window / timedelta(days=1)
    if standing is None:
        return AdminTokensOut(
            state="no_admin",
            window_days=days,
            admins=[],
            tokens=0,
            expires_at=None,
            detail=_NO_ADMIN,
        )
    return AdminTokensOut(
        state=standing.state,
        window_days=days,
        admins=list(standing.admins),
        tokens=standing.tokens,
        expires_at=standing.last,
        detail=None if standing.state == "ok" else standing.message(),
    )


@router.get("/users")
def list_users(admin: AdminUser, session: SessionDep, settings: SettingsDep) -> list[UserOut]:
    rows = _service(session, settings).users_with_tokens(actor=actor(admin))
    return [_with_tokens(user, tokens) for user, tokens in rows]


@router.post("/users", status_code=status.HTTP_201_CREATED)
def add_user(
    body: UserCreate, admin: AdminUser, session: SessionDep, settings: SettingsDep
) -> UserOut:
    service = _service(session, settings)
    return _out(
        service,
        service.add_user(
            body.name,
            body.role,
            actor=actor(admin),
            caller=admin.user_id,
            caller_token=admin.token_id,
        ),
    )


@router.post(
    "/users/{name}/disable",
    summary="Disable a user: their tokens stop working (again: the same answer)",
    responses=_LAST_ADMIN,
)
def disable_user(
    name: str, admin: AdminUser, session: SessionDep, settings: SettingsDep
) -> UserOut:
    service = _service(session, settings)
    return _out(
        service,
        service.disable_user(
            name, actor=actor(admin), caller=admin.user_id, caller_token=admin.token_id
        ),
    )


@router.post(
    "/users/{name}/enable",
    summary="Enable a disabled user again: their live tokens work again (again: the same answer)",
)
def enable_user(name: str, admin: AdminUser, session: SessionDep, settings: SettingsDep) -> UserOut:
    service = _service(session, settings)
    return _out(
        service,
        service.enable_user(
            name, actor=actor(admin), caller=admin.user_id, caller_token=admin.token_id
        ),
    )


@router.put(
    "/users/{name}/role",
    summary="Give a user another role, effective on their tokens' next request",
    responses=_LAST_ADMIN,
)
def set_role(
    name: str, body: RoleChange, admin: AdminUser, session: SessionDep, settings: SettingsDep
) -> UserOut:
    service = _service(session, settings)
    changed = service.set_role(
        name, body.role, actor=actor(admin), caller=admin.user_id, caller_token=admin.token_id
    )
    return _out(service, changed.user)


@router.get(
    "/users/{name}/tokens",
    summary="A user's tokens, oldest first: created, expires, revoked, last used",
)
def list_tokens(
    name: str, admin: AdminUser, session: SessionDep, settings: SettingsDep
) -> list[TokenOut]:
    rows = _service(session, settings).tokens_of_user(name, actor=actor(admin))
    return [_token(t) for t in rows]


@router.post("/users/{name}/tokens", status_code=status.HTTP_201_CREATED)
def issue_token(
    name: str, body: TokenCreate, admin: AdminUser, session: SessionDep, settings: SettingsDep
) -> TokenIssued:
    issued = _service(session, settings).issue_token(
        name,
        expires_days=body.expires_days,
        actor=actor(admin),
        caller=admin.user_id,
        caller_token=admin.token_id,
    )
    return TokenIssued(
        token_id=issued.token_id, token=issued.token, user=issued.user, expires_at=issued.expires_at
    )


@router.delete("/tokens/{token_id}", responses=_LAST_ADMIN_TOKEN)
def revoke_token(
    token_id: str, admin: AdminUser, session: SessionDep, settings: SettingsDep
) -> TokenOut:
    service = _service(session, settings)
    row = service.revoke_token(
        token_id, actor=actor(admin), caller=admin.user_id, caller_token=admin.token_id
    )
    return _token(row)
