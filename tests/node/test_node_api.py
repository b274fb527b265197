"""The HTTP API through TestClient: every error path (status, reason, detail) and the
operator, admin and auditor resources."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from node_support import TestClient, bearer, enrol
from PIL import Image
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session, sessionmaker

from node.api.app import create_app, port_schema
from node.db.models import ApiToken, Role
from node.services.galleries import GallerySet
from node.settings import Settings


def error(response: object, status: int, reason: str) -> str:
    assert getattr(response, "status_code", None) == status, getattr(response, "text", "")
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error", "detail"} and body["error"] == reason
    assert isinstance(body["detail"], str) and body["detail"]
    return str(body["detail"])


@pytest.fixture
def admin(make_token: object) -> dict[str, str]:
    return bearer(make_token(Role.ADMIN, name="root"))  # type: ignore[operator]


@pytest.fixture
def operator(make_token: object) -> dict[str, str]:
    return bearer(make_token(Role.OPERATOR, name="op"))  # type: ignore[operator]


# ----------------------------------------------------------------- authentication


def test_health_needs_no_token(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body == {
        "status": "ok",
        "country": "XA",
        "version": body["version"],
        "gallery": True,
        "missing_from_gallery": 0,
        "pki": [],
    }


def test_missing_token(client: TestClient) -> None:
    r = client.get("/subjects")
    assert "Authorization: Bearer" in error(r, 401, "missing_token")
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="bdx"'


def test_non_bearer_scheme_is_missing_token(client: TestClient) -> None:
    r = client.get("/subjects", headers={"Authorization": "Basic YTpi"})
    error(r, 401, "missing_token")


@pytest.mark.parametrize(
    ("token", "reason"),
    [("nonsense", "malformed_token"), ("bdx_0123456789abcdef_" + "x" * 43, "unknown_token")],
)
def test_bad_token(client: TestClient, token: str, reason: str) -> None:
    r = client.get("/subjects", headers=bearer(token))
    error(r, 401, reason)
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


def test_revoked_token(client: TestClient, make_token: object, admin: dict[str, str]) -> None:
    token = make_token(Role.OPERATOR, name="op")  # type: ignore[operator]
    assert client.get("/subjects", headers=bearer(token)).status_code == 200
    token_id = token.split("_")[1]
    assert client.delete(f"/tokens/{token_id}", headers=admin).json()["revoked_at"]
    error(client.get("/subjects", headers=bearer(token)), 401, "token_revoked")


def test_expired_token(
    client: TestClient, make_token: object, sessions: sessionmaker[Session]
) -> None:
    token = make_token(Role.OPERATOR)  # type: ignore[operator]
    with sessions() as s:
        past = datetime.now(UTC) - timedelta(seconds=1)
        s.execute(update(ApiToken).values(expires_at=past))
        s.commit()
    error(client.get("/subjects", headers=bearer(token)), 401, "token_expired")


def test_disabled_user(client: TestClient, make_token: object, admin: dict[str, str]) -> None:
    token = make_token(Role.OPERATOR, name="op")  # type: ignore[operator]
    assert client.post("/users/op/disable", headers=admin).json()["active"] is False
    error(client.get("/subjects", headers=bearer(token)), 401, "user_disabled")


@pytest.mark.parametrize(
    ("role", "method", "path"),
    [
        (Role.OPERATOR, "GET", "/users"),
        (Role.OFFICER, "POST", "/users"),
        (Role.AUDITOR, "DELETE", "/tokens/0123456789abcdef"),
        (Role.ADMIN, "GET", "/subjects"),
        (Role.OFFICER, "DELETE", "/subjects/x"),
        (Role.AUDITOR, "GET", "/gallery/statistics"),
        (Role.OPERATOR, "GET", "/audit-events"),
        (Role.ADMIN, "GET", "/audit-events"),
    ],
)
def test_wrong_role(
    client: TestClient, make_token: object, role: Role, method: str, path: str
) -> None:
    token = make_token(role)  # type: ignore[operator]
    r = client.request(method, path, headers=bearer(token), json={"name": "x", "role": "admin"})
    assert f"role {role.value} may not do this" in error(r, 403, "wrong_role")


def test_who_am_i_for_any_role(client: TestClient, make_token: object) -> None:
    token = make_token(Role.AUDITOR, name="aud")  # type: ignore[operator]
    assert client.get("/users/me", headers=bearer(token)).json() == {
        "name": "aud",
        "role": "auditor",
    }


# ----------------------------------------------------------------- request errors


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": ',
        b'{"name": "anna", "role": ' + b"9" * 5000 + b"}",  # beyond the parser's digits
        b'{"name": "\xff\xfe"}',  # not UTF-8
        b"[" * 100_000 + b"]" * 100_000,  # nested beyond the parser's depth
    ],
    ids=["truncated", "huge-number", "not-utf8", "deep"],
)
def test_malformed_json(client: TestClient, admin: dict[str, str], body: bytes) -> None:
    """Every body the JSON parser gives up on is one reason (some were 'bad_request')."""
    r = client.post("/users", headers={**admin, "Content-Type": "application/json"}, content=body)
    error(r, 400, "malformed_json")


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_json_sent_as_another_type_is_415(
    client: TestClient, admin: dict[str, str], content_type: str | None
) -> None:
    """``curl -d`` sends a form type: the answer says to send JSON, not that the object is
    missing."""
    headers = {**admin, **({"Content-Type": content_type} if content_type else {})}
    r = client.post("/users", headers=headers, content=b'{"name": "anna", "role": "officer"}')
    assert "application/json" in error(r, 415, "unsupported_media_type")


def test_a_nul_in_a_path_or_query_value_is_bad_input(
    client: TestClient, admin: dict[str, str], operator: dict[str, str], engine: Engine
) -> None:
    """PostgreSQL stores no NUL in text: it was a 500 with the statement's parameters in the
    log; SQLite stores it, and the name is simply unknown."""
    postgres = engine.dialect.name == "postgresql"
    for method, path, who in (
        ("GET", "/subjects/a%00b", operator),
        ("DELETE", "/subjects/a%00b", operator),
        ("POST", "/users/a%00b/disable", admin),
    ):
        r = client.request(method, path, headers=who)
        assert r.status_code == (422 if postgres else 404), (path, r.text)
        assert r.json()["error"] in ("invalid_request", "unknown_subject", "unknown_user")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"name": "anna", "role": "king"}, "body.role"),
        ({"name": "anna"}, "body.role: Field required"),
        ({"name": "anna", "role": "admin", "extra": 1}, "body.extra"),
    ],
)
def test_invalid_body(
    client: TestClient, admin: dict[str, str], body: object, fragment: str
) -> None:
    assert fragment in error(
        client.post("/users", headers=admin, json=body), 422, "invalid_request"
    )


def test_refused_user_name(client: TestClient, admin: dict[str, str]) -> None:
    r = client.post("/users", headers=admin, json={"name": "Anna Smith", "role": "officer"})
    error(r, 422, "bad_user_name")


def test_oversized_body_declared(client: TestClient, admin: dict[str, str]) -> None:
    body = b'{"name": "' + b"a" * 2_000_000 + b'", "role": "admin"}'
    r = client.post("/users", headers={**admin, "Content-Type": "application/json"}, content=body)
    assert "exceeds 1048576" in error(r, 413, "payload_too_large")


def test_oversized_body_streamed(client: TestClient, admin: dict[str, str]) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(40):
            yield b"a" * 65536
        yield b'", "role": "admin"}'

    headers = {**admin, "Content-Type": "application/json"}
    r = client.post("/users", headers=headers, content=chunks())
    assert "exceeds 1048576" in error(r, 413, "payload_too_large")


def _header_only_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring width x height, with one pixel of data behind it."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    small = buf.getvalue()
    ihdr = struct.pack(">II", width, height) + small[24:29]
    return small[:16] + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + small[33:]


def test_a_finger_image_too_large_is_refused_from_its_header(
    client: TestClient, make_token: object, operator: dict[str, str]
) -> None:
    """7999 x 7999 pixels is a ten-print card, not a finger: 413 before decoding (it was
    decoded first: a 359 KiB float TIFF of that size took 1.2 GB and 3 s per request)."""
    image = _header_only_png(7999, 7999)
    officer = bearer(make_token(Role.OFFICER))  # type: ignore[operator]
    fingers = [{"position": 1, "image": base64.b64encode(image).decode()}]
    r = client.post("/search/fingerprint", headers=officer, json={"fingers": fingers})
    assert "1600 per side" in error(r, 413, "too_large")
    params = {"subject": "big-1", "modality": "fingerprint", "finger_position": 1}
    r = client.post("/gallery/enrol", headers=operator, params=params, content=image)
    assert "1600 per side" in error(r, 413, "too_large")


def test_duplicate_user(client: TestClient, admin: dict[str, str]) -> None:
    body = {"name": "anna", "role": "officer"}
    assert client.post("/users", headers=admin, json=body).status_code == 201
    error(client.post("/users", headers=admin, json=body), 409, "user_exists")


def test_unknown_route_and_method(client: TestClient, admin: dict[str, str]) -> None:
    error(client.get("/nowhere"), 404, "not_found")
    error(client.patch("/users", headers=admin), 405, "method_not_allowed")


@pytest.mark.parametrize(
    ("method", "path", "reason"),
    [
        ("GET", "/subjects/ghost", "unknown_subject"),
        ("DELETE", "/subjects/ghost", "unknown_subject"),
        ("PUT", "/subjects/ghost/restrictions", "unknown_subject"),
        ("GET", "/records/0123", "unknown_record"),
        ("PUT", "/records/0123/restrictions", "unknown_record"),
    ],
)
def test_unknown_subject_or_record(
    client: TestClient, operator: dict[str, str], method: str, path: str, reason: str
) -> None:
    r = client.request(method, path, headers=operator, json={})
    assert path.split("/")[2] in error(r, 404, reason)


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/users/ghost/tokens"), ("POST", "/users/ghost/disable"), ("DELETE", "/tokens/x")],
)
def test_unknown_user_or_token(
    client: TestClient, admin: dict[str, str], method: str, path: str
) -> None:
    r = client.request(method, path, headers=admin, json={})
    assert r.status_code == 404 and r.json()["error"] in {"unknown_user", "unknown_token"}


def test_bad_restrictions(client: TestClient, operator: dict[str, str]) -> None:
    r = client.put(
        "/subjects/x/restrictions", headers=operator, json={"asylum_nationality": "Syria"}
    )
    assert "asylum_nationality" in error(r, 422, "invalid_request")


def test_bad_query_values(client: TestClient, operator: dict[str, str]) -> None:
    error(client.get("/subjects?limit=0", headers=operator), 422, "invalid_request")


def test_without_gallery_store_deletes_answer_503(
    settings: Settings, engine: Engine, make_token: object
) -> None:
    app = create_app(settings, engine=engine, open_gallery=False)
    token = make_token(Role.OPERATOR)  # type: ignore[operator]
    with TestClient(app) as c:
        r = c.delete("/subjects/x", headers=bearer(token))
        error(r, 503, "store_unavailable")
        assert c.get("/health").json()["gallery"] is False


def test_unexpected_errors_hide_internals(app: FastAPI) -> None:
    def boom() -> None:
        raise RuntimeError("secret internals")

    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom")
    assert "secret" not in error(r, 500, "internal_error")


# ----------------------------------------------------------------- resources


def test_user_administration(client: TestClient, admin: dict[str, str]) -> None:
    r = client.post("/users", headers=admin, json={"name": "anna", "role": "officer"})
    assert r.status_code == 201
    issued = client.post("/users/anna/tokens", headers=admin, json={"expires_days": 7}).json()
    assert issued["token"].startswith(f"bdx_{issued['token_id']}_")
    assert client.get("/users/me", headers=bearer(issued["token"])).json()["name"] == "anna"
    users = {u["name"]: u for u in client.get("/users", headers=admin).json()}
    assert users["anna"]["tokens"][0]["token_id"] == issued["token_id"]
    assert "token" not in users["anna"]["tokens"][0]
    r = client.post("/users/anna/tokens", headers=admin, json={"expires_days": 100000})
    error(r, 422, "bad_token_lifetime")


def test_subjects_records_and_statistics(
    client: TestClient,
    operator: dict[str, str],
    sessions: sessionmaker[Session],
    galleries: GallerySet,
) -> None:
    enrol(sessions, galleries, "case-1", 2)
    enrol(sessions, galleries, "case-2", 1)
    page = client.get("/subjects?limit=1", headers=operator).json()
    assert [s["external_id"] for s in page["items"]] == ["case-1"]
    rest = client.get(f"/subjects?after={page['next_after']}", headers=operator).json()
    assert [(s["external_id"], s["records"]) for s in rest["items"]] == [("case-2", 1)]
    assert rest["next_after"] is None

    subject = client.get("/subjects/case-1", headers=operator).json()
    assert [r["finger_position"] for r in subject["records"]] == [1, 2]
    assert subject["encounters"][0]["source"] == "load-1"
    ref = subject["records"][0]["reference"]
    assert client.get(f"/records/{ref}", headers=operator).json()["state"] == "active"

    restricted = client.put(
        "/subjects/case-1/restrictions",
        headers=operator,
        json={"asylum_nationality": "sy", "purposes": ["asylum"]},
    ).json()
    assert {r["restrictions"]["asylum_nationality"] for r in restricted["records"]} == {"SY"}
    one = client.put(
        f"/records/{ref}/restrictions", headers=operator, json={"no_exchange_consent": True}
    ).json()
    assert one["restrictions"]["no_exchange_consent"] is True

    stats = client.get("/gallery/statistics", headers=operator).json()
    assert stats["stores"]["fingerprint-test-minutiae-v1"]["records"] == 3
    del stats["stores"]
    assert stats == {
        "subjects": 2,
        "records_by_state": {"active": 3},
        "active_by_modality": {"fingerprint": 3},
        "active_by_finger_position": {"1": 2, "2": 1},
    }
    deleted = client.delete("/subjects/case-1", headers=operator).json()
    assert deleted == {"external_id": "case-1", "templates_removed": 2}
    assert len(galleries.references()) == 1
    error(client.get(f"/records/{ref}", headers=operator), 404, "unknown_record")


def test_operator_actions_reach_the_audit_trail(
    client: TestClient,
    operator: dict[str, str],
    make_token: object,
    sessions: sessionmaker[Session],
    galleries: GallerySet,
) -> None:
    enrol(sessions, galleries, "case-1", 1)
    client.put("/subjects/case-1/restrictions", headers=operator, json={"peers": ["FR"]})
    client.delete("/subjects/case-1", headers=operator)
    auditor = bearer(make_token(Role.AUDITOR))  # type: ignore[operator]
    events = client.get("/audit-events?action=subject.delete", headers=auditor).json()["items"]
    assert [(e["actor"], e["target"]) for e in events] == [("user:op", "case-1")]
    page = client.get("/audit-events?limit=2", headers=auditor).json()
    assert len(page["items"]) == 2 and page["next_after"] == page["items"][-1]["id"]
    since = client.get("/audit-events", headers=auditor, params={"since": "2000-01-01T00:00:00"})
    error(since, 422, "invalid_request")  # a timestamp without an offset is ambiguous


def test_openapi_schema_is_typed(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/subjects/{external_id}", "/users", "/audit-events"} <= set(spec["paths"])
    schemas = spec["components"]["schemas"]
    assert {"SubjectOut", "RecordOut", "SharingRestrictions", "ErrorBody"} <= set(schemas)
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    # the errors the routes really answer are documented, each with the ErrorBody shape
    paths = spec["paths"]
    assert {"404", "409", "503"} <= set(paths["/subjects/{external_id}"]["get"]["responses"])
    assert {"404", "409", "415", "500"} <= set(paths["/users"]["post"]["responses"])
    assert "500" in paths["/audit-events"]["get"]["responses"]
    body = paths["/users"]["post"]["responses"]["409"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ErrorBody"}
    export = paths["/audit/log/export"]["get"]["responses"]["200"]["content"]
    assert {"application/json", "text/csv"} <= set(export)
    # the peer routes, in the peer port's schema (the API port's lists none: served on the
    # peer port only): their body (a compact JWS) and the refusals peers really get
    assert not [p for p in paths if p.startswith("/peer/")]
    paths = port_schema(client.app, peer=True)["paths"]
    query = paths["/peer/v1/queries"]["post"]
    assert "application/jose" in query["requestBody"]["content"]
    assert {"403", "413", "422", "500"} <= set(query["responses"])
    assert "revoked" in query["responses"]["403"]["description"]
    assert "404" in paths["/peer/v1/queries/{query_id}"]["get"]["responses"]
    assert {"400", "403", "503"} <= set(paths["/peer/v1/witness"]["post"]["responses"])


def test_openapi_names_the_role_of_every_route(client: TestClient) -> None:
    """The README says the API's roles are in /openapi.json; no operation said which."""
    paths = client.get("/openapi.json").json()["paths"]
    assert paths["/subjects/{external_id}"]["delete"]["description"] == "Role: operator."
    assert paths["/users"]["post"]["description"] == "Role: admin."
    assert paths["/queries"]["post"]["description"] == "Role: officer."
    assert paths["/audit/log/export"]["get"]["description"] == "Role: auditor."
    assert paths["/users/me"]["get"]["description"] == "Any signed-in user."
    for path, ops in paths.items():
        if path == "/health" or path.startswith("/peer/"):
            continue
        for method, op in ops.items():
            assert op["description"].startswith(("Role: ", "Any signed-in")), (method, path)


