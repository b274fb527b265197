"""Every answer of the API carries the browser security headers (no sniffing, framing,
caching or Referer; HSTS in production), and production serves no CDN-loaded docs pages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from node_support import TestClient, bearer, self_signed_tls
from sqlalchemy import Engine

from node.api.app import HSTS_MAX_AGE_S, create_app
from node.audit import ui
from node.db.models import Role
from node.services.galleries import GallerySet
from node.settings import Settings

COMMON = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "content-security-policy": "frame-ancestors 'none'",
}


def answers(client: TestClient, make_token: object) -> dict[str, httpx.Response]:
    """One answer of each kind: public, authenticated, token-issuing, error, 413, schema."""
    admin = bearer(make_token(Role.ADMIN, name="root"))  # type: ignore[operator]
    client.post("/users", headers=admin, json={"name": "op", "role": "operator"})
    json_413 = {**admin, "Content-Type": "application/json"}
    issued = client.post("/users/op/tokens", headers=admin, json={"expires_days": 1})
    operator = bearer(issued.json()["token"])
    out = {
        "health": client.get("/health"),
        "me": client.get("/users/me", headers=admin),
        "token": issued,
        "subjects": client.get("/subjects", headers=operator),
        "no token": client.get("/subjects"),
        "404": client.get("/nope"),
        "413": client.post("/users", headers=json_413, content=b"x" * 2_000_000),
        "schema": client.get("/openapi.json"),
    }
    statuses = {name: r.status_code for name, r in out.items()}
    assert statuses == {
        **{"health": 200, "me": 200, "token": 201, "subjects": 200, "schema": 200},
        **{"no token": 401, "404": 404, "413": 413},
    }
    return out


def test_every_answer_carries_the_headers(client: TestClient, make_token: object) -> None:
    for name, r in answers(client, make_token).items():
        assert {k: r.headers.get(k) for k in COMMON} == COMMON, name
        assert "strict-transport-security" not in r.headers, name  # development: maybe no TLS


def test_the_audit_dashboard_keeps_its_policy_and_cannot_be_framed(client: TestClient) -> None:
    """The page's own policy (inline script and style, fetches to itself) still applies, so it
    still works; framing is refused on top."""
    r = client.get("/audit/ui")
    assert r.status_code == 200 and r.text == ui.PAGE
    (policy,) = r.headers.get_list("content-security-policy")
    assert policy == (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; frame-ancestors 'none'"
    )
    assert r.headers["cache-control"] == "no-store" and r.headers["x-frame-options"] == "DENY"


def test_development_keeps_the_docs_pages(client: TestClient) -> None:
    for path in ("/docs", "/redoc"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["x-frame-options"] == "DENY", path


@pytest.fixture
def production(
    settings: Settings, engine: Engine, galleries: GallerySet, tmp_path: Path
) -> Iterator[TestClient]:
    """The app with production settings (TLS files, a real country, owner-only files)."""
    cert, key = self_signed_tls(tmp_path)
    settings.data_dir.mkdir(mode=0o700)
    if settings.sqlite_path is not None:
        settings.sqlite_path.chmod(0o600)
    prod = settings.model_copy(
        update={
            "environment": "production",
            "country": "DE",
            "tls_cert_file": cert,
            "tls_key_file": key,
        }
    )
    app: FastAPI = create_app(prod, engine=engine, gallery=galleries)
    with TestClient(app) as c:
        yield c


def test_production_adds_hsts_and_serves_no_docs_pages(
    production: TestClient, make_token: object
) -> None:
    for name, r in answers(production, make_token).items():
        assert {k: r.headers.get(k) for k in COMMON} == COMMON, name
        assert r.headers.get("strict-transport-security") == f"max-age={HSTS_MAX_AGE_S}", name
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        r = production.get(path)
        assert r.status_code == 404 and r.json()["error"] == "not_found", path
    schema = production.get("/openapi.json")
    assert schema.status_code == 200 and schema.json()["info"]["title"] == "bdx node"
    assert production.get("/audit/ui").status_code == 200


@pytest.mark.parametrize("environment", ["development", "production"])
def test_an_unexpected_failure_carries_the_headers(
    settings: Settings,
    engine: Engine,
    galleries: GallerySet,
    tmp_path: Path,
    environment: str,
) -> None:
    """A 500 is answered by Starlette's outermost middleware, outside SecurityHeaders: it
    carried none of the headers. Its handler adds them now."""
    from starlette.testclient import TestClient as Raw

    update: dict[str, object] = {"environment": environment}
    if environment == "production":
        cert, key = self_signed_tls(tmp_path)
        update |= {"tls_cert_file": cert, "tls_key_file": key, "country": "DE"}
        settings.data_dir.mkdir(mode=0o700)
        if settings.sqlite_path is not None:
            settings.sqlite_path.chmod(0o600)
    app: FastAPI = create_app(settings.model_copy(update=update), engine=engine, gallery=galleries)

    @app.get("/fails")
    def fails() -> None:
        raise RuntimeError("a defect")

    with Raw(app, raise_server_exceptions=False) as c:
        r = c.get("/fails")
    assert r.status_code == 500 and r.json()["error"] == "internal_error"
    assert {k: r.headers.get(k) for k in COMMON} == COMMON
    assert ("strict-transport-security" in r.headers) is (environment == "production")
