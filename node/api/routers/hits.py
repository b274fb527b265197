"""``GET /hits/{reference}``: follow up a hit this node answered (operators).

A peer's officer got a hit and an opaque reference; the requesting country quotes it through
formal channels, and this node's operator resolves it to the subject
(:mod:`node.services.hits`). Each resolution is recorded in the audit trail (``hit.resolve``),
which auditors review. Operators only: auditors review disclosures and do not make them (no
role implies another, :class:`node.db.models.Role`), and officers query peers, they do not read
this node's gallery. The route is on the API port only: the peer listener serves the peer
routes and nothing else (:mod:`node.exchange.serving`).
"""

from __future__ import annotations

from fastapi import APIRouter

from node.api.deps import OperatorUser, SessionDep, actor
from node.api.schemas.common import errors
from node.api.schemas.hits import HitOut
from node.api.schemas.subjects import RecordOut
from node.services.hits import HitService

router = APIRouter(tags=["hits"], responses=errors(404))


@router.get("/hits/{reference}")
def resolve_hit(reference: str, operator: OperatorUser, session: SessionDep) -> HitOut:
    found = HitService(session).resolve(reference, actor=actor(operator))
    return HitOut(
        reference=found.hit.reference,
        query_id=found.hit.query_id,
        requester=found.hit.requester,
        issued_at=found.hit.created_at,
        subject=None if found.subject is None else found.subject.external_id,
        state=found.state,
        records=[RecordOut.model_validate(r) for r in found.records],
    )