def test_peer_query_body_limit_fits_the_largest_valid_query() -> None:
    """The peer endpoint reads bodies up to the largest signed query its schema allows (eleven
    64 KiB templates, ~1.29 MB signed), above the 1 MiB JSON default, and no more."""
    import uuid
    from datetime import UTC, datetime

    from certs.pki.bootstrap import build_region
    from node.exchange.messages import (
        MAX_QUERY_BYTES,
        MAX_TEMPLATE_BYTES,
        MAX_TEMPLATES,
        QueryPayload,
        TemplateItem,
        b64url,
        new_nonce,
    )

    th = build_region(["TH", "ID"]).nodes["TH"]
    items = [
        TemplateItem(
            format="iso19794-2:2005", format_version=20, data=b64url(bytes(MAX_TEMPLATE_BYTES))
        )
        for _ in range(MAX_TEMPLATES)
    ]
    query = QueryPayload(
        query_id=uuid.uuid4(),
        created=datetime.now(UTC),
        requester="TH",
        responder="ID",
        nonce=new_nonce(),
        purpose="border_control",
        modality="fingerprint",
        templates=items,
        case_ref="X" * 64,
    )
    from certs import jws
    from node.exchange import params

    token = jws.sign(query.wire(), th.signing_key, [th.signing_cert], typ=params.QUERY_TYP)
    assert 1024 * 1024 < len(token) <= MAX_QUERY_BYTES
    # The peer port reads such a body and refuses one byte over MAX_QUERY_BYTES; the API port
    # (a TestClient's requests carry no client certificate) answers the peer routes' paths as
    # unknown ones: tests/exchange/test_api_port_peer_paths.py.


