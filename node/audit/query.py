"""List, filter and aggregate the exchange events of the node's transparency log.

Events are the JSON objects the exchange appends (``type``: ``query_received``,
``policy_decision``, ``query_refused``, ``query_failed`` (this node could not search; the
signed reply said ``error``), ``reply_sent``, ``hits_suppressed``, ``query_sent``,
``reply_received``, ``auditor_action``, ``policy_loaded`` (a changed rules file came into
force), ``witness_refusal``, ``split_view`` (another witness cosigned another history of
a peer's log), ``refusals_suppressed`` (a peer's refusals beyond its budget, counted),
``queries_dropped`` (a peer's queries still waiting when the node stopped),
``hit_references_expired`` (reference links past the follow-up period deleted),
``node_action`` (operators' and auditors' acts, ``hit.resolve`` among them);
:func:`certs.translog.encode_event` writes the kind
under ``event`` instead, and both are read; the log's own ``log_pruned`` is one of those).
An entry pruned by retention (:mod:`node.audit.retention`) has no event left: it is listed
as type ``pruned`` (index, time and leaf hash only) and counted as such. Filtering by time
uses the store's append time (an index range, so a window reads only its own entries); the
other filters look at the decoded event.
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Engine, inspect, select

from certs.translog import TranslogError, TransparencyLog, audit_store
from certs.translog import export_csv as translog_csv
from certs.translog import export_json as translog_json
from certs.translog.events import FORBIDDEN_KEYS
from node.errors import NodeError
from node.service_errors import InvalidRequestError
from policy.quota import quota_usage

log_ = logging.getLogger(__name__)

MAX_PAGE = 1000
"""Most entries one list call returns: a page is JSON the browser renders at once."""
DEFAULT_PAGE = 100
"""Entries per page when the caller names no limit."""
INBOUND_QUERY = "query_received"
OUTBOUND_QUERY = "query_sent"
_PEER = re.compile(r"^[A-Z]{2}$")
_TOKEN = re.compile(r"^[a-z0-9_]{1,64}$")
_OFFICER = re.compile(r"^[\w.@:-]{1,128}$")
#: A query id: the exchange's are UUIDs; other ids (tests, older peers) are printable tokens.
_QUERY_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
#: A hit reference (22 base64url characters) or a node action's target (a user name, a
#: subject's external id, a record reference): printable ASCII without spaces.
_REFERENCE = re.compile(r"^[!-~]{1,256}$")
#: A case reference, as the exchange admits one (``node.exchange.messages.CaseRef``).
_CASE_REF = re.compile(r"^[A-Za-z0-9._/-]{1,64}$")
#: What an auditor action records of a ``case_ref`` filter: that one was given, never its
#: text (the responder logs only a keyed digest of a requester's case reference, c1be781; an
#: auditor's search, appended to the same log, would otherwise put the text back in it).
CASE_REF_WITHHELD = "withheld"
#: A node action name (``hit.resolve``, ``user.add``) or an auditor action (``export``).
_ACTION = re.compile(r"^[a-z0-9_]{1,64}(\.[a-z0-9_]{1,64}){0,3}$")
NODE_ACTION = "node_action"
PRUNED = "pruned"
"""The type an entry pruned by retention is listed as (its event is deleted)."""
AUDITOR_ACTION = "auditor_action"
#: Keys of a node action's ``details`` that name the peer country the act concerns: a
#: ``hit.resolve`` names the country that quoted the reference (the disclosure step).
PEER_DETAILS = ("requester",)


class AuditQueryError(InvalidRequestError):
    """A filter value is not acceptable (exit code 2, HTTP 422)."""

    exit_code = 2
    default_reason = "bad_filter"


@dataclass(frozen=True)
class AuditFilter:
    """Which events to list; every field set must match (``None`` matches everything).

    ``since``/``until`` bound the append time as ``[since, until)``; ``outcome`` matches an
    event's ``outcome`` (``hit``, ``no_hit``, ``refused``); ``reason`` its refusal reason.
    ``peer`` matches an event's ``peer`` and a node action about that peer (its details'
    :data:`PEER_DETAILS`: the country a ``hit.resolve`` disclosed to); ``query_id`` an event's
    ``query_id`` or a node action's ``details.query_id``; ``reference`` an event's
    ``reference`` (a hit's, in ``reply_sent``/``reply_received``) or a node action's
    ``target``; ``action`` the ``action`` of a node or auditor action (``hit.resolve``).
    ``case_ref`` matches an event's ``case_ref`` text (this node's own queries, and a peer's
    as older versions logged it) or its ``case_ref_hmac`` (a peer's query as the responder
    logs it now), computed by ``case_ref_digest`` (``Responder.case_ref_digest``: the node's
    hit secret and the event's ``peer``, the requester); without one only the text matches.
    ``case_ref_digest`` is no filter of its own: neither recorded nor compared.
    """

    peer: str | None = None
    purpose: str | None = None
    outcome: str | None = None
    reason: str | None = None
    type: str | None = None
    officer: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    query_id: str | None = None
    reference: str | None = None
    action: str | None = None
    case_ref: str | None = None
    case_ref_digest: Callable[[str, str], str] | None = field(
        default=None, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        if self.peer is not None and not _PEER.fullmatch(self.peer):
            raise AuditQueryError(f"peer must be a two-letter country code, got {self.peer!r}")
        for name in ("purpose", "outcome", "reason", "type"):
            value = getattr(self, name)
            if value is not None and not _TOKEN.fullmatch(value):
                raise AuditQueryError(f"{name} must be a snake_case word, got {value!r}")
        if self.officer is not None and not _OFFICER.fullmatch(self.officer):
            raise AuditQueryError(f"officer {self.officer!r} is not a user name")
        if self.query_id is not None and not _QUERY_ID.fullmatch(self.query_id):
            raise AuditQueryError(f"query_id {self.query_id!r} is not a query id")
        if self.reference is not None and not _REFERENCE.fullmatch(self.reference):
            raise AuditQueryError(f"reference {self.reference!r} is not a reference or target")
        if self.action is not None and not _ACTION.fullmatch(self.action):
            raise AuditQueryError(f"action {self.action!r} is not an action name (hit.resolve)")
        if self.case_ref is not None and not _CASE_REF.fullmatch(self.case_ref):
            raise AuditQueryError("case_ref must be 1-64 of A-Z a-z 0-9 . _ / -")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None:
                # Stored times are UTC; SQLite compares them as text and drops an offset, so
                # every bound becomes UTC here (a naive one is taken to be UTC already).
                try:
                    utc = (
                        value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
                    )
                except OverflowError:
                    raise AuditQueryError(f"{name} is out of range once converted to UTC") from None
                object.__setattr__(self, name, utc)
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise AuditQueryError("since must be before until", reason="bad_range")

    @property
    def selects(self) -> bool:
        """Whether a filter beyond the time window is set (an export is then a selection)."""
        return any(
            v is not None
            for k, v in self.__dict__.items()
            if k not in ("since", "until", "case_ref_digest")
        )

    def matches(self, event: dict[str, Any]) -> bool:
        wanted = {
            "purpose": self.purpose,
            "outcome": self.outcome,
            "reason": self.reason,
            "officer": self.officer,
        }
        kind = event_type(event)
        if self.type is not None and kind != self.type:
            return False
        if not all(v is None or event.get(k) == v for k, v in wanted.items()):
            return False
        acted = kind == NODE_ACTION
        details = event.get("details")
        about = details if acted and isinstance(details, dict) else {}
        if self.peer is not None and not (
            event.get("peer") == self.peer or any(about.get(k) == self.peer for k in PEER_DETAILS)
        ):
            return False
        if self.query_id is not None and self.query_id not in (
            event.get("query_id"),
            about.get("query_id"),
        ):
            return False
        if self.reference is not None and not (
            event.get("reference") == self.reference
            or (acted and event.get("target") == self.reference)
        ):
            return False
        if self.case_ref is not None and not self._case_ref_matches(event):
            return False
        return self.action is None or (
            kind in (NODE_ACTION, AUDITOR_ACTION) and event.get("action") == self.action
        )

    def _case_ref_matches(self, event: dict[str, Any]) -> bool:
        if event.get("case_ref") == self.case_ref:
            return True
        logged, peer = event.get("case_ref_hmac"), event.get("peer")
        if self.case_ref_digest is None or not isinstance(logged, str):
            return False
        if not isinstance(peer, str) or self.case_ref is None:
            return False
        return hmac.compare_digest(self.case_ref_digest(peer, self.case_ref), logged)

    def to_json(self) -> dict[str, str]:
        """The filters set, as strings (what an ``auditor_action`` event records); of a
        ``case_ref`` only that it was given (:data:`CASE_REF_WITHHELD`)."""
        out: dict[str, str] = {}
        for name, value in self.__dict__.items():
            if name == "case_ref_digest" or value is None:
                continue
            if name == "case_ref":
                out[name] = CASE_REF_WITHHELD
            else:
                out[name] = value.isoformat() if isinstance(value, datetime) else str(value)
        return out


@dataclass(frozen=True)
class LoggedEvent:
    """One log entry: its index, append time, leaf hash and decoded event."""

    index: int
    created_at: datetime
    leaf_hash: bytes
    event: dict[str, Any]

    @property
    def type(self) -> str:
        return event_type(self.event)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "created_at": self.created_at.isoformat(),
            "leaf_hash": self.leaf_hash.hex(),
            "type": self.type,
            "event": self.event,
        }


class SelectionMismatchError(NodeError):
    """A selection export holds an entry its recorded filter does not match, or records a
    filter that is none: the entries are proven, the label is false (exit 5)."""

    exit_code = 5
    default_reason = "selection_mismatch"


#: Filters a selection is checked against: what the entries' bytes say (the append time of
#: ``since``/``until`` travels beside the entries, outside the proofs, so it proves nothing).
#: ``case_ref`` is none of them: a selection never records one (:func:`export_json`).
_CONTENT_FILTERS = frozenset(
    f.name
    for f in dataclasses.fields(AuditFilter)
    if f.name not in ("since", "until", "case_ref", "case_ref_digest")
)


def check_selection(export: bytes, recorded: dict[str, Any]) -> None:
    """Every entry of a selection ``export`` matches the filter it records (``recorded``);
    call it once :func:`certs.translog.verify_export` has proven the entries. Raises
    :class:`SelectionMismatchError`: a ``peer=TH`` selection relabelled ``peer=DE`` verified."""
    unknown = set(recorded) - _CONTENT_FILTERS - {"since", "until"}
    if unknown:
        raise SelectionMismatchError(f"the selection records unknown filters {sorted(unknown)}")
    try:
        flt = AuditFilter(**{k: v for k, v in recorded.items() if k in _CONTENT_FILTERS})
    except (AuditQueryError, TypeError) as exc:
        raise SelectionMismatchError(f"the selection's filter is not one: {exc}") from None
    for entry in json.loads(export)["entries"]:
        if "data" not in entry:  # a pruned entry: a selection leaves those out
            raise SelectionMismatchError(
                f"entry {entry['index']} is pruned: it matches no filter the selection records"
            )
        if not flt.matches(_decode(base64.b64decode(entry["data"]))):
            raise SelectionMismatchError(
                f"entry {entry['index']} does not match the filter the selection records"
            )


def event_type(event: dict[str, Any]) -> str:
    kind = event.get("type", event.get("event"))
    return kind if isinstance(kind, str) else "unknown"


def _decode(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
        return {"type": "undecodable", "bytes": len(data)}
    return value if isinstance(value, dict) else {"type": "undecodable", "bytes": len(data)}


def iter_events(log: TransparencyLog, flt: AuditFilter) -> Iterator[LoggedEvent]:
    """Every entry appended in the filter's time window whose event matches, oldest first."""
    if flt.since is None and flt.until is None:
        lo, hi = 0, log.size()
    else:
        lo, hi = log.index_range(flt.since, flt.until)
    for entry in log.entries(lo, hi):
        event = {"type": PRUNED} if entry.pruned else _decode(entry.data)
        if flt.matches(event):
            yield LoggedEvent(entry.index, entry.created_at, entry.leaf_hash, event)


def list_events(
    log: TransparencyLog, flt: AuditFilter, *, offset: int = 0, limit: int = DEFAULT_PAGE
) -> tuple[list[LoggedEvent], int]:
    """One page (``offset``, ``limit``) of the matching events and the number matching."""
    if offset < 0:
        raise AuditQueryError("offset must be >= 0")
    if not 1 <= limit <= MAX_PAGE:
        raise AuditQueryError(f"limit must be within 1..{MAX_PAGE}")
    page: list[LoggedEvent] = []
    total = 0
    for item in iter_events(log, flt):
        if offset <= total < offset + limit:
            page.append(item)
        total += 1
    return page, total


def _selector(flt: AuditFilter) -> Callable[[bytes], bool] | None:
    """What chooses an entry for an export of ``flt`` (``None``: every entry of its window)."""
    if not flt.selects:
        return None
    return lambda data: flt.matches(_decode(data))


def export_json(log: TransparencyLog, flt: AuditFilter) -> bytes:
    """The JSON export (with proofs) of the entries ``flt`` matches: its window's entries,
    and with any other filter set, a selection of them that records the filter. Not by
    ``case_ref``: a selection is checked offline against the filter it records, and this one
    needs the node's hit secret (and would record the case reference's text); list with it,
    then export by ``query_id``."""
    if flt.case_ref is not None:
        raise AuditQueryError(
            "a JSON export cannot select by case_ref (it is verified offline, without the "
            "node's secret): list with case_ref, then export by query_id"
        )
    return translog_json(
        log, since=flt.since, until=flt.until, select=_selector(flt), selection=flt.to_json()
    )


def export_csv(log: TransparencyLog, flt: AuditFilter) -> str:
    """The CSV export of the entries ``flt`` matches (no proofs)."""
    return translog_csv(log, since=flt.since, until=flt.until, select=_selector(flt))


def record_auditor_action(
    log: TransparencyLog, actor: str, action: str, details: dict[str, Any]
) -> int:
    """Append an ``auditor_action`` event (who searched or exported what); its index."""
    bad = FORBIDDEN_KEYS & {k.lower() for k in details}
    if bad:
        raise AuditQueryError(f"auditor actions may not carry {sorted(bad)}", reason="bad_event")
    event = {
        "type": "auditor_action",
        "actor": actor,
        "action": action,
        "details": details,
        "at": datetime.now(UTC).isoformat(),
    }
    return log.append(json.dumps(event, sort_keys=True, separators=(",", ":")).encode())


def record_check(
    log: TransparencyLog, actor: str, action: str, details: dict[str, Any], *, ok: bool
) -> None:
    """Record an integrity check or dashboard view as :func:`record_auditor_action` does.

    When the check found the store tampered with (``ok`` false), the append may fail on the
    same damage (a head row that is no compact range refuses every append): the report still
    reaches the auditor, and the node's log says the action went unrecorded."""
    try:
        record_auditor_action(log, actor, action, details)
    except TranslogError as exc:
        if ok:
            raise
        log_.error(
            "auditor action %s not recorded: the log refuses appends (%s)", action, exc.reason
        )


@dataclass(frozen=True)
class Dashboard:
    """The auditor dashboard's aggregates over one time window."""

    daily_queries: list[dict[str, Any]]
    """``{day, peer, direction (inbound|outbound), queries}`` sorted by day then peer."""
    hit_rate: dict[str, dict[str, Any]]
    """Per direction: ``{hit, no_hit, refused, error, rate}``; rate = hit / (hit + no_hit)."""
    refusals: dict[str, int]
    """Refusal reason -> number of ``query_refused`` events."""
    quota: list[dict[str, Any]] = field(default_factory=list)
    integrity: dict[str, Any] = field(default_factory=dict)
    pruned: int = 0
    """Entries of the window pruned by retention (their events are gone, not counted above)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "daily_queries": self.daily_queries,
            "hit_rate": self.hit_rate,
            "refusals": self.refusals,
            "quota": self.quota,
            "integrity": self.integrity,
            "pruned": self.pruned,
        }


def _day(item: LoggedEvent) -> str:
    at = item.event.get("at")
    if isinstance(at, str):
        try:
            return datetime.fromisoformat(at).astimezone(UTC).date().isoformat()
        except ValueError:
            pass
    return item.created_at.astimezone(UTC).date().isoformat()


def dashboard(log: TransparencyLog, engine: Engine, flt: AuditFilter) -> Dashboard:
    """Aggregate the events of ``flt``'s window (its other filters apply too)."""
    daily: Counter[tuple[str, str, str]] = Counter()
    outcomes = {"inbound": Counter[str](), "outbound": Counter[str]()}
    refusals: Counter[str] = Counter()
    pruned = 0
    for item in iter_events(log, flt):
        kind, peer = item.type, str(item.event.get("peer", "?"))
        if kind == PRUNED:
            pruned += 1
        elif kind == INBOUND_QUERY:
            daily[(_day(item), peer, "inbound")] += 1
        elif kind == OUTBOUND_QUERY:
            daily[(_day(item), peer, "outbound")] += 1
        elif kind == "reply_sent":
            outcomes["inbound"][str(item.event.get("outcome"))] += 1
        elif kind == "reply_received":
            outcomes["outbound"][str(item.event.get("outcome", item.event.get("status")))] += 1
        if kind == "query_refused":
            refusals[str(item.event.get("reason", "unknown"))] += 1
            outcomes["inbound"]["refused"] += 1
        elif kind == "query_failed":
            outcomes["inbound"]["error"] += 1
    hit_rate = {}
    for direction, counts in outcomes.items():
        hit, miss = counts["hit"], counts["no_hit"]
        refused, error = counts["refused"], counts["error"]
        rate = hit / (hit + miss) if hit + miss else None
        hit_rate[direction] = {
            "hit": hit,
            "no_hit": miss,
            "refused": refused,
            "error": error,
            "rate": rate,
        }
    return Dashboard(
        daily_queries=[
            {"day": d, "peer": p, "direction": direction, "queries": n}
            for (d, p, direction), n in sorted(daily.items())
        ],
        hit_rate=hit_rate,
        refusals=dict(sorted(refusals.items(), key=lambda kv: (-kv[1], kv[0]))),
        quota=quota_use(engine, flt.since, flt.until),
        integrity=integrity_status(log),
        pruned=pruned,
    )


def quota_use(
    engine: Engine, since: datetime | None = None, until: datetime | None = None
) -> list[dict[str, Any]]:
    """Rows of ``policy_quota_usage`` (searches granted per peer, modality, day) in the
    window; empty when the node has no quota table (no policy with quotas yet)."""
    table = quota_usage
    if not inspect(engine).has_table(table.name):
        return []
    query = select(table).order_by(table.c.day, table.c.peer, table.c.modality)
    if since is not None:
        query = query.where(table.c.day >= since.astimezone(UTC).date())
    if until is not None:
        query = query.where(table.c.day <= until.astimezone(UTC).date())
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        {"peer": r.peer, "modality": r.modality, "day": _iso_day(r.day), "used": r.used}
        for r in rows
    ]


