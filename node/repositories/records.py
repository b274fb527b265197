"""Template records (metadata; the templates are in the gallery store)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.orm import Session

from node.db.base import utc_now
from node.db.models import Modality, RecordState, TemplateRecord


class RecordRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def by_reference(self, reference: str) -> TemplateRecord | None:
        query = select(TemplateRecord).where(TemplateRecord.reference == reference)
        return self.session.scalars(query).one_or_none()

    def of_subject(self, subject_id: int) -> Sequence[TemplateRecord]:
        query = (
            select(TemplateRecord)
            .where(TemplateRecord.subject_id == subject_id)
            .order_by(TemplateRecord.id)
        )
        return self.session.scalars(query).all()

    def in_state(
        self,
        state: RecordState,
        *,
        references: Iterable[str] | None = None,
        limit: int | None = None,
    ) -> Sequence[TemplateRecord]:
        """Records in ``state`` (of ``references`` when given), oldest first, at most ``limit``."""
        query = select(TemplateRecord).where(TemplateRecord.state == state)
        if references is not None:
            query = query.where(TemplateRecord.reference.in_(list(references)))
        return self.session.scalars(query.order_by(TemplateRecord.id).limit(limit)).all()

    def references(self, state: RecordState) -> set[str]:
        query = select(TemplateRecord.reference).where(TemplateRecord.state == state)
        return set(self.session.scalars(query))

    def count_in_state(self, references: Iterable[str], state: RecordState) -> int:
        """How many of these records are in ``state``."""
        refs = list(references)
        if not refs:
            return 0
        query = select(func.count()).where(
            TemplateRecord.reference.in_(refs), TemplateRecord.state == state
        )
        return int(self.session.scalar(query) or 0)

    def add(self, record: TemplateRecord) -> TemplateRecord:
        self.session.add(record)
        self.session.flush()
        return record

    def set_state(
        self,
        references: Iterable[str],
        state: RecordState,
        *,
        only: RecordState | tuple[RecordState, ...] | None = None,
    ) -> int:
        """Set the state of these records (those in state ``only``, or one of them, when
        given); returns how many rows were set."""
        refs = list(references)
        if not refs:
            return 0
        where: list[ColumnElement[bool]] = [TemplateRecord.reference.in_(refs)]
        if only is not None:
            states = only if isinstance(only, tuple) else (only,)
            where.append(TemplateRecord.state.in_(states))
        result = self.session.execute(
            update(TemplateRecord).where(*where).values(state=state, updated_at=utc_now())
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def delete(self, references: Iterable[str]) -> None:
        refs = list(references)
        if refs:
            self.session.execute(delete(TemplateRecord).where(TemplateRecord.reference.in_(refs)))

    def counts(self) -> list[tuple[Modality, RecordState, int | None, int]]:
        """(modality, state, finger position, count) for every non-empty group."""
        query = select(
            TemplateRecord.modality,
            TemplateRecord.state,
            TemplateRecord.finger_position,
            func.count(),
        ).group_by(TemplateRecord.modality, TemplateRecord.state, TemplateRecord.finger_position)
        return [(m, s, f, n) for m, s, f, n in self.session.execute(query)]

    def subjects_in_state(self, subject_ids: Iterable[int], state: RecordState) -> set[int]:
        """Which of these subjects hold a record in ``state``."""
        ids = list(subject_ids)
        if not ids:
            return set()
        query = (
            select(TemplateRecord.subject_id)
            .where(TemplateRecord.subject_id.in_(ids), TemplateRecord.state == state)
            .distinct()
        )
        return set(self.session.scalars(query))

    def count_by_subject(self, subject_ids: Iterable[int]) -> dict[int, int]:
        ids = list(subject_ids)
        if not ids:
            return {}
        query = (
            select(TemplateRecord.subject_id, func.count())
            .where(TemplateRecord.subject_id.in_(ids))
            .group_by(TemplateRecord.subject_id)
        )
        return {subject_id: n for subject_id, n in self.session.execute(query)}
