"""Reading each peer's daily quota standing (``GET /quota``), recorded in the audit trail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from node.repositories.audit import AuditRepository
from policy.decision import PolicyEngine, QuotaStanding

#: The audit action of a reading of the quota standings (who read them, under which rules, how
#: many rows), as ``hit.list`` and ``query.list`` record their listings.
QUOTA_READ_ACTION = "quota.show"


@dataclass(frozen=True)
class QuotaReading:
    """The rules' version, the time read, and the standing of every peer and modality."""

    policy_version: str
    at: datetime
    standings: list[QuotaStanding]


class QuotaService:
    def __init__(self, session: Session, policy: PolicyEngine) -> None:
        self.session = session
        self.policy = policy
        self.audit = AuditRepository(session)

    def read(self, *, actor: str) -> QuotaReading:
        """The quota standings now (:meth:`PolicyEngine.quota_standings`: nothing is
        consumed); recorded as ``actor``'s reading (:data:`QUOTA_READ_ACTION`)."""
        policy, at, standings = self.policy.quota_standings()
        details = {"policy_version": policy.version, "returned": len(standings)}
        self.audit.record(actor, QUOTA_READ_ACTION, None, details)
        self.session.commit()
        return QuotaReading(policy.version, at, standings)
