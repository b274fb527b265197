"""Users, roles and bearer tokens.

A token is ``bdx_<token id>_<secret>``: the id (16 hex digits) is public and names the token in
listings and revocations; the secret is 32 random bytes. Only the SHA-256 of the whole token is
stored; a fast hash is enough because the token has 256 bits of entropy (no guessing attack
to slow down), and the stored hash is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import pwd
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from node.db.base import utc_now
from node.db.models import ApiToken, Role, User
from node.errors import NotFoundError
from node.repositories.audit import AuditRepository
from node.repositories.users import UserRepository
from node.service_errors import AuthenticationError, ConflictError, InvalidRequestError
from node.services import params

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "bdx_"
TOKEN_ID_BYTES = 8
TOKEN_SECRET_BYTES = 32
_TOKEN_RE = re.compile(r"^bdx_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
USER_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
#: :data:`USER_NAME_RE` in words.
USER_NAME_RULE = "1-64 of a-z 0-9 . _ - (starting alphanumeric)"


def user_name_problem(name: str) -> str | None:
    """Why ``name`` is no user name (:data:`USER_NAME_RE`), or None when it is one: the API
    refuses it as a bad request, ``bdx users add`` as a bad argument."""
    if USER_NAME_RE.fullmatch(name):
        return None
    return f"user name {name!r} must be {USER_NAME_RULE}"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of a request."""

    user_id: int
    name: str
    role: Role


@dataclass(frozen=True)
class IssuedToken:
    """A new token; ``token`` is shown once and never stored."""

    token_id: str
    token: str
    user: str
    expires_at: datetime | None


