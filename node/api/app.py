"""The application factory: ``create_app(settings)`` wires settings, database, gallery,
limits, security headers, error handlers and the routers.

To add a resource: write ``node/api/routers/<resource>.py`` with an ``APIRouter`` (wire schemas
in ``node/api/schemas/<resource>.py``, role via ``node.api.deps`` aliases, work in a service)
and add it to ``ROUTERS`` below.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from importlib.metadata import version
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from sqlalchemy import Engine
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from certs.pki.asgi import peer_der
from matcher.search import fingerprint as fingerprint_search
from node.api.access import AccessLog
from node.api.deps import document_roles
from node.api.errors import StopCutOff, install_error_handlers
from node.api.limits import BodySizeLimit
from node.api.routers import (
    audit,
    auditlog,
    gallery,
    health,
    hits,
    peers,
    queries,
    quota,
    search,
    subjects,
    users,
)
from node.db.setup import open_database
from node.exchange import router as peer_router
from node.exchange.messages import MAX_QUERY_BYTES
from node.exchange.setup import exchange_running
from node.services import params
from node.services.erasure import erasing
from node.services.galleries import GallerySet, require_galleries
from node.services.records import GalleryIndex, RecordService
from node.services.users import (
    AdminWatch,
    TokenUses,
    recording_token_uses,
    watching_admin_tokens,
)
from node.settings import Settings

log = logging.getLogger(__name__)

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    users.router,
    subjects.router,
    hits.router,
    gallery.router,
    search.router,
    audit.router,
    auditlog.router,
    queries.router,
    quota.router,
    peers.router,
    peer_router.router,
)
#: Path prefixes that take image uploads (``max_upload_bytes``); the rest take JSON.
UPLOAD_PREFIXES: tuple[str, ...] = ("/gallery/enrol", "/search", "/queries")
#: HSTS lifetime in production: one year, what browsers' HSTS preload lists ask for; a node
#: serves its API over TLS only, so there is no plain-HTTP page to keep reachable.
HSTS_MAX_AGE_S = 365 * 24 * 3600


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    gallery: GalleryIndex | None = None,
    open_gallery: bool = True,
) -> FastAPI:
    """Build the node's ASGI app.

    ``engine`` defaults to one for ``settings.database_url``. In development the schema is
    upgraded to the latest migration; otherwise it must already be (``bdx db upgrade``).
    ``gallery`` is the gallery store; by default (``open_gallery``) the app opens the
    galleries under ``settings.gallery_dir`` at start-up and closes them at shutdown. Without
    one, endpoints that need it answer 503. At start-up the database and the gallery are
    reconciled (see :mod:`node.services.records`); while the app runs, deleted records'
    templates are erased from the gallery files, and deletions whose gallery write failed
    are finished (:mod:`node.services.erasure`).
    """
    settings.check_safe()
    engine, sessions = open_database(settings, engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
        # Fingerprint search's compiled stages are loaded now, not on the first query.
        await anyio.to_thread.run_sync(fingerprint_search.warm_up)
        owned = None
        if app.state.gallery is None and open_gallery:
            owned = await anyio.to_thread.run_sync(GallerySet.open, settings.gallery_path)
            app.state.gallery = owned
        try:
            await anyio.to_thread.run_sync(check_stores, app)
            # The exchange first: its log mirrors node actions, the start-up reconcile's too.
            # Tokens' last uses are written in the background, and once more at shutdown.
            async with (
                recording_token_uses(
                    app.state.token_uses, app.state.sessions, params.TOKEN_USE_INTERVAL_S
                ),
                # The admins' tokens: a WARNING before the last expires, an ERROR once none.
                watching_admin_tokens(app.state.admin_watch, params.ADMIN_TOKEN_CHECK_INTERVAL_S),
                exchange_running(app, settings),
            ):
                galleries = app.state.gallery
                if galleries is not None:
                    await anyio.to_thread.run_sync(_reconcile, app)
                    await anyio.to_thread.run_sync(galleries.warm)
                async with (
                    erasing(galleries, settings.gallery_erase_interval_s, app.state.sessions)
                    if isinstance(galleries, GallerySet)
                    else nullcontext()
                ):
                    yield
        finally:
            if owned is not None:
                app.state.gallery = None
                owned.close()

    # Swagger UI and ReDoc pull their scripts from a CDN (unpinned, no integrity hash) into the
    # page where users paste bearer tokens: development only. /openapi.json stays for tools.
    docs = settings.environment == "development"
    app = FastAPI(
        title="bdx node",
        version=version("bdx"),
        summary=f"Biometric hit/no-hit exchange node of {settings.country}",
        debug=settings.debug,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        swagger_ui_oauth2_redirect_url="/docs/oauth2-redirect" if docs else None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = sessions
    app.state.gallery = gallery
    app.state.token_uses = TokenUses()  # noted by authentication, see recording_token_uses
    app.state.missing_from_gallery = 0  # counted by the start-up reconcile
    # The lifespan looks at start and hourly; the window follows the longest token lifetime.
    app.state.admin_watch = AdminWatch(sessions, token_max_days=settings.token_max_days)
    install_error_handlers(app)
    app.add_middleware(StopCutOff)  # innermost: the access log and the headers see its 503
    app.add_middleware(AccessLog)  # it reads the matched route after routing
    app.add_middleware(
        BodySizeLimit,
        default=settings.max_json_bytes,
        overrides=[
            *((prefix, settings.max_upload_bytes) for prefix in UPLOAD_PREFIXES),
            # A peer's signed query: as large as the message schema allows, and no larger.
            (peer_router.router.prefix + "/queries", MAX_QUERY_BYTES),
        ],
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    # Outermost: its headers reach every answer, the limits' 413 and CORS preflights included.
    app.add_middleware(SecurityHeaders, hsts=settings.environment == "production")
    # Outside even those: a peer route's path on the API port is an unknown path there.
    app.add_middleware(PeerPathsOffThePeerPort, prefix=peer_router.router.prefix)
    # A 500 is answered outside every middleware (Starlette's ServerErrorMiddleware): its
    # handler (node.api.errors) adds these itself.
    app.state.security_headers = {
        **security_headers(hsts=settings.environment == "production"),
        "Content-Security-Policy": FRAME_POLICY,
    }
    for router in ROUTERS:
        document_roles(router.routes)
        app.include_router(router)
    app.openapi = lambda: port_schema(app, peer=False)  # type: ignore[method-assign]
    return app


def port_schema(app: FastAPI, *, peer: bool) -> dict[str, Any]:
    """The OpenAPI schema of one port: the peer routes (``peer``: the peer port's), or every
    other route (the API port's, ``/openapi.json`` there). Each port's lists the routes it
    serves, and those only: the API port answers a peer route's path as a path it does not
    serve (:class:`PeerPathsOffThePeerPort`), and the peer port serves nothing else
    (:class:`node.exchange.serving.PeerRoutesOnly`). Made once per port and app."""
    key = "peer_openapi" if peer else "api_openapi"
    schema: dict[str, Any] | None = getattr(app.state, key, None)
    if schema is None:
        schema = get_openapi(
            title=app.title + (" (peer port)" if peer else ""),
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=[
                route
                for router in ROUTERS
                if (router is peer_router.router) == peer
                for route in router.routes
            ],
        )
        setattr(app.state, key, schema)
    return schema


#: What a request for a peer route's path that did not come through the peer listener asks for
#: instead (:class:`PeerPathsOffThePeerPort`): a path no route has, nor one a slash away from
#: it, and no body limit's prefix (the default limit applies, as to any unknown path).
UNROUTED_PATH = "/-"


class PeerPathsOffThePeerPort:
    """ASGI middleware, outermost: a request for a path under the peer routes' ``prefix``
    that carries no client certificate (one that came to the API port, which never asks for
    one: the peer listener requires one, :func:`node.exchange.serving.peer_config`) goes on as
    a request for :data:`UNROUTED_PATH`. The API port then answers it as any path it does not
    serve, through the same limits, router, access log line (``<no route>``) and headers:
    404 ``not_found``, never the 401/403 (or the 405, or the 307 to the path without its
    slash, or the peer queries' own body limit) that told a caller there the peer routes
    exist. The peer listener's requests, each with the certificate it checked, pass as they
    are."""

    def __init__(self, app: ASGIApp, *, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] in ("http", "websocket")
            and _under(scope["path"], self.prefix)
            and peer_der(scope) is None
        ):
            raw = UNROUTED_PATH.encode("ascii")
            scope = {**scope, "path": UNROUTED_PATH, "raw_path": raw}
        await self.app(scope, receive, send)


def _under(path: str, prefix: str) -> bool:
    """Whether ``path`` is ``prefix`` or below it (``/peer/v1``, ``/peer/v1/...``)."""
    return path == prefix or path.startswith(prefix + "/")


#: The Content-Security-Policy every answer gets (pages with their own policy get it added).
FRAME_POLICY = "frame-ancestors 'none'"


def security_headers(*, hsts: bool) -> dict[str, str]:
    """The headers :class:`SecurityHeaders` sets where a response has none of its own."""
    headers = {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }
    if hsts:
        headers["Strict-Transport-Security"] = f"max-age={HSTS_MAX_AGE_S}"
    return headers


class SecurityHeaders:
    """ASGI middleware: headers that keep browsers from sniffing, framing, caching or leaking
    (Referer) what the API answers (tokens, subjects, search results); HSTS when ``hsts``.

    A response's own ``Cache-Control`` wins; its own ``Content-Security-Policy`` (the audit
    dashboard's) gets ``frame-ancestors 'none'`` added. Only ``frame-ancestors`` is set
    elsewhere: a wider policy would break the pages (Swagger UI) it does not know.
    """

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.defaults = security_headers(hsts=hsts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                for name, value in self.defaults.items():
                    headers.setdefault(name, value)
                policy = headers.get("Content-Security-Policy")
                if policy is None:
                    headers["Content-Security-Policy"] = FRAME_POLICY
                elif "frame-ancestors" not in policy:
                    headers["Content-Security-Policy"] = f"{policy}; {FRAME_POLICY}"
            await send(message)

        await self.app(scope, receive, sending)


def check_stores(app: FastAPI) -> None:
    """Refuse to start on a database and gallery set that disagree beyond repair (a modality's
    gallery missing: :func:`~node.services.galleries.require_galleries`; more gallery records
    without database rows than a crash leaves: :meth:`RecordService.check_orphans`), before
    anything is changed. The lifespan runs it, and ``bdx serve`` before it listens (one line,
    exit 7)."""
    galleries = app.state.gallery
    if isinstance(galleries, GallerySet):
        with app.state.sessions() as session:
            require_galleries(session, galleries)
            RecordService(session, galleries).check_orphans()


def _reconcile(app: FastAPI) -> None:
    with app.state.sessions() as session:
        report = RecordService(session, app.state.gallery).reconcile()
    changed = {k: v for k, v in report.summary().items() if v}
    if changed:
        log.warning("reconciled database and gallery at start-up: %s", changed)
    # Active records whose templates the gallery lacks are never found: /health says so (it
    # was a WARNING among the reconcile's counts, and GET /subjects showed them active).
    app.state.missing_from_gallery = len(report.missing_from_gallery)
    if report.missing_from_gallery:
        log.error(
            "%d active records are not in the gallery and are never found (a database newer "
            "than its gallery, e.g. the two restored from different moments): `bdx gallery "
            "reconcile --list-missing` with this node's settings lists them and their subjects "
            "(it only reads: leave the node running); delete those subjects (`bdx subjects "
            "delete`) and enrol their images again",
            len(report.missing_from_gallery),
        )
