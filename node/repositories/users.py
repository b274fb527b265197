"""Users and their API tokens."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from node.db.models import ApiToken, User


class UserRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def by_name(self, name: str) -> User | None:
        return self.session.scalars(select(User).where(User.name == name)).one_or_none()

    def all(self) -> Sequence[User]:
        return self.session.scalars(select(User).order_by(User.name)).all()

    def add(self, user: User) -> User:
        self.session.add(user)
        self.session.flush()
        return user

    def token(self, token_id: str) -> ApiToken | None:
        # The user comes in the same query: authentication is on every request's path.
        query = (
            select(ApiToken).options(joinedload(ApiToken.user)).where(ApiToken.token_id == token_id)
        )
        return self.session.scalars(query).one_or_none()

    def tokens_of(self, user: User) -> Sequence[ApiToken]:
        query = select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)
        return self.session.scalars(query).all()

    def add_token(self, token: ApiToken) -> ApiToken:
        self.session.add(token)
        self.session.flush()
        return token