def os_user() -> str:
    """The name of the account running this process, from the system's user database by the
    effective uid: ``getpass.getuser`` reads ``$LOGNAME``/``$USER`` first, which anyone sets
    (``LOGNAME=alice bdx ...`` was logged as alice, newlines and escapes included)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid without an entry (some containers)
        return f"uid{os.geteuid()}"


def local_actor() -> str:
    """The audit actor of commands run on the node's own machine."""
    return f"local:{os_user()}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UserService:
    def __init__(
        self,
        session: Session,
        *,
        clock: Callable[[], datetime] = utc_now,
        token_max_days: int = 365,
    ) -> None:
        self.session = session
        self.users = UserRepository(session)
        self.audit = AuditRepository(session)
        self.clock = clock
        self.token_max_days = token_max_days

    def get(self, name: str) -> User:
        user = self.users.by_name(name)
        if user is None:
            raise NotFoundError(f"no user named {name!r}", reason="unknown_user")
        return user

    def list_users(self) -> Sequence[User]:
        return self.users.all()

    def tokens_of(self, user: User) -> Sequence[ApiToken]:
        return self.users.tokens_of(user)

    def add_user(self, name: str, role: Role, *, actor: str) -> User:
        problem = user_name_problem(name)
        if problem is not None:
            raise InvalidRequestError(problem, reason="bad_user_name")
        if self.users.by_name(name) is not None:
            raise ConflictError(f"user {name!r} already exists", reason="user_exists")
        try:
            user = self.users.add(User(name=name, role=role, active=True, created_at=self.clock()))
            self.audit.record(actor, "user.add", name, {"role": role.value})
            self.session.commit()
        except IntegrityError:
            # Another request added the name between the look-up and the insert: the unique
            # constraint refused this one. Any other integrity failure is a bug: raised.
            self.session.rollback()
            if self.users.by_name(name) is None:
                raise
            raise ConflictError(f"user {name!r} already exists", reason="user_exists") from None
        return user

    def tokens_of_user(self, name: str) -> Sequence[ApiToken]:
        """The tokens of the user ``name``, oldest first, revoked and expired ones included."""
        return self.users.tokens_of(self.get(name))

    def has_active_admin(self) -> bool:
        return bool(self.users.active_admins())

    def _keep_an_admin(self, name: str, change: str) -> None:
        """Refuse (409 ``last_admin``) to take the rights of the node's only active admin: no
        one could manage users over the API. The admins are read afresh and stay locked until
        the change commits (:meth:`UserRepository.active_admins`): two admins demoting each
        other at once leave one of them admin. The user is read after the lock, so that what
        the change records is what it changed."""
        admins = self.users.active_admins(lock=True)
        user = self.get(name)
        if [a.id for a in admins] == [user.id]:
            self.session.rollback()  # the lock, at once
            raise ConflictError(
                f"{change} {name!r} would leave the node without an active admin; make "
                "another user admin first",
                reason="last_admin",
            )

    def disable_user(self, name: str, *, actor: str, keep_an_admin: bool = True) -> User:
        """Disable a user: their tokens stop working (again: no change, recorded again).

        With ``keep_an_admin`` (the API) the only active admin is not disabled (409
        ``last_admin``): no one could manage users over the API. ``bdx users disable`` on the
        node's machine may do it (a stolen admin token: the same machine makes an admin again
        with ``bdx users enable`` or ``add``)."""
        if keep_an_admin:
            self._keep_an_admin(name, "disabling")
        user = self.get(name)
        user.active = False
        self.audit.record(actor, "user.disable", name)
        self.session.commit()
        return user

    def enable_user(self, name: str, *, actor: str) -> User:
        """Enable a disabled user again under the same name (again: no change, recorded again).

        Their tokens neither revoked nor expired work again: the audit record lists them
        (``tokens``), and an admin revokes those that should not."""
        user = self.get(name)
        now = self.clock()
        live = [
            t.token_id
            for t in self.users.tokens_of(user)
            if t.revoked_at is None and (t.expires_at is None or t.expires_at > now)
        ]
        user.active = True
        self.audit.record(actor, "user.enable", name, {"tokens": live})
        self.session.commit()
        return user

    def set_role(self, name: str, role: Role, *, actor: str, keep_an_admin: bool = True) -> User:
        """Give a user another role; their tokens carry it from their next request (the same
        role again: no change, recorded again). ``keep_an_admin`` as for
        :meth:`disable_user`."""
        if keep_an_admin and role is not Role.ADMIN:
            self._keep_an_admin(name, f"making {role.value}")
        user = self.get(name)
        previous = user.role
        user.role = role
        self.audit.record(
            actor, "user.role", name, {"previous_role": previous.value, "role": role.value}
        )
        self.session.commit()
        return user

    def issue_token(self, name: str, *, expires_days: int | None, actor: str) -> IssuedToken:
        user = self.get(name)
        if not user.active:
            raise ConflictError(f"user {name!r} is disabled", reason="user_disabled")
        days = self.token_max_days if expires_days is None else expires_days
        if not 1 <= days <= self.token_max_days:
            raise InvalidRequestError(
                f"token lifetime must be 1 to {self.token_max_days} days, not {days}",
                reason="bad_token_lifetime",
            )
        token_id = secrets.token_hex(TOKEN_ID_BYTES)
        token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(TOKEN_SECRET_BYTES)}"
        now = self.clock()
        expires_at = now + timedelta(days=days)
        self.users.add_token(
            ApiToken(
                token_id=token_id,
                token_hash=hash_token(token),
                user_id=user.id,
                created_at=now,
                expires_at=expires_at,
            )
        )
        self.audit.record(actor, "token.issue", name, {"token_id": token_id, "days": days})
        self.session.commit()
        return IssuedToken(token_id=token_id, token=token, user=name, expires_at=expires_at)

    def revoke_token(self, token_id: str, *, actor: str, why: str | None = None) -> ApiToken:
        """Revoke a token; ``why``, when given, is recorded with it (``not_delivered``: the
        command that issued it could not print it)."""
        row = self.users.token(token_id)
        if row is None:
            raise NotFoundError(f"no token with id {token_id!r}", reason="unknown_token")
        if row.revoked_at is None:
            row.revoked_at = self.clock()
        detail = {"token_id": token_id} if why is None else {"token_id": token_id, "why": why}
        self.audit.record(actor, "token.revoke", row.user.name, detail)
        self.session.commit()
        return row

    def authenticate(self, token: str) -> Principal:
        """The user a bearer token belongs to, or :class:`AuthenticationError`."""
        match = _TOKEN_RE.match(token)
        if match is None:
            raise AuthenticationError("the bearer token is malformed", reason="malformed_token")
        row = self.users.token(match.group(1))
        # Compare against a dummy hash for unknown ids so both paths do the same work.
        stored = row.token_hash if row is not None else "0" * 64
        if not hmac.compare_digest(stored, hash_token(token)) or row is None:
            raise AuthenticationError("the bearer token is not known", reason="unknown_token")
        if row.revoked_at is not None:
            raise AuthenticationError("the bearer token was revoked", reason="token_revoked")
        if row.expires_at is not None and row.expires_at <= self.clock():
            raise AuthenticationError("the bearer token has expired", reason="token_expired")
        if not row.user.active:
            raise AuthenticationError("the token's user is disabled", reason="user_disabled")
        principal = Principal(user_id=row.user.id, name=row.user.name, role=row.user.role)
        now = self.clock()
        older_than = now - timedelta(seconds=params.TOKEN_USE_INTERVAL_S)
        if row.last_used_at is None or row.last_used_at <= older_than:
            self._note_use(row.id, row.token_id, now, older_than)
        return principal

    def _note_use(self, token_pk: int, token_id: str, now: datetime, older_than: datetime) -> None:
        """Record a token's use (at most once per ``TOKEN_USE_INTERVAL_S``, the caller checks
        what it read, the write checks again). A failure is logged, by the token's public id
        and the error's type, and the request goes on: it is bookkeeping."""
        # End the read first: on SQLite (WAL) a write cannot start from a read snapshot that
        # another writer has moved past since, and the request has read nothing it keeps.
        self.session.rollback()
        try:
            self.users.note_token_use(
                token_pk, now, older_than=older_than, lock_wait_s=params.TOKEN_USE_LOCK_WAIT_S
            )
            self.session.commit()
        except SQLAlchemyError as exc:
            self.session.rollback()
            logger.warning(
                "could not record the use of token %s (%s); the request goes on",
                token_id,
                type(exc).__name__,
            )