def test_access_log_holds_route_templates_not_subject_ids(
    client: TestClient, admin: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Subject ids travel in paths and query strings; the access log has the route template,
    the status and the time, never the raw path (uvicorn's own access log is off)."""
    import logging

    with caplog.at_level(logging.INFO, logger="bdx.access"):
        client.get("/subjects/PERSON-19800101-1234", headers=admin)
        client.post("/gallery/enrol?subject=PERSON-19800101-1234&modality=face", headers=admin)
        client.get("/no/such/PERSON-19800101-1234")
        client.get("/openapi.json")  # Starlette's own route, not FastAPI's: named all the same
    lines = [r.getMessage() for r in caplog.records if r.name == "bdx.access"]
    assert len(lines) == 4 and not any("PERSON" in line for line in lines)
    assert lines[0].startswith("GET /subjects/{external_id} ")
    assert lines[1].startswith("POST /gallery/enrol ")
    assert lines[2].startswith("GET <no route> 404 ")
    assert lines[3].startswith("GET /openapi.json 200 ")


@pytest.mark.parametrize(
    ("path", "role"),
    [
        ("/subjects?after=99999999999999999999", Role.OPERATOR),
        ("/audit-events?after=99999999999999999999", Role.AUDITOR),
        ("/audit-events?since=0001-01-01T00:00:00%2B23:00", Role.AUDITOR),
        ("/audit-events?since=9999-12-31T23:59:59-23:00", Role.AUDITOR),
    ],
)
def test_out_of_range_query_values_are_422(
    client: TestClient, make_token: object, path: str, role: Role
) -> None:
    """A cursor beyond 64 bits, or a time that leaves the calendar once in UTC, was a 500."""
    r = client.get(path, headers=bearer(make_token(role)))  # type: ignore[operator]
    assert (r.status_code, r.json()["error"]) == (422, "invalid_request"), r.text


def test_audit_filter_refuses_an_instant_outside_the_calendar() -> None:
    from datetime import datetime, timedelta, timezone

    from node.audit import AuditFilter, AuditQueryError

    early = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=23)))
    with pytest.raises(AuditQueryError) as info:
        AuditFilter(since=early)
    assert info.value.reason == "bad_filter"


