"""``bdx users``: users, roles and API tokens, on the node's own machine (admin by access).

Every change, and every listing of a user's tokens (``token.list``), is recorded in the audit
trail with the actor ``local:<login name>``.
"""

from __future__ import annotations

import inspect
import sys
from datetime import datetime
from json import dumps
from typing import Annotated, Any

import typer

from node.cli._common import (
    ConfigOption,
    JsonOption,
    print_json,
    printable,
    session_for,
    settings_from,
)
from node.cli._output import OutputError, discard_stdout
from node.db.models import Role, User
from node.service_errors import InvalidRequestError
from node.services import params
from node.services.users import (
    USER_NAME_RULE,
    IssuedToken,
    UserService,
    local_actor,
    seconds_left,
    user_name_problem,
)

app = typer.Typer(help="Manage users, roles and API tokens.", no_args_is_help=True)


def _user_name(value: str) -> str:
    """A name ``users add`` refuses is a bad argument (exit 2, before the database is
    opened), not bad input data (3: the service's refusal, as the API's 422)."""
    problem = user_name_problem(value)
    if problem is not None:
        raise typer.BadParameter(problem)
    return value


@app.command()
def add(
    name: Annotated[str, typer.Argument(help=f"login name: {USER_NAME_RULE}", callback=_user_name)],
    role: Annotated[Role, typer.Option(help="what the user may do")],
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Create a user with one role (officer, operator, auditor or admin).

    With --json: {"name", "role", "active", "created_at"} (as in `bdx users list --json`); no
    token is made: `bdx users token` issues one.
    """
    settings = settings_from(config)
    with session_for(settings) as session:
        user = UserService(session).add_user(name, role, actor=local_actor())
        added = {
            "name": user.name,
            "role": user.role.value,
            "active": user.active,
            "created_at": user.created_at.isoformat(),
        }
    if json:
        print_json(added)
    else:
        typer.echo(f"added {added['name']} ({added['role']})")


@app.command()
def token(
    name: Annotated[str, typer.Argument(help="the user the token is for")],
    expires_days: Annotated[
        int | None, typer.Option(help="lifetime in days (default: token_max_days)")
    ] = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Issue an API token. It is printed once; the node keeps only its hash."""
    if sys.stdout is None:  # started with stdout closed (>&-): a token nobody could see
        raise OutputError(
            "standard output is closed: the token is printed once, there; nothing was issued"
        )
    settings = settings_from(config)
    with session_for(settings) as session:
        service = UserService(session, token_max_days=settings.token_max_days)
        try:
            issued = service.issue_token(name, expires_days=expires_days, actor=local_actor())
        except InvalidRequestError as exc:  # a lifetime beyond 1..token_max_days
            if exc.reason != "bad_token_lifetime":
                raise
            raise typer.BadParameter(exc.message, param_hint="--expires-days") from None
        try:
            _deliver(issued, json)
        except (OSError, OutputError) as exc:  # the reader left, or the output failed
            service.revoke_token(
                issued.token_id, actor=local_actor(), why="not_delivered", keep_an_admin=False
            )
            discard_stdout()
            cause = exc if isinstance(exc, OSError) else exc.__cause__  # the guard's OSError
            why = getattr(cause, "strerror", None) or str(exc)
            raise OutputError(
                f"the token could not be printed ({why}); token {issued.token_id} was revoked",
            ) from None
    if not json:
        left = seconds_left(issued.expires_at, service.clock())
        typer.echo(
            f"token {issued.token_id} for {issued.user}, expires {issued.expires_at:%Y-%m-%d} "
            f"(in {_span(left)}); store it now, it is not shown again",
            err=True,
        )


def _deliver(issued: IssuedToken, as_json: bool) -> None:
    """Write the token to stdout and flush it: a token counts once it has left (README)."""
    if as_json:
        expires = issued.expires_at.isoformat() if issued.expires_at else None
        text = dumps(
            {
                "token_id": issued.token_id,
                "token": issued.token,
                "user": issued.user,
                "expires_at": expires,
            },
            indent=2,
            sort_keys=True,
        )
    else:
        text = issued.token
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


@app.command("revoke-token")
def revoke_token(
    token_id: Annotated[str, typer.Argument(help="the token id from `bdx users list`")],
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Revoke an API token at once (again: no change, its first revocation time stays).

    Here, unlike over the API, the last live token of the last active admin holding one may
    be revoked (a stolen admin token); the text output says so, and `bdx users token` makes
    one again. With --json: {"token_id", "user", "revoked_at"}.
    """
    settings = settings_from(config)
    with session_for(settings) as session:
        service = UserService(session)
        row = service.revoke_token(token_id, actor=local_actor(), keep_an_admin=False)
        revoked = {
            "token_id": row.token_id,
            "user": row.user.name,
            "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        }
        note = _admin_note(service, _is_active_admin(row.user))
    if json:
        print_json(revoked)
    else:
        typer.echo(f"revoked {revoked['token_id']}{note}")


@app.command("list")
def list_users(config: ConfigOption = None, json: JsonOption = False) -> None:
    """List users with their roles and tokens (recorded in the audit trail as user.list)."""
    settings = settings_from(config)
    with session_for(settings) as session:
        rows = UserService(session).users_with_tokens(actor=local_actor())
        users: list[dict[str, Any]] = [
            {
                "name": u.name,
                "role": u.role.value,
                "active": u.active,
                "created_at": u.created_at.isoformat(),
                "tokens": [
                    {
                        "token_id": t.token_id,
                        "expires_at": t.expires_at.isoformat() if t.expires_at else None,
                        "revoked": t.revoked_at is not None,
                    }
                    for t in tokens
                ],
            }
            for u, tokens in rows
        ]
    if json:
        print_json(users)
        return
    for u in users:
        state = "active" if u["active"] else "disabled"
        live = [t["token_id"] for t in u["tokens"] if not t["revoked"]]
        typer.echo(f"{u['name']:<24} {u['role']:<9} {state:<8} tokens: {', '.join(live) or '-'}")


@app.command()
def disable(
    name: Annotated[str, typer.Argument(help="the user to disable")],
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Disable a user: every token of theirs stops working at once (again: no change).

    Here, unlike over the API, the last active admin holding a live token may be disabled (a
    stolen admin token); the text output says so, and `bdx users enable` or `add` makes an
    admin again. With --json: {"name", "role", "active": false}.
    """
    settings = settings_from(config)
    with session_for(settings) as session:
        service = UserService(session)
        was_admin = _is_active_admin(service.get(name))
        user = service.disable_user(name, actor=local_actor(), keep_an_admin=False)
        disabled = {"name": user.name, "role": user.role.value, "active": user.active}
        note = _admin_note(service, was_admin)
    if json:
        print_json(disabled)
    else:
        typer.echo(f"disabled {disabled['name']}{note}")


@app.command()
def enable(
    name: Annotated[str, typer.Argument(help="the user to enable again")],
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Enable a disabled user again, under the same name (again: no change).

    Their tokens neither revoked nor expired work again (`bdx users tokens NAME` lists them;
    revoke those that should not). With --json: {"name", "role", "active": true}.
    """
    settings = settings_from(config)
    with session_for(settings) as session:
        user = UserService(session).enable_user(name, actor=local_actor())
        enabled = {"name": user.name, "role": user.role.value, "active": user.active}
    if json:
        print_json(enabled)
    else:
        typer.echo(f"enabled {enabled['name']}")


@app.command()
def role(
    name: Annotated[str, typer.Argument(help="the user whose role changes")],
    new_role: Annotated[Role, typer.Argument(metavar="ROLE", help="the user's new role")],
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Give a user another role; their tokens carry it from their next request (their own
    role again: says it is unchanged, and is recorded again).

    Here, unlike over the API, the last active admin holding a live token may be made
    another role; the text output says so. With --json: {"name", "role", "previous_role", "active"}.
    """
    settings = settings_from(config)
    with session_for(settings) as session:
        service = UserService(session)
        done = service.set_role(name, new_role, actor=local_actor(), keep_an_admin=False)
        user = done.user
        was_admin = user.active and done.previous is Role.ADMIN
        changed = {
            "name": user.name,
            "role": user.role.value,
            "previous_role": done.previous.value,
            "active": user.active,
        }
        note = _admin_note(service, was_admin)
    if json:
        print_json(changed)
    elif changed["previous_role"] == changed["role"]:
        typer.echo(f"{changed['name']}: {changed['role']} already (unchanged, recorded again)")
    else:
        typer.echo(f"{changed['name']}: {changed['previous_role']} -> {changed['role']}{note}")


def _is_active_admin(user: User) -> bool:
    return user.active and user.role is Role.ADMIN


def _admin_note(service: UserService, was_admin: bool) -> str:
    """What the text output adds when the change took the rights (or the token) of an admin
    and no active admin holding a live token is left (the API refuses it, ``last_admin``)."""
    if not was_admin or service.has_usable_admin():
        return ""
    return (
        "; the node has no active admin with a live token now: nobody can manage users over "
        "the API (`bdx users enable NAME` or `bdx users add NAME --role admin`, then "
        "`bdx users token NAME`, makes one)"
    )


@app.command(  # cleaned as a docstring is, or each line's indent breaks the lines
    help=inspect.cleandoc(
        f"""
        List a user's tokens, oldest first: id, created, expires, expires in, revoked, last
        used.

        The running node writes tokens' last uses every {params.TOKEN_USE_INTERVAL_S} s (and as
        it stops), so a last use may lag by that much; "-" (null under --json): not used since
        it was issued. Revoke a token with `bdx users revoke-token ID`. With --json: a list
        of {{"token_id", "created_at", "expires_at", "expires_in", "revoked_at",
        "last_used_at"}} (times ISO 8601, UTC, or null).

        EXPIRES IN is how long the token has left ("expired" once it has); expires_in under
        --json gives it in whole seconds (0 once expired, null for a token without an end).
        """
    )
)
def tokens(
    name: Annotated[str, typer.Argument(help="the user whose tokens to list")],
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    settings = settings_from(config)
    with session_for(settings) as session:
        service = UserService(session)
        rows: list[dict[str, Any]] = [
            {
                "token_id": t.token_id,
                "created_at": t.created_at.isoformat(),
                "expires_at": _iso(t.expires_at),
                "expires_in": seconds_left(t.expires_at, service.clock()),
                "revoked_at": _iso(t.revoked_at),
                "last_used_at": _iso(t.last_used_at),
            }
            for t in service.tokens_of_user(name, actor=local_actor())
        ]
    if json:
        print_json(rows)
        return
    typer.echo(
        f"{'TOKEN':<16}  {'CREATED':<20}  {'EXPIRES':<20}  {'EXPIRES IN':<10}  "
        f"{'REVOKED':<20}  LAST USED"
    )
    for t in rows:
        cells = [
            printable(t["token_id"]).ljust(16),
            _short(t["created_at"]).ljust(20),
            _short(t["expires_at"]).ljust(20),
            _span(t["expires_in"]).ljust(10),
            _short(t["revoked_at"]).ljust(20),
            _short(t["last_used_at"]).ljust(20),
        ]
        typer.echo("  ".join(cells).rstrip())


def _span(seconds: int | None) -> str:
    """``expires_in`` in words: ``13d 04h``, ``5h 20m``, ``expired``; ``-`` for none."""
    if seconds is None:
        return "-"
    if seconds == 0:
        return "expired"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d {hours:02d}h" if days else f"{hours}h {rest // 60:02d}m"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _short(iso: str | None) -> str:
    """An ISO time to the second, ``2030-01-01 12:00:00Z``; ``-`` for none."""
    if iso is None:
        return "-"
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%SZ")
