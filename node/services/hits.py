"""Following up a hit: an operator turns a reference this node issued back into its subject.

A peer's officer gets a hit and an opaque reference, never personal data
(:mod:`node.exchange.references`). The requesting country then asks through formal channels
(EU Prüm: personal data only after a confirmed hit, through a separate channel), quoting the
reference. This node's operator resolves it here: the subject it names, the query it answered,
the requesting country, when it was issued, and where the subject stands now (a subject erased
since is ``deleted``: nothing is left to disclose).

Every resolution is a disclosure step, recorded in the audit trail as ``hit.resolve`` (target:
the reference; details: the requesting country, the query, the subject and its state) in the
transaction that reads it; the trail is mirrored to the tamper-evident exchange log
(:mod:`node.audit.actions`), where the data-protection auditor reviews it. A resolution whose
record does not commit is not answered. A reference this node never issued, or one not shaped
like one, is not found (and not recorded: nothing was disclosed).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from node.db.models import RecordState, Subject, TemplateRecord
from node.errors import NotFoundError
from node.exchange.references import well_formed
from node.repositories.audit import AuditRepository
from node.repositories.hits import HitRepository, IssuedHit
from node.repositories.records import RecordRepository
from node.repositories.subjects import SubjectRepository
from node.service_errors import InternalServiceError
from node.services.galleries import subject_id_of

#: The audit trail's action for a resolved reference.
RESOLVE_ACTION = "hit.resolve"


class HitSubjectState(enum.StrEnum):
    """Where the subject a hit named stands now: ``active`` and ``deleting`` as in
    :class:`node.services.subjects.SubjectState`; ``deleted``: erased since the hit (subject
    ids are never re-used, so no other person stands behind the reference)."""

    ACTIVE = "active"
    DELETING = "deleting"
    DELETED = "deleted"


@dataclass(frozen=True)
class HitResolution:
    hit: IssuedHit
    subject: Subject | None  # None: deleted since
    records: Sequence[TemplateRecord]

    @property
    def state(self) -> HitSubjectState:
        if self.subject is None:
            return HitSubjectState.DELETED
        if any(r.state is RecordState.DELETING for r in self.records):
            return HitSubjectState.DELETING
        return HitSubjectState.ACTIVE


class HitService:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.hits = HitRepository(session)
        self.subjects = SubjectRepository(session)
        self.records = RecordRepository(session)
        self.audit = AuditRepository(session)

    def resolve(self, reference: str, *, actor: str) -> HitResolution:
        """The hit ``reference`` names and its subject now, recorded as ``actor``'s
        resolution. :class:`NotFoundError` (``unknown_reference``) when this node never issued
        it."""
        hit = self.hits.by_reference(reference) if well_formed(reference) else None
        if hit is None:
            raise NotFoundError(
                "this node issued no such reference, or its follow-up period"
                " (hit_reference_days) is over",
                reason="unknown_reference",
            )
        subject_id = subject_id_of(hit.record_ref)
        if subject_id is None:  # the responder stores subject keys only
            raise InternalServiceError(
                "the stored hit names no subject of this node", reason="bad_hit_record"
            )
        subject = self.subjects.by_id(subject_id)
        records = () if subject is None else self.records.of_subject(subject.id)
        found = HitResolution(hit, subject, records)
        details = {
            "requester": hit.requester,
            "query_id": hit.query_id,
            "subject": None if subject is None else subject.external_id,
            "state": found.state.value,
        }
        self.audit.record(actor, RESOLVE_ACTION, reference, details)
        self.session.commit()
        return found
