"""``GET /quota``: how much of each peer's daily quota is used today (operators, auditors).

One row per peer and modality the rules in force allow, on the day a query now counts against
(in the peer rule's time zone: :func:`policy.decision.quota_day`), with its limit and what is
left. Reading consumes nothing; each reading is recorded in the audit trail (``quota.show``).
503 ``no_exchange`` when this node runs no peer exchange."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from node.api.deps import SessionDep, actor, require_role
from node.api.routers.peers import ExchangeDep
from node.api.schemas.common import errors
from node.api.schemas.quota import QuotaOut, QuotaUsageOut
from node.db.models import Role
from node.services.quota import QuotaService
from node.services.users import Principal

router = APIRouter(tags=["quota"], responses=errors())

QuotaReader = Annotated[Principal, Depends(require_role(Role.OPERATOR, Role.AUDITOR))]


@router.get("/quota")
def read_quota(reader: QuotaReader, exchange: ExchangeDep, session: SessionDep) -> QuotaOut:
    reading = QuotaService(session, exchange.policy).read(actor=actor(reader))
    return QuotaOut(
        policy_version=reading.policy_version,
        at=reading.at,
        items=[
            QuotaUsageOut(
                peer=s.peer,
                modality=s.modality,
                timezone=s.timezone,
                day=s.day,
                used=s.used,
                limit=s.limit,
                remaining=s.remaining,
            )
            for s in reading.standings
        ],
    )
