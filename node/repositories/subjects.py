"""Subjects and their encounters."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from node.db.models import Encounter, Subject


class SubjectRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def by_external_id(self, external_id: str) -> Subject | None:
        query = select(Subject).where(Subject.external_id == external_id)
        return self.session.scalars(query).one_or_none()

    def get_or_create(self, external_id: str) -> Subject:
        subject = self.by_external_id(external_id)
        if subject is None:
            subject = Subject(external_id=external_id)
            self.session.add(subject)
            self.session.flush()
        return subject

    def page(self, *, limit: int, after_id: int = 0) -> Sequence[Subject]:
        query = select(Subject).where(Subject.id > after_id).order_by(Subject.id).limit(limit)
        return self.session.scalars(query).all()

    def count(self) -> int:
        return self.session.scalar(select(func.count()).select_from(Subject)) or 0

    def encounters_of(self, subject: Subject) -> Sequence[Encounter]:
        query = select(Encounter).where(Encounter.subject_id == subject.id).order_by(Encounter.id)
        return self.session.scalars(query).all()

    def add_encounter(self, encounter: Encounter) -> Encounter:
        self.session.add(encounter)
        self.session.flush()
        return encounter

    def delete(self, subject: Subject) -> None:
        self.session.delete(subject)
        self.session.flush()
