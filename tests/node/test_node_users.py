"""Users, roles and tokens: the service and the `bdx users` commands."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from node_support import cli
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from node.db.models import ApiToken, AuditEvent, Role, User
from node.errors import NotFoundError
from node.service_errors import AuthenticationError, ConflictError, InvalidRequestError
from node.services.users import UserService


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_token_round_trip_stores_only_a_hash(session: Session) -> None:
    users = UserService(session)
    users.add_user("anna", Role.OFFICER, actor="t")
    issued = users.issue_token("anna", expires_days=30, actor="t")
    principal = users.authenticate(issued.token)
    assert (principal.name, principal.role) == ("anna", Role.OFFICER)
    row = session.scalars(select(ApiToken)).one()
    assert row.token_hash == hashlib.sha256(issued.token.encode()).hexdigest()
    # bdx_<16 hex id>_<43 base64url characters>: the secret may itself hold "_"
    secret = issued.token.removeprefix(f"bdx_{issued.token_id}_")
    assert len(secret) == 43
    assert secret not in row.token_hash and secret not in row.token_id


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "malformed_token"),
        ("Bearer abc", "malformed_token"),
        ("bdx_0123456789abcdef_short", "malformed_token"),
        ("bdx_0123456789abcdef_" + "A" * 43, "unknown_token"),
    ],
)
def test_bad_tokens(session: Session, token: str, reason: str) -> None:
    with pytest.raises(AuthenticationError) as info:
        UserService(session).authenticate(token)
    assert info.value.reason == reason


def test_tampered_secret_is_unknown(session: Session) -> None:
    users = UserService(session)
    users.add_user("anna", Role.OFFICER, actor="t")
    token = users.issue_token("anna", expires_days=1, actor="t").token
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(AuthenticationError) as info:
        users.authenticate(forged)
    assert info.value.reason == "unknown_token"


def test_expired_revoked_and_disabled(session: Session) -> None:
    clock = Clock()
    users = UserService(session, clock=clock)
    users.add_user("anna", Role.OPERATOR, actor="t")
    token = users.issue_token("anna", expires_days=2, actor="t")
    clock.now += timedelta(days=2)
    with pytest.raises(AuthenticationError) as info:
        users.authenticate(token.token)
    assert info.value.reason == "token_expired"

    clock.now = datetime(2030, 1, 1, tzinfo=UTC)
    users.revoke_token(token.token_id, actor="t")
    with pytest.raises(AuthenticationError) as info:
        users.authenticate(token.token)
    assert info.value.reason == "token_revoked"

    other = users.issue_token("anna", expires_days=2, actor="t")
    users.disable_user("anna", actor="t")
    with pytest.raises(AuthenticationError) as info:
        users.authenticate(other.token)
    assert info.value.reason == "user_disabled"
    with pytest.raises(ConflictError) as conflict:
        users.issue_token("anna", expires_days=1, actor="t")
    assert conflict.value.reason == "user_disabled"


def test_user_and_token_refusals(session: Session) -> None:
    users = UserService(session, token_max_days=10)
    users.add_user("anna", Role.ADMIN, actor="t")
    with pytest.raises(ConflictError):
        users.add_user("anna", Role.OFFICER, actor="t")
    with pytest.raises(InvalidRequestError) as info:
        users.add_user("Anna Smith", Role.OFFICER, actor="t")
    assert info.value.reason == "bad_user_name"
    for days in (0, 11):
        with pytest.raises(InvalidRequestError) as info:
            users.issue_token("anna", expires_days=days, actor="t")
        assert info.value.reason == "bad_token_lifetime"
    with pytest.raises(NotFoundError):
        users.issue_token("nobody", expires_days=1, actor="t")
    with pytest.raises(NotFoundError):
        users.revoke_token("0123456789abcdef", actor="t")
    with pytest.raises(NotFoundError):
        users.disable_user("nobody", actor="t")


def test_a_name_added_by_another_admin_meanwhile_is_user_exists(
    sessions: sessionmaker[Session],
) -> None:
    """Two admins add the same name at once: both look-ups find nothing, one insert wins and
    the unique constraint refuses the other, which was an IntegrityError (a 500 over HTTP; 25
    of 25 concurrent pairs on SQLite). The other admin's add runs, committed, in the second
    session's flush: after its look-up, before its insert."""
    with sessions() as first, sessions() as second:

        def meanwhile(*_: object) -> None:
            UserService(first).add_user("anna", Role.OFFICER, actor="user:admin1")

        event.listen(second, "before_flush", meanwhile, once=True)
        with pytest.raises(ConflictError) as info:
            UserService(second).add_user("anna", Role.AUDITOR, actor="user:admin2")
        assert (info.value.reason, info.value.message) == (
            "user_exists",
            "user 'anna' already exists",
        )
        # The refused session is usable: its transaction was rolled back.
        assert UserService(second).get("anna").role is Role.OFFICER
    with sessions() as s:
        assert [(u.name, u.role) for u in s.scalars(select(User))] == [("anna", Role.OFFICER)]
        events = s.scalars(select(AuditEvent)).all()
        assert [(e.actor, e.action) for e in events] == [("user:admin1", "user.add")]


