"""Users and their API tokens."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, func, or_, select, text, update
from sqlalchemy.orm import Session, joinedload

from node.db.engine import SQLITE_BUSY_TIMEOUT_S
from node.db.models import ApiToken, Role, User


@dataclass(frozen=True)
class AdminTokens:
    """One user with the admin role and their live tokens (neither revoked nor expired):
    how many (``live``), how many of these have an end (``ending``), the last end."""

    name: str
    active: bool
    live: int
    ending: int
    last: datetime | None


class UserRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def by_name(self, name: str, *, lock: bool = False) -> User | None:
        """The user ``name``; with ``lock`` read afresh and its row locked until the
        transaction ends (PostgreSQL; on SQLite the caller holds the database's write lock)."""
        query = select(User).where(User.name == name)
        if lock:
            query = query.with_for_update().execution_options(populate_existing=True)
        return self.session.scalars(query).one_or_none()

    def all(self) -> Sequence[User]:
        return self.session.scalars(select(User).order_by(User.name)).all()

    def active_admins(self, *, lock: bool = False) -> Sequence[User]:
        """The active admins. With ``lock`` no other transaction changes an admin until this
        one ends, and the rows are read afresh: two admins demoting or disabling each other
        at once cannot both see the other one still active and leave the node without an
        admin. PostgreSQL locks their rows (``FOR UPDATE``); SQLite locks the database, and
        the driver begins no transaction for a read, so a write that changes nothing takes
        the write lock first (the read and the change after it are then one transaction)."""
        query = select(User).where(User.role == Role.ADMIN, User.active.is_(True))
        if lock:
            if self.session.get_bind().dialect.name == "sqlite":
                self.session.execute(text("UPDATE users SET active = active WHERE 0 = 1"))
            query = query.with_for_update().execution_options(populate_existing=True)
        return self.session.scalars(query.order_by(User.id)).all()

    def with_live_token(
        self, user_ids: Sequence[int], *, now: datetime, excluding: str | None = None
    ) -> set[int]:
        """Those of ``user_ids`` holding a token neither revoked nor expired at ``now``, the
        token whose public id is ``excluding`` left out (one about to be revoked)."""
        if not user_ids:
            return set()
        query = select(ApiToken.user_id).where(
            ApiToken.user_id.in_(user_ids),
            ApiToken.revoked_at.is_(None),
            or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
        )
        if excluding is not None:
            query = query.where(ApiToken.token_id != excluding)
        return set(self.session.scalars(query.distinct()).all())

    def admin_live_tokens(self, *, now: datetime) -> list[AdminTokens]:
        """Every user with the admin role, by name, with their tokens live at ``now``
        counted in the database: one query, however many revoked or expired tokens they
        ever held."""
        live = and_(
            ApiToken.user_id == User.id,
            ApiToken.revoked_at.is_(None),
            or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
        )
        query = (
            select(
                User.name,
                User.active,
                func.count(ApiToken.id),
                func.count(ApiToken.expires_at),
                func.max(ApiToken.expires_at),
            )
            .select_from(User)
            .outerjoin(ApiToken, live)
            .where(User.role == Role.ADMIN)
            .group_by(User.id, User.name, User.active)
            .order_by(User.name)
        )
        return [
            AdminTokens(name=name, active=active, live=count, ending=ending, last=last)
            for name, active, count, ending, last in self.session.execute(query).all()
        ]

    def add(self, user: User) -> User:
        self.session.add(user)
        self.session.flush()
        return user

    def token(self, token_id: str, *, lock: bool = False, fresh: bool = False) -> ApiToken | None:
        """The token ``token_id`` with its user; with ``lock`` read afresh and its row locked
        until the transaction ends (PostgreSQL; on SQLite the caller holds the database's
        write lock); with ``fresh`` read afresh without a lock of its own."""
        # The user comes in the same query: authentication is on every request's path.
        query = (
            select(ApiToken).options(joinedload(ApiToken.user)).where(ApiToken.token_id == token_id)
        )
        if lock:
            query = query.with_for_update(of=ApiToken).execution_options(populate_existing=True)
        elif fresh:
            query = query.execution_options(populate_existing=True)
        return self.session.scalars(query).one_or_none()

    def tokens_of(self, user: User) -> Sequence[ApiToken]:
        query = select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)
        return self.session.scalars(query).all()

    def add_token(self, token: ApiToken) -> ApiToken:
        self.session.add(token)
        self.session.flush()
        return token

    def note_token_uses(self, uses: Mapping[int, datetime], *, lock_wait_s: float) -> None:
        """Set the ``last_used_at`` of the tokens ``uses`` names (by primary key) to their
        time, in one statement run for every token, unless a later use is recorded already
        (a row never goes back in time). Waits at most ``lock_wait_s`` for another writer's
        lock, then raises as the database does; the caller commits."""
        if not uses:
            return
        connection = self.session.connection()
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:  # the busy timeout is the connection's: set back below
            connection.exec_driver_sql(f"PRAGMA busy_timeout = {int(lock_wait_s * 1000)}")
        else:  # this transaction only
            connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(lock_wait_s * 1000)}ms'")
        statement = (  # on the connection: a plain executemany, not the ORM's bulk update
            update(ApiToken)
            .where(ApiToken.id == bindparam("b_pk"))
            .where(or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at < bindparam("b_at")))
            .values(last_used_at=bindparam("b_at"))
        )
        try:
            connection.execute(statement, [{"b_pk": pk, "b_at": at} for pk, at in uses.items()])
        finally:
            if sqlite:
                connection.exec_driver_sql(
                    f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}"
                )
