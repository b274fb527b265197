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
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import anyio
import anyio.to_thread
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from node.db.base import utc_now
from node.db.models import ApiToken, Role, User
from node.errors import NotFoundError
from node.repositories.audit import AuditRepository
from node.repositories.users import UserRepository
from node.service_errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    PermissionDeniedError,
)
from node.services import params

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "bdx_"
TOKEN_ID_BYTES = 8
TOKEN_SECRET_BYTES = 32
_TOKEN_RE = re.compile(r"^bdx_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
USER_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
#: :data:`USER_NAME_RE` in words.
USER_NAME_RULE = "1-64 of a-z 0-9 . _ - (starting alphanumeric)"
#: The audit action of a listing of a user's tokens (ids and times only, never a token or its
#: hash), as ``hit.list`` and ``query.list`` record their listings.
TOKEN_LIST_ACTION = "token.list"
#: The audit action of a listing of the users with their tokens' public ids (how many users
#: and tokens, never a token or its hash): it shows every user's tokens, as ``token.list`` one
#: user's.
USER_LIST_ACTION = "user.list"
#: The audit action of a reading of the admins' token standing (``GET /users/admin-tokens``:
#: the admins' names, how many live tokens, the last expiry), as ``user.list`` records its
#: listing; the record holds the state and the count only.
ADMIN_TOKENS_ACTION = "user.admin_tokens"


def user_name_problem(name: str) -> str | None:
    """Why ``name`` is no user name (:data:`USER_NAME_RE`), or None when it is one: the API
    refuses it as a bad request, ``bdx users add`` as a bad argument."""
    if USER_NAME_RE.fullmatch(name):
        return None
    return f"user name {name!r} must be {USER_NAME_RULE}"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of a request, and the public id of the token it
    authenticated with (a change of users and tokens checks again, under the admins' lock, that
    this token is still live: :meth:`UserService._admins_locked`)."""

    user_id: int
    name: str
    role: Role
    token_id: str


@dataclass(frozen=True)
class RoleChanged:
    """What :meth:`UserService.set_role` changed: the user and the role they had before
    (the same as theirs now when it was theirs already)."""

    user: User
    previous: Role


@dataclass(frozen=True)
class IssuedToken:
    """A new token; ``token`` is shown once and never stored."""

    token_id: str
    token: str
    user: str
    expires_at: datetime | None


AdminTokenState = Literal["ok", "expiring", "none"]


@dataclass(frozen=True)
class AdminStanding:
    """How long the node's active admins can still use the API
    (:meth:`UserService.admin_standing`): ``ok``; ``expiring``, every live token of theirs
    expires within the warning window; ``none``, no active admin holds a live token (only
    ``bdx users token`` on the node's machine makes one again). ``admins``: the active admins
    holding a live token, by name; ``tokens``: how many live tokens they hold; ``last``: when
    the last of these expires (None: none live, or one that never expires)."""

    state: AdminTokenState
    admins: tuple[str, ...]
    tokens: int
    last: datetime | None

    def message(self) -> str:
        """What the log says of a standing that is not ``ok`` (names and counts, never a
        token or its id)."""
        if self.state == "none":
            return (
                "no active admin holds a live API token (each expired or was revoked, or its "
                "admin was disabled): nobody can manage users over the API; on this node's "
                "machine `bdx users token NAME` issues an admin a new token (`bdx users enable "
                "NAME` or `bdx users add NAME --role admin` first makes one)"
            )
        at = f"{self.last:%Y-%m-%d %H:%M}Z" if self.last is not None else "-"
        return (
            f"every live API token of the node's active admins expires by {at} "
            f"({self.tokens} {'token' if self.tokens == 1 else 'tokens'} of "
            f"{', '.join(self.admins)}): issue an admin a new token "
            "before then (POST /users/NAME/tokens, or `bdx users token NAME` on this node's "
            "machine); once none is live, nobody can manage users over the API"
        )


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


def admin_warning_window(token_max_days: int) -> timedelta:
    """How long before the node's admins' last live token expires the node warns:
    ``ADMIN_TOKEN_WARNING_DAYS``, but at most ``ADMIN_TOKEN_WARNING_FRACTION`` of
    ``token_max_days`` (a window as long as the longest lifetime warns of every token issued:
    the warning would never clear)."""
    return min(
        timedelta(days=params.ADMIN_TOKEN_WARNING_DAYS),
        timedelta(days=token_max_days) * params.ADMIN_TOKEN_WARNING_FRACTION,
    )


def days_text(span: timedelta) -> str:
    """``span`` in days as the log says it: ``14 days``, ``3.5 days``, ``1 day``."""
    days = span / timedelta(days=1)
    return f"{days:g} {'day' if days == 1 else 'days'}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UserService:
    def __init__(
        self,
        session: Session,
        *,
        clock: Callable[[], datetime] = utc_now,
        token_max_days: int = 365,
        uses: TokenUses | None = None,
    ) -> None:
        """``uses``: where :meth:`authenticate` notes a token's use (the running node's
        :class:`TokenUses`); none: uses are not recorded."""
        self.session = session
        self.uses = uses
        self.users = UserRepository(session)
        self.audit = AuditRepository(session)
        self.clock = clock
        self.token_max_days = token_max_days

    def get(self, name: str) -> User:
        user = self.users.by_name(name)
        if user is None:
            raise NotFoundError(f"no user named {name!r}", reason="unknown_user")
        return user

    def tokens_of(self, user: User) -> Sequence[ApiToken]:
        return self.users.tokens_of(user)

    def add_user(
        self,
        name: str,
        role: Role,
        *,
        actor: str,
        caller: int | None = None,
        caller_token: str | None = None,
    ) -> User:
        """Add an active user. ``caller`` (the API) as for :meth:`_admins_locked`: a request
        whose admin was demoted or disabled while it ran adds nobody. Without one (``bdx users
        add`` on the node's machine) no lock is taken: a name added by another transaction
        meanwhile is refused by the unique constraint (409 ``user_exists``)."""
        problem = user_name_problem(name)
        if problem is not None:
            raise InvalidRequestError(problem, reason="bad_user_name")
        if caller is not None:
            self._admins_locked(caller, caller_token)
        if self.users.by_name(name) is not None:
            self.session.rollback()  # the lock, if taken, at once
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

    def users_with_tokens(self, *, actor: str) -> list[tuple[User, Sequence[ApiToken]]]:
        """Every user, by name, with their tokens, oldest first (revoked and expired ones
        included); recorded as ``actor``'s listing (:data:`USER_LIST_ACTION`: how many users
        and tokens were listed, never a token's value or hash)."""
        rows = [(user, self.users.tokens_of(user)) for user in self.users.all()]
        details = {"returned": len(rows), "tokens": sum(len(tokens) for _, tokens in rows)}
        self.audit.record(actor, USER_LIST_ACTION, None, details)
        self.session.commit()
        return rows

    def tokens_of_user(self, name: str, *, actor: str) -> Sequence[ApiToken]:
        """The tokens of the user ``name``, oldest first, revoked and expired ones included;
        recorded as ``actor``'s listing (:data:`TOKEN_LIST_ACTION`: the user and how many
        tokens were listed, never a token's value or hash)."""
        rows = self.users.tokens_of(self.get(name))
        self.audit.record(actor, TOKEN_LIST_ACTION, name, {"returned": len(rows)})
        self.session.commit()
        return rows

    def read_admin_standing(self, window: timedelta, *, actor: str) -> AdminStanding | None:
        """:meth:`admin_standing`, recorded as ``actor``'s reading (:data:`ADMIN_TOKENS_ACTION`:
        the state and how many live tokens)."""
        standing = self.admin_standing(window)
        details = (
            {"state": "no_admin", "tokens": 0}
            if standing is None
            else {"state": standing.state, "tokens": standing.tokens}
        )
        self.audit.record(actor, ADMIN_TOKENS_ACTION, None, details)
        self.session.commit()
        return standing

    def has_usable_admin(self) -> bool:
        """Whether an active admin holds a live token (neither revoked nor expired): someone
        can manage users over the API."""
        admins = [a.id for a in self.users.active_admins()]
        return bool(self.users.with_live_token(admins, now=self.clock()))

    def admin_standing(self, window: timedelta | None = None) -> AdminStanding | None:
        """Whether the node's admins can still use the API, and for how long: None when no
        user has the admin role at all (a node not set up with one yet), else an
        :class:`AdminStanding` (``ok``, ``expiring`` within ``window``, or ``none``).
        ``window``: default :func:`admin_warning_window` of this service's
        ``token_max_days``. One query, however many tokens the admins ever held
        (:meth:`UserRepository.admin_live_tokens`)."""
        if window is None:
            window = admin_warning_window(self.token_max_days)
        now = self.clock()
        rows = self.users.admin_live_tokens(now=now)
        if not rows:
            return None
        holders = tuple(r.name for r in rows if r.active and r.live)
        tokens = sum(r.live for r in rows if r.active)
        endless = any(r.active and r.ending < r.live for r in rows)
        ends = [r.last for r in rows if r.active and r.last is not None]
        last = None if endless or not ends else max(ends)
        state: AdminTokenState
        if not tokens:
            state = "none"
        elif last is not None and last <= now + window:
            state = "expiring"
        else:
            state = "ok"
        return AdminStanding(state=state, admins=holders, tokens=tokens, last=last)

    def _admins_locked(self, caller: int | None, caller_token: str | None = None) -> Sequence[User]:
        """The active admins, read afresh after taking the lock that keeps any other
        transaction from changing an admin until this one ends
        (:meth:`UserRepository.active_admins`). ``caller``, the user id of the API caller,
        must still be one of these admins (403 ``wrong_role``): a request authenticated as
        admin just before its admin was demoted or disabled does nothing. ``caller_token``,
        the public id of the token the request authenticated with, must still be live, read
        afresh under the same lock: a request authenticated just before its token was revoked
        (or expired) does nothing either, refused as authentication refuses such a token (401
        ``token_revoked`` / ``token_expired``). A revocation takes this lock first, so a
        request that waited on it sees the revocation. Every change of users and tokens an API
        request makes takes it first."""
        admins = self.users.active_admins(lock=True)
        if caller_token is not None:
            self._check_caller_token(caller_token)
        if caller is not None and caller not in {a.id for a in admins}:
            self.session.rollback()  # the lock, at once
            raise PermissionDeniedError(
                "you are no longer an active admin (your role changed or you were disabled "
                "while this request ran)",
                reason="wrong_role",
            )
        return admins

    def _check_caller_token(self, token_id: str) -> None:
        """401 as :meth:`authenticate` when the token ``token_id`` (read afresh; the caller
        holds the admins' lock) is no longer live: revoked or expired while the request ran."""
        row = self.users.token(token_id, fresh=True)
        problem: tuple[str, str] | None = None
        if row is None:  # tokens are never deleted; a bug or a restore
            problem = ("the bearer token is not known", "unknown_token")
        elif row.revoked_at is not None:
            problem = ("the bearer token was revoked while this request ran", "token_revoked")
        elif row.expires_at is not None and row.expires_at <= self.clock():
            problem = ("the bearer token expired while this request ran", "token_expired")
        if problem is not None:
            self.session.rollback()  # the lock, at once
            raise AuthenticationError(problem[0], reason=problem[1])

    def _locked(
        self, name: str, caller: int | None, caller_token: str | None = None
    ) -> tuple[Sequence[User], User]:
        """The active admins (:meth:`_admins_locked`) and the user ``name``, read afresh
        under the same lock (on PostgreSQL the user's row is locked too): what the change
        checks and records is what it changes."""
        admins = self._admins_locked(caller, caller_token)
        user = self.users.by_name(name, lock=True)
        if user is None:
            self.session.rollback()
            raise NotFoundError(f"no user named {name!r}", reason="unknown_user")
        return admins, user

    def _keep_an_admin(self, admins: Sequence[User], user: User, change: str) -> None:
        """Refuse (409 ``last_admin``) to take the rights of an active admin when no other
        active admin holds a live token (neither revoked nor expired): no one could manage
        users over the API (an admin without a token cannot get one over it: that needs an
        admin). ``admins`` are those :meth:`_locked` read: two admins demoting each other at
        once leave one of them admin."""
        others = [a.id for a in admins if a.id != user.id]
        if len(others) < len(admins) and not self.users.with_live_token(others, now=self.clock()):
            self.session.rollback()  # the lock, at once
            raise ConflictError(
                f"{change} {user.name!r} would leave the node without an active admin who can "
                "use the API: make another user admin and issue them a token first (an admin "
                "counts once they hold a token neither revoked nor expired)",
                reason="last_admin",
            )

    def disable_user(
        self,
        name: str,
        *,
        actor: str,
        caller: int | None = None,
        caller_token: str | None = None,
        keep_an_admin: bool = True,
    ) -> User:
        """Disable a user: their tokens stop working (again: no change, recorded again).

        With ``keep_an_admin`` (the API) an admin is not disabled when no other active admin
        holds a live token (409 ``last_admin``): no one could manage users over the API.
        ``bdx users disable`` on the node's machine may do it (a stolen admin token: the same
        machine makes an admin again with ``bdx users enable`` or ``add``). ``caller`` and
        ``caller_token`` as for :meth:`_locked`."""
        admins, user = self._locked(name, caller, caller_token)
        if keep_an_admin:
            self._keep_an_admin(admins, user, "disabling")
        user.active = False
        self.audit.record(actor, "user.disable", name)
        self.session.commit()
        return user

    def enable_user(
        self,
        name: str,
        *,
        actor: str,
        caller: int | None = None,
        caller_token: str | None = None,
    ) -> User:
        """Enable a disabled user again under the same name (again: no change, recorded again).

        Their tokens neither revoked nor expired work again: the audit record lists them
        (``tokens``), and an admin revokes those that should not. ``caller`` and
        ``caller_token`` as for :meth:`_admins_locked`."""
        _, user = self._locked(name, caller, caller_token)
        now = self.clock()
        live = [t.token_id for t in self.users.tokens_of(user) if _live(t, now)]
        user.active = True
        self.audit.record(actor, "user.enable", name, {"tokens": live})
        self.session.commit()
        return user

    def set_role(
        self,
        name: str,
        role: Role,
        *,
        actor: str,
        caller: int | None = None,
        caller_token: str | None = None,
        keep_an_admin: bool = True,
    ) -> RoleChanged:
        """Give a user another role; their tokens carry it from their next request (the same
        role again: no change, recorded again, ``previous`` the same). ``keep_an_admin`` as
        for :meth:`disable_user`, ``caller`` and ``caller_token`` as for :meth:`_locked`."""
        admins, user = self._locked(name, caller, caller_token)
        if keep_an_admin and role is not Role.ADMIN:
            self._keep_an_admin(admins, user, f"making {role.value}")
        previous = user.role
        user.role = role
        self.audit.record(
            actor, "user.role", name, {"previous_role": previous.value, "role": role.value}
        )
        self.session.commit()
        return RoleChanged(user=user, previous=previous)

    def issue_token(
        self,
        name: str,
        *,
        expires_days: int | None,
        actor: str,
        caller: int | None = None,
        caller_token: str | None = None,
    ) -> IssuedToken:
        """Issue a token to the active user ``name``. ``caller`` and ``caller_token`` as for
        :meth:`_admins_locked`: a request whose admin was demoted or disabled while it ran
        issues nothing; the user is read under the same lock (one disabled meanwhile gets
        none, 409 ``user_disabled``)."""
        days = self.token_max_days if expires_days is None else expires_days
        if not 1 <= days <= self.token_max_days:
            raise InvalidRequestError(
                f"token lifetime must be 1 to {self.token_max_days} days, not {days}",
                reason="bad_token_lifetime",
            )
        _, user = self._locked(name, caller, caller_token)
        if not user.active:
            self.session.rollback()  # the lock, at once
            raise ConflictError(f"user {name!r} is disabled", reason="user_disabled")
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

    def revoke_token(
        self,
        token_id: str,
        *,
        actor: str,
        why: str | None = None,
        caller: int | None = None,
        caller_token: str | None = None,
        keep_an_admin: bool = True,
    ) -> ApiToken:
        """Revoke a token (again: no change, its first revocation time stays, recorded
        again); ``why``, when given, is recorded with it (``not_delivered``: the command that
        issued it could not print it).

        With ``keep_an_admin`` (the API) the live token of an active admin is not revoked
        when no active admin, its owner included, holds another live token (409
        ``last_admin``): no one could manage users over the API; an admin revoking their own
        last token is refused the same. ``bdx users revoke-token`` on the node's machine may
        do it (a stolen admin token), as it may disable the last admin. ``caller`` and
        ``caller_token`` as for :meth:`_admins_locked`."""
        admins = self._admins_locked(caller, caller_token)
        row = self.users.token(token_id, lock=True)
        if row is None:
            self.session.rollback()  # the lock, at once
            raise NotFoundError(f"no token with id {token_id!r}", reason="unknown_token")
        now = self.clock()
        if (
            keep_an_admin
            and row.user_id in {a.id for a in admins}
            and _live(row, now)
            and not self.users.with_live_token(
                [a.id for a in admins], now=now, excluding=row.token_id
            )
        ):
            self.session.rollback()  # the lock, at once
            raise ConflictError(
                f"revoking token {token_id} of {row.user.name!r} would leave the node without "
                "an active admin who can use the API: make another user admin and issue them "
                "a token first (or issue this admin another token; an admin counts once they "
                "hold a token neither revoked nor expired)",
                reason="last_admin",
            )
        if row.revoked_at is None:
            row.revoked_at = now
        detail = {"token_id": token_id} if why is None else {"token_id": token_id, "why": why}
        self.audit.record(actor, "token.revoke", row.user.name, detail)
        self.session.commit()
        return row

    def authenticate(self, token: str) -> Principal:
        """The user a bearer token belongs to, or :class:`AuthenticationError`. The use is
        noted in memory (``uses``), never written here: see :class:`TokenUses`."""
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
        if self.uses is not None:
            self.uses.note(row.id, row.token_id, self.clock())
        return Principal(
            user_id=row.user.id, name=row.user.name, role=row.user.role, token_id=row.token_id
        )


def seconds_left(end: datetime | None, now: datetime) -> int | None:
    """Whole seconds from ``now`` to ``end`` (a token's ``expires_in``), 0 once it is past;
    None without an end."""
    if end is None:
        return None
    return max(0, int((end - now).total_seconds()))


def _live(token: ApiToken, now: datetime) -> bool:
    """Whether ``token`` is neither revoked nor expired at ``now``."""
    return token.revoked_at is None and (token.expires_at is None or token.expires_at > now)


class TokenUses:
    """Tokens' last uses, noted in memory by :meth:`UserService.authenticate` and written to
    ``api_tokens.last_used_at`` by :meth:`flush`, off the requests' path: the running node
    flushes every ``params.TOKEN_USE_INTERVAL_S`` and at shutdown
    (:func:`recording_token_uses`). A request never waits for the database's write lock (on
    SQLite the one lock every writer takes) for this bookkeeping. Thread-safe: the request
    worker threads note, the flushing thread takes the batch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[str, datetime]] = {}  # pk -> (public id, last use)

    def note(self, token_pk: int, token_id: str, at: datetime) -> None:
        """Note a use of the token (its primary key and public id) at ``at``."""
        with self._lock:
            self._keep(token_pk, token_id, at)

    def _keep(self, token_pk: int, token_id: str, at: datetime) -> None:
        noted = self._pending.get(token_pk)
        if noted is None or noted[1] < at:
            self._pending[token_pk] = (token_id, at)

    def pending(self) -> dict[str, datetime]:
        """The uses not written yet, by the tokens' public ids."""
        with self._lock:
            return dict(self._pending.values())

    def flush(
        self, sessions: sessionmaker[Session], *, lock_wait_s: float = params.TOKEN_USE_LOCK_WAIT_S
    ) -> int:
        """Write the pending uses in one batched UPDATE and one transaction, waiting at most
        ``lock_wait_s`` for another writer's lock; returns how many tokens it wrote. A failure
        keeps the uses for the next flush (merged with the uses noted meanwhile) and logs one
        WARNING naming the tokens by their public ids and the error by its type (its text
        holds the statement's parameters)."""
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return 0
        try:
            with sessions() as session:
                uses = {pk: at for pk, (_, at) in batch.items()}
                UserRepository(session).note_token_uses(uses, lock_wait_s=lock_wait_s)
                session.commit()
        except Exception as exc:  # kept for the next round: bookkeeping never fails the node
            with self._lock:
                for pk, (token_id, at) in batch.items():
                    self._keep(pk, token_id, at)
            ids = sorted(token_id for token_id, _ in batch.values())
            more = f" and {len(ids) - _LOGGED_IDS} more" if len(ids) > _LOGGED_IDS else ""
            logger.warning(
                "could not record the last use of %d tokens (%s); kept for the next try: %s%s",
                len(ids),
                type(exc).__name__,
                ", ".join(ids[:_LOGGED_IDS]),
                more,
            )
            return 0
        return len(batch)


#: Token ids a failed flush names in its WARNING at most (the rest are counted).
_LOGGED_IDS = 20


@asynccontextmanager
async def recording_token_uses(
    uses: TokenUses, sessions: sessionmaker[Session], interval_s: float
) -> AsyncIterator[None]:
    """Flush ``uses`` every ``interval_s`` while the block runs, and once when it ends (the
    node's shutdown). The flushes run in a thread of their own, never one of the request
    workers (``worker_threads``)."""
    limiter = anyio.CapacityLimiter(1)

    async def flushing() -> None:
        while True:
            await anyio.sleep(interval_s)
            await anyio.to_thread.run_sync(uses.flush, sessions, limiter=limiter)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(flushing)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(uses.flush, sessions, limiter=limiter)


class AdminWatch:
    """The running node's look at its admins' tokens (:meth:`UserService.admin_standing`),
    at start and every ``params.ADMIN_TOKEN_CHECK_INTERVAL_S`` (:func:`watching_admin_tokens`):
    a WARNING while every live admin token expires within ``window`` (the node's
    :func:`admin_warning_window`), an ERROR once no active admin holds one, each at most once
    every ``repeat`` while it lasts (a change from one to the other is logged at once), and
    INFO when it is over. A node with no admin user at all (not set up with one yet) is not
    watched; one whose last admin lost the role while the watch had something to say (``bdx
    users role NAME officer`` on the node's machine) gets one ERROR: that is no recovery."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        clock: Callable[[], datetime] = utc_now,
        token_max_days: int = 365,
        window: timedelta | None = None,
        repeat: timedelta = timedelta(seconds=params.ADMIN_TOKEN_REPEAT_S),
    ) -> None:
        """``window``: default :func:`admin_warning_window` of ``token_max_days`` (the
        node's setting)."""
        self.sessions = sessions
        self.clock = clock
        self.window = admin_warning_window(token_max_days) if window is None else window
        self.repeat = repeat
        self._logged: tuple[AdminTokenState, datetime] | None = None  # what, when

    def standing(self) -> AdminStanding | None:
        """The standing now (read afresh)."""
        with self.sessions() as session:
            return UserService(session, clock=self.clock).admin_standing(self.window)

    def check(self) -> AdminStanding | None:
        """Look, log as the class says, and return the standing."""
        standing = self.standing()
        now = self.clock()
        if standing is None and self._logged is not None:
            logger.error(
                "no user has the admin role any more: nobody can manage users over the API; "
                "on this node's machine `bdx users role NAME admin` (or `bdx users add NAME "
                "--role admin`) makes an admin and `bdx users token NAME` issues them a token"
            )
        elif standing is not None and standing.state == "ok" and self._logged is not None:
            logger.info(
                "an active admin holds an API token beyond the next %s again",
                days_text(self.window),
            )
        if standing is None or standing.state == "ok":
            self._logged = None
            return standing
        last = self._logged
        if last is None or last[0] != standing.state or now - last[1] >= self.repeat:
            level = logging.ERROR if standing.state == "none" else logging.WARNING
            logger.log(level, "%s", standing.message())
            self._logged = (standing.state, now)
        return standing


@asynccontextmanager
async def watching_admin_tokens(watch: AdminWatch, interval_s: float) -> AsyncIterator[None]:
    """Check ``watch`` once now (the node's start) and every ``interval_s`` while the block
    runs, in a thread of its own; a failed look is logged and tried again next time (the
    node serves on: a database that fails says so in its requests too)."""
    limiter = anyio.CapacityLimiter(1)

    async def look() -> None:
        try:
            await anyio.to_thread.run_sync(watch.check, limiter=limiter)
        except Exception as exc:  # bookkeeping never fails the node
            logger.warning("could not check the admins' API tokens (%s)", type(exc).__name__)

    async def watching() -> None:
        while True:
            await anyio.sleep(interval_s)
            await look()

    await look()
    async with anyio.create_task_group() as tg:
        tg.start_soon(watching)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()