def _iso_day(value: date | str) -> str:
    return value if isinstance(value, str) else value.isoformat()


def integrity_status(log: TransparencyLog) -> dict[str, Any]:
    """Full audit of the stored log against its signed checkpoints, and the latest one."""
    status: dict[str, Any] = {
        "origin": log.origin,
        "tree_size": log.size(),
        "latest_checkpoint": None,
    }
    try:  # a stored checkpoint that does not even parse is tampering to report, not a crash
        latest = log.latest_checkpoint()
        if latest is not None:
            cp = latest.checkpoint
            status["latest_checkpoint"] = {
                "size": cp.size,
                "timestamp": datetime.fromtimestamp(cp.timestamp_ms / 1000, UTC).isoformat(),
                "cosignatures": len(latest.cosignatures()),
            }
        report = audit_store(log)  # the log's keys, earlier ones included
    except TranslogError as exc:
        status |= {
            "ok": False,
            "reason": exc.reason,
            "message": exc.message,
            "index": getattr(exc, "index", None),
        }
        return status
    except (ValueError, OverflowError, OSError) as exc:  # a timestamp beyond the calendar
        status |= {
            "ok": False,
            "reason": "bad_checkpoint",
            "message": f"the latest checkpoint's timestamp is not a time ({exc})",
            "index": None,
        }
        return status
    status |= {
        "ok": True,
        "entries_checked": report.entries_checked,
        "entries_pruned": report.entries_pruned,
        "checkpoints_checked": report.checkpoints_checked,
        "root_hash": report.root_hash.hex(),
    }
    return status
