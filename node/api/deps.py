"""Request dependencies: settings, a database session, the gallery, the caller and its role.

Handlers declare what they need with the ``Annotated`` aliases below, e.g.::

    @router.get("/things")
    def list_things(user: OperatorUser, session: SessionDep) -> ...

Handlers are plain ``def`` functions: FastAPI runs them (and these dependencies) in the worker
thread pool, so database and CPU work never blocks the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.routing import BaseRoute

from node.db.models import Role
from node.service_errors import AuthenticationError, PermissionDeniedError, StoreUnavailableError
from node.services.galleries import GallerySet
from node.services.records import GalleryIndex
from node.services.users import Principal, UserService
from node.settings import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def get_gallery(request: Request) -> GalleryIndex:
    gallery: GalleryIndex | None = request.app.state.gallery
    if gallery is None:
        raise StoreUnavailableError("this node has no gallery store configured")
    return gallery


def get_gallery_set(request: Request) -> GallerySet:
    gallery = request.app.state.gallery
    if not isinstance(gallery, GallerySet):
        raise StoreUnavailableError("this node has no gallery store configured")
    return gallery


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
GalleryDep = Annotated[GalleryIndex, Depends(get_gallery)]
GallerySetDep = Annotated[GallerySet, Depends(get_gallery_set)]

_bearer = HTTPBearer(auto_error=False, description="an API token from `bdx users token`")


def current_principal(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The authenticated caller; 401 without a valid bearer token."""
    if credentials is None:
        raise AuthenticationError(
            "this endpoint needs an 'Authorization: Bearer <token>' header",
            reason="missing_token",
        )
    users = UserService(
        session, token_max_days=settings.token_max_days, uses=request.app.state.token_uses
    )
    try:
        return users.authenticate(credentials.credentials)
    finally:
        # Give the connection back: the handler waits for a worker thread next, and a
        # connection held meanwhile starves the threads that hold none (the pool is finite).
        session.rollback()


CurrentUser = Annotated[Principal, Depends(current_principal)]


def require_role(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency that admits callers holding one of ``roles`` (403 otherwise)."""
    allowed = frozenset(roles)

    def check(principal: CurrentUser) -> Principal:
        if principal.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise PermissionDeniedError(
                f"role {principal.role.value} may not do this (needs {names})",
                reason="wrong_role",
            )
        return principal

    check.roles = allowed  # type: ignore[attr-defined]  # read by roles_of (OpenAPI)
    return check


def roles_of(dependant: Dependant) -> frozenset[Role] | None:
    """The roles a route admits, from its :func:`require_role` dependency (``None``: any
    signed-in user when it needs one, else no sign-in); for the OpenAPI descriptions."""
    for dep in dependant.dependencies:
        roles = getattr(dep.call, "roles", None)
        if roles is not None:
            return frozenset(roles)
        found = roles_of(dep)
        if found is not None:
            return found
    return None


def needs_user(dependant: Dependant) -> bool:
    """Whether a route's dependencies include the signed-in caller."""
    return any(d.call is current_principal or needs_user(d) for d in dependant.dependencies)


def document_roles(routes: Iterable[BaseRoute]) -> None:
    """Append who may call it to each API route's OpenAPI description."""
    for route in routes:
        if not isinstance(route, APIRoute):
            continue
        roles = roles_of(route.dependant)
        if roles is not None:
            who = "Role: " + " or ".join(sorted(r.value for r in roles)) + "."
        elif needs_user(route.dependant):
            who = "Any signed-in user."
        else:
            continue
        if who not in route.description:  # the routers are shared by every app built
            route.description = f"{route.description}\n\n{who}" if route.description else who


AdminUser = Annotated[Principal, Depends(require_role(Role.ADMIN))]
OperatorUser = Annotated[Principal, Depends(require_role(Role.OPERATOR))]
OfficerUser = Annotated[Principal, Depends(require_role(Role.OFFICER))]
AuditorUser = Annotated[Principal, Depends(require_role(Role.AUDITOR))]


def actor(principal: Principal) -> str:
    """How an API caller appears in the audit trail."""
    return f"user:{principal.name}"
