"""The exchange log as the exchange code sees it: ``record(event)`` appends one JSON event to
the node's tamper-evident log (:class:`certs.translog.TransparencyLog`).

Events are JSON objects with sorted keys and no whitespace, so the same event always makes the
same leaf. They carry references, countries, purposes, outcomes and reasons, never biometric
data: :func:`check_event` refuses an event with a field that could hold template bytes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import DBAPIError

from certs.translog import TransparencyLog
from node.exchange.params import LANDED_WINDOW, LOG_APPEND_ATTEMPTS, LOG_APPEND_RETRY_S

logger = logging.getLogger(__name__)

#: Field names that would carry biometric data; no event may have them.
FORBIDDEN_FIELDS = frozenset({"templates_data", "template", "data", "embedding", "minutiae"})


def encode_event(event: dict[str, Any]) -> bytes:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def check_event(event: dict[str, Any]) -> None:
    bad = FORBIDDEN_FIELDS & set(event)
    if bad:
        raise ValueError(f"exchange events may not carry {sorted(bad)}")


class TranslogExchangeLog:
    """Appends exchange events to a transparency log."""

    def __init__(self, log: TransparencyLog) -> None:
        self.log = log

    def record(self, event: dict[str, Any]) -> None:
        self.record_many([event])

    def record_many(self, events: Sequence[dict[str, Any]]) -> None:
        """Append ``events`` in order in one transaction (all or none); none is a no-op.

        A lost database connection is retried on a fresh one (``LOG_APPEND_ATTEMPTS``), unless
        the append is found among the log's last entries (the connection was lost after the
        commit went through: a retry would log the events twice, for good); other database
        errors, and the last attempt's, are raised, the last one only once the log is known
        not to hold the append (a caller that appends its events again after the error must
        not log them twice)."""
        for event in events:
            check_event(event)
        entries = [encode_event(e) for e in events]
        for attempt in range(1, LOG_APPEND_ATTEMPTS + 1):
            try:
                if attempt > 1 and self._landed(entries):
                    return  # the commit went through; only its reply was lost
                self.log.append_many(entries)
                return
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                if attempt == LOG_APPEND_ATTEMPTS:
                    if self._landed_after_all(entries):
                        return
                    raise
                logger.warning(
                    "exchange log append lost its database connection; retrying (%d of %d)",
                    attempt + 1,
                    LOG_APPEND_ATTEMPTS,
                )
                time.sleep(LOG_APPEND_RETRY_S)

    def _landed_after_all(self, entries: Sequence[bytes]) -> bool:
        """:meth:`_landed`, False when the log cannot be read either."""
        try:
            return self._landed(entries)
        except DBAPIError:
            return False

    def _landed(self, entries: Sequence[bytes]) -> bool:
        """Whether ``entries`` stand, in order and together, among the log's last
        ``LANDED_WINDOW`` entries (events carry their time and ids: a batch is unique)."""
        size = self.log.size()
        recent = [e.data for e in self.log.entries(max(0, size - LANDED_WINDOW))]
        n = len(entries)
        return any(recent[i : i + n] == list(entries) for i in range(len(recent) - n + 1))
