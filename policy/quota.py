"""Daily search quotas per peer and modality, consumed atomically in the node's database.

One row per (peer, modality, day) holds the number of searches granted. :meth:`consume` grants a
search only through a single conditional ``UPDATE ... SET used = used + 1 WHERE used < limit``:
racing requests cannot overshoot the limit on PostgreSQL (the row lock re-checks the condition
after waiting) nor on SQLite (writers are serialised). The table lives on its own
:data:`metadata`; the node's Alembic migration creates it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date

from sqlalchemy import (
    Column,
    Date,
    Engine,
    Executable,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError

from policy.errors import PolicyError

metadata = MetaData()

quota_usage = Table(
    "policy_quota_usage",
    metadata,
    Column("peer", String(2), primary_key=True),
    Column("modality", String(16), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("used", Integer, nullable=False),
)


class QuotaStoreError(PolicyError):
    """The quota ledger could not be read or updated (the request is refused, not granted)."""

    exit_code = 1
    default_reason = "quota_store_unavailable"


@dataclass(frozen=True)
class QuotaResult:
    granted: bool
    used: int
    limit: int


#: The key of one ledger row, as bound parameters (statements are built once per ledger: building
#: them per call was 12-19% of a peer query's non-search CPU).
_KEY = (
    (quota_usage.c.peer == bindparam("q_peer"))
    & (quota_usage.c.modality == bindparam("q_modality"))
    & (quota_usage.c.day == bindparam("q_day"))
)
_GRANT = (
    update(quota_usage)
    .where(_KEY & (quota_usage.c.used < bindparam("q_limit")))
    .values(used=quota_usage.c.used + 1)
    .returning(quota_usage.c.used)
)
_USED = select(quota_usage.c.used).where(_KEY)
_RETURN = (
    update(quota_usage)
    .where(_KEY & (quota_usage.c.used > 0))
    .values(used=quota_usage.c.used - 1)
    .returning(quota_usage.c.used)
)


class QuotaLedger:
    """Counts granted searches per peer, modality and day."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        values = {
            "peer": bindparam("q_peer"),
            "modality": bindparam("q_modality"),
            "day": bindparam("q_day"),
            "used": 0,
        }
        self._insert_missing: Executable | None = None
        if engine.dialect.name == "postgresql":
            self._insert_missing = (
                postgresql.insert(quota_usage).values(values).on_conflict_do_nothing()
            )
        elif engine.dialect.name == "sqlite":
            self._insert_missing = (
                sqlite.insert(quota_usage).values(values).on_conflict_do_nothing()
            )

    def consume(self, peer: str, modality: str, day: date, limit: int) -> QuotaResult:
        """Grant one search if fewer than ``limit`` were granted on ``day``; atomic."""
        if self._insert_missing is None:
            raise QuotaStoreError(f"unsupported database dialect {self.engine.dialect.name}")
        key = {"q_peer": peer, "q_modality": modality, "q_day": day}
        try:
            with self.engine.begin() as conn:
                conn.execute(self._insert_missing, key)
                row = conn.execute(_GRANT, {**key, "q_limit": limit}).first()
                if row is not None:
                    return QuotaResult(True, int(row[0]), limit)
                used = conn.execute(_USED, key).scalar_one()
                return QuotaResult(False, int(used), limit)
        except OperationalError as exc:
            raise QuotaStoreError(f"quota ledger unavailable: {exc.orig}") from exc

    def give_back(self, peer: str, modality: str, day: date) -> int:
        """Return one granted search of ``day`` (never below 0); the count afterwards."""
        key = {"q_peer": peer, "q_modality": modality, "q_day": day}
        try:
            with self.engine.begin() as conn:
                row = conn.execute(_RETURN, key).first()
        except OperationalError as exc:
            raise QuotaStoreError(f"quota ledger unavailable: {exc.orig}") from exc
        return int(row[0]) if row is not None else 0

    def used_on(self, days: Collection[date]) -> dict[tuple[str, str, date], int]:
        """Searches granted per ``(peer, modality, day)`` on ``days``: one read, nothing
        consumed (a row not written yet, no search granted that day, is absent)."""
        if not days:
            return {}
        query = select(quota_usage).where(quota_usage.c.day.in_(sorted(set(days))))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return {(r.peer, r.modality, r.day): int(r.used) for r in rows}

    def used(self, peer: str, modality: str, day: date) -> int:
        """Searches granted so far to ``peer`` for ``modality`` on ``day``."""
        with self.engine.connect() as conn:
            value = conn.execute(
                _USED, {"q_peer": peer, "q_modality": modality, "q_day": day}
            ).scalar()
        return int(value or 0)