def test_authentication_gives_its_connection_back(
    sessions: object, settings: Settings, make_token: object
) -> None:
    """The bearer check reads the database in a dependency; its connection is released before
    the handler waits for a worker thread (held, 15 authenticated requests starved the 4
    threads of connections: a 30 s stall, then 500s)."""
    from types import SimpleNamespace

    from fastapi import Request
    from fastapi.security import HTTPAuthorizationCredentials

    from node.api.deps import current_principal
    from node.services.users import TokenUses

    token = make_token(Role.OPERATOR)  # type: ignore[operator]
    app = SimpleNamespace(state=SimpleNamespace(token_uses=TokenUses()))
    request = Request({"type": "http", "app": app})
    with sessions() as session:  # type: ignore[operator]
        creds = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
        assert current_principal(request, session, settings, creds).role is Role.OPERATOR
        assert not session.in_transaction()


def test_a_database_pool_timeout_is_a_503(
    client: TestClient, operator: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import TimeoutError as PoolTimeoutError

    from node.services.subjects import SubjectService

    def busy(*args: object, **kwargs: object) -> None:
        raise PoolTimeoutError("QueuePool limit of size 5 overflow 10 reached")

    monkeypatch.setattr(SubjectService, "page", busy)
    r = client.get("/subjects", headers=operator)
    assert (r.status_code, r.json()["error"]) == (503, "database_busy")
    assert r.headers["retry-after"] == "1"


def test_a_change_lost_to_another_request_is_a_409(
    client: TestClient, operator: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Restrictions edited while the subject is deleted: the update matches no rows any more
    (StaleDataError), a conflict to retry, not a 500."""
    from sqlalchemy.orm.exc import StaleDataError

    from node.services.subjects import SubjectService

    def stale(*args: object, **kwargs: object) -> None:
        raise StaleDataError("UPDATE statement on table 'template_records' expected 1 row")

    monkeypatch.setattr(SubjectService, "page", stale)
    r = client.get("/subjects", headers=operator)
    assert (r.status_code, r.json()["error"]) == (409, "changed_meanwhile")