def test_admin_actions_are_audited_without_secrets(session: Session) -> None:
    users = UserService(session)
    # An officer: the only admin's only token is not revoked over the API (last_admin).
    users.add_user("anna", Role.OFFICER, actor="local:root")
    issued = users.issue_token("anna", expires_days=1, actor="local:root")
    users.revoke_token(issued.token_id, actor="local:root")
    events = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    assert [(e.actor, e.action, e.target) for e in events] == [
        ("local:root", "user.add", "anna"),
        ("local:root", "token.issue", "anna"),
        ("local:root", "token.revoke", "anna"),
    ]
    assert all(issued.token not in json.dumps(e.details) for e in events)


def test_users_cli(
    session: Session,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BDX_DATABASE_URL", db_url)
    assert cli(["users", "add", "anna", "--role", "admin"], capsys)[:2] == (
        0,
        "added anna (admin)\n",
    )
    code, out, err = cli(["users", "token", "anna", "--expires-days", "3"], capsys)
    assert code == 0 and "not shown again" in err
    token = out.strip()
    assert UserService(session).authenticate(token).name == "anna"

    code, out, _ = cli(["users", "list", "--json"], capsys)
    listing = json.loads(out)
    assert listing[0]["name"] == "anna" and listing[0]["role"] == "admin"
    token_id = listing[0]["tokens"][0]["token_id"]
    assert token.startswith(f"bdx_{token_id}_")

    assert cli(["users", "revoke-token", token_id], capsys)[0] == 0
    session.expire_all()
    with pytest.raises(AuthenticationError):
        UserService(session).authenticate(token)
    assert cli(["users", "disable", "anna"], capsys)[0] == 0
    code, out, _ = cli(["users", "list"], capsys)
    assert "disabled" in out


def test_users_cli_json(
    session: Session,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`users add`, `disable` and `revoke-token` print one JSON object under --json (they had
    no --json); `add` prints no token, and a refusal under --json is the usual one line on
    stderr with nothing on stdout."""
    monkeypatch.setenv("BDX_DATABASE_URL", db_url)
    code, out, _ = cli(["users", "add", "anna", "--role", "officer", "--json"], capsys)
    added = json.loads(out)
    assert code == 0 and set(added) == {"name", "role", "active", "created_at"}
    assert (added["name"], added["role"], added["active"]) == ("anna", "officer", True)
    assert datetime.fromisoformat(added["created_at"])
    code, out, err = cli(["users", "add", "anna", "--role", "admin", "--json"], capsys)
    assert (code, out) == (3, "") and err.rstrip().endswith("[user_exists]"), err
    assert len(err.splitlines()) == 1

    code, out, _ = cli(["users", "token", "anna", "--json"], capsys)
    token_id = json.loads(out)["token_id"]
    code, out, _ = cli(["users", "revoke-token", token_id, "--json"], capsys)
    revoked = json.loads(out)
    assert code == 0 and set(revoked) == {"token_id", "user", "revoked_at"}
    assert (revoked["token_id"], revoked["user"]) == (token_id, "anna")
    assert datetime.fromisoformat(revoked["revoked_at"])
    code, out, err = cli(["users", "revoke-token", "0123456789abcdef", "--json"], capsys)
    assert (code, out) == (4, "") and err.rstrip().endswith("[unknown_token]"), err

    code, out, _ = cli(["users", "disable", "anna", "--json"], capsys)
    assert code == 0 and json.loads(out) == {"name": "anna", "role": "officer", "active": False}
    code, out, err = cli(["users", "disable", "ghost", "--json"], capsys)
    assert (code, out) == (4, "") and err.rstrip().endswith("[unknown_user]"), err


@pytest.mark.parametrize(
    ("args", "code", "reason"),
    [
        (["users", "token", "ghost"], 4, "unknown_user"),
        (["users", "revoke-token", "0123456789abcdef"], 4, "unknown_token"),
        (["users", "disable", "ghost"], 4, "unknown_user"),
        (["users", "token", "anna"], 3, "user_disabled"),
    ],
)
def test_users_cli_errors(
    engine: object,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    reason: str,
) -> None:
    monkeypatch.setenv("BDX_DATABASE_URL", db_url)
    assert cli(["users", "add", "anna", "--role", "officer"], capsys)[0] == 0
    assert cli(["users", "disable", "anna"], capsys)[0] == 0
    got, _, err = cli(args, capsys)
    assert got == code
    assert err.startswith("bdx: error: ") and err.rstrip().endswith(f"[{reason}]")


@pytest.mark.parametrize("name", ["UPPER", "Bad Name", ".dot", "a" * 65])
def test_users_add_a_bad_name_is_a_usage_error(
    engine: object,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
) -> None:
    """The name is the command's argument: one the node refuses was exit 3, bad input data
    (README: a bad argument is 2). The API still answers 422 ``bad_user_name``."""
    monkeypatch.setenv("BDX_DATABASE_URL", db_url)
    code, out, err = cli(["users", "add", name, "--role", "officer"], capsys)
    assert (code, out) == (2, ""), err
    assert f"Invalid value for 'name': user name {name!r} must be 1-64 of a-z" in err, err
    assert cli(["users", "list", "--json"], capsys)[1].strip() == "[]"


def test_users_cli_bad_role(capsys: pytest.CaptureFixture[str]) -> None:
    """The refusal is the choice's own words (it began with pydantic's ``Value error, ``)."""
    code, _, err = cli(["users", "add", "anna", "--role", "king"], capsys)
    assert code == 2 and "--role" in err
    assert err.splitlines() == [
        "bdx: error: Invalid value for '--role': 'king' is not one of 'officer', 'operator', "
        "'auditor', 'admin'. (see 'bdx users add -h') [usage]"
    ]


def test_users_cli_bad_lifetime_is_a_usage_error(
    session: Session,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`users token --expires-days 0` was exit 3, bad input data; it is a bad option value:
    exit 2 naming the option, and no token is issued."""
    monkeypatch.setenv("BDX_DATABASE_URL", db_url)
    assert cli(["users", "add", "anna", "--role", "admin"], capsys)[0] == 0
    for days in ("0", "366"):
        code, out, err = cli(["users", "token", "anna", "--expires-days", days], capsys)
        assert (code, out) == (2, "") and "Invalid value for --expires-days" in err, err
        assert f"1 to 365 days, not {days}" in err
    assert session.scalars(select(ApiToken)).all() == []
