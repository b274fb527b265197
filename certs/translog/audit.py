"""Audit of the stored log against its own signed checkpoints (``bdx audit store``).

Recomputes every leaf hash from the stored entry bytes and the whole tree from the leaves, and
compares with the stored perfect-subtree hashes, the head row and every signed checkpoint (its
stored columns too). The log may be written while it is audited: the tree audited is the head
read at the start, and entries appended since are not alarms. Any edited, deleted, inserted or
reordered entry is reported by the first index concerned, even when the attacker also rewrote
the stored hashes (the signed roots then disagree).

A pruned prefix (:meth:`TransparencyLog.prune`) has no bytes to hash: below the head's boundary
an entry without bytes is accepted on its stored leaf hash, which the recomputed subtrees and
the signed roots still check (an altered one fails them like an edited entry). At or beyond the
boundary an entry without bytes is erased, not pruned (``entry_erased``), and the boundary must
be the one the log's latest ``log_pruned`` event recorded: one lowered below it
(``prune_boundary_lowered``) or raised past it without such an event (``prune_unrecorded``) is
tampering too. The events must form a chain (each one's ``previous`` is the boundary the one
before recorded, the first's is 0: ``prune_chain_broken``), and no event may have pruned an
entry that a signed checkpoint proves was appended after its horizon (a checkpoint of a tree
not holding it yet, signed after the horizon: ``prune_too_recent``; entries' store times are
not signed, and one moved back would otherwise let a pruning erase recent entries). Nor may
an event's horizon be later than the timestamp of the first checkpoint holding the event less
the shortest retention (:data:`~certs.translog.params.MIN_RETENTION_DAYS`): a pruning refuses
such a horizon, so an event that records one (a future one, say, which no checkpoint is signed
after) was forged to pass recent entries off as pruned (``prune_too_recent`` too).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from certs.merkle import CompactRange, NodeID, hash_leaf
from certs.translog.checkpoint import SignedCheckpoint, verify_any
from certs.translog.errors import TamperedError
from certs.translog.keys import VerifyingKey
from certs.translog.params import AUDIT_CHUNK
from certs.translog.store import TransparencyLog, check_pruned_horizon, pruned_event


@dataclass(frozen=True)
class AuditReport:
    """What a successful :func:`audit_store` established."""

    origin: str
    tree_size: int
    root_hash: bytes
    entries_checked: int
    checkpoints_checked: int
    entries_pruned: int = 0
    """Of the entries checked, those pruned (checked by their stored leaf hash alone)."""


def audit_store(
    log: TransparencyLog, log_key: VerifyingKey | Sequence[VerifyingKey] | None = None
) -> AuditReport:
    """Raise :class:`TamperedError` (or :class:`SignatureError`) unless the stored log
    matches its signed checkpoints. ``log_key`` defaults to the log's own public keys (the
    current one and those it signed with before a renewal); an auditor passes the keys it
    trusts independently. Each checkpoint must verify under one of them."""
    if log_key is None:
        keys: Sequence[VerifyingKey] = log.verifying_keys
    elif isinstance(log_key, VerifyingKey):
        keys = (log_key,)
    else:
        keys = log_key
    # Checkpoints before the head: each was issued at a size the head had reached, and the head
    # only grows, so appends and checkpoints while the audit runs raise no false alarm.
    checkpoints = log.checkpoints()
    head, boundary = log.head_state()
    initial = boundary
    for signed in checkpoints:
        verify_any(signed, keys)
        if signed.checkpoint.size > head.size:
            raise TamperedError(
                f"checkpoint of size {signed.checkpoint.size} is beyond the stored tree",
                reason="entry_missing",
                index=head.size,
            )
    by_size: dict[int, list[bytes]] = {}
    for signed in checkpoints:
        by_size.setdefault(signed.checkpoint.size, []).append(signed.checkpoint.root_hash)

    cr = CompactRange()
    pending: list[tuple[NodeID, bytes]] = []

    def flush(failure: TamperedError | None = None) -> None:
        """Compare the recomputed subtrees first: they pin a fault to the fewest leaves."""
        _compare_nodes(log, pending)
        pending.clear()
        if failure is not None:
            raise failure

    pruned = 0
    erased: int | None = None  # the first entry without bytes at or beyond the boundary
    recorded = 0  # the boundary of the latest log_pruned event read
    events: list[tuple[int, dict[str, Any]]] = []  # the log_pruned events read, in order
    for entry in log.entries(0, head.size):
        if entry.index != cr.size:
            flush(
                TamperedError(f"entry {cr.size} is missing", reason="entry_missing", index=cr.size)
            )
        if entry.pruned:
            if entry.index >= boundary and erased is None:  # a prune may have moved it
                boundary = max(boundary, log.pruned_size())  # while this audit ran
            if entry.index < boundary:
                pruned += 1
            elif erased is None:
                erased = entry.index
        elif hash_leaf(entry.data) != entry.leaf_hash:
            flush(
                TamperedError(
                    f"entry {entry.index} does not hash to its stored leaf hash",
                    reason="entry_modified",
                    index=entry.index,
                )
            )
        else:
            event = pruned_event(entry.data)
            if event is not None:
                events.append((entry.index, event))
                recorded = int(event["boundary"])
        pending.extend(cr.append(entry.leaf_hash))
        if any(root != cr.root() for root in by_size.get(cr.size, ())):
            flush(
                TamperedError(
                    f"recomputed root of size {cr.size} differs from the signed checkpoint",
                    reason="checkpoint_mismatch",
                    index=cr.size - 1,
                )
            )
        if len(pending) >= AUDIT_CHUNK:
            flush()
    flush()
    if cr.size != head.size:
        raise TamperedError(f"entry {cr.size} is missing", reason="entry_missing", index=cr.size)
    # A prune while this audit ran records its boundary beyond the audited tree.
    _check_boundary(initial, recorded, erased, moved=boundary != initial)
    _check_events(events, checkpoints, initial, int(log.now().timestamp() * 1000))
    if cr.hashes != head.hashes:
        raise TamperedError(
            "the head row does not match the stored entries", reason="head_mismatch"
        )
    beyond = log.first_beyond_head()
    if beyond is not None:
        raise TamperedError(
            f"entry {beyond} is stored beyond the tree (inserted outside the log)",
            reason="entry_inserted",
            index=beyond,
        )
    return AuditReport(log.origin, cr.size, cr.root(), cr.size, len(checkpoints), pruned)


def _check_events(
    events: Sequence[tuple[int, dict[str, Any]]],
    checkpoints: Sequence[SignedCheckpoint],
    boundary: int,
    now_ms: int,
) -> None:
    """The ``log_pruned`` events form a chain, none pruned an entry that a verified
    checkpoint of a smaller tree, signed after the event's horizon, proves recent, and each
    one's horizon is the shortest retention before the first checkpoint holding it (``now_ms``
    for an event no checkpoint holds yet).

    Events are entries too, and an old one is pruned in turn (below ``boundary``): the first
    event still read may start where a pruned one ended, which lies in the pruned prefix
    (that event's index is at or above the boundary it recorded)."""
    by_time = sorted((s.checkpoint.timestamp_ms, s.checkpoint.size) for s in checkpoints)
    by_size = sorted((s.checkpoint.size, s.checkpoint.timestamp_ms) for s in checkpoints)
    sizes = [size for size, _ in by_size]
    earliest_from = [0] * len(by_size)  # earliest time signed at a size >= by_size[i]
    for i in range(len(by_size) - 1, -1, -1):
        stamp = by_size[i][1]
        earliest_from[i] = stamp if i == len(by_size) - 1 else min(stamp, earliest_from[i + 1])
    times = [t for t, _ in by_time]
    smallest_after = [0] * len(by_time)  # smallest size signed at or after by_time[i]
    for i in range(len(by_time) - 1, -1, -1):
        size = by_time[i][1]
        smallest_after[i] = size if i == len(by_time) - 1 else min(size, smallest_after[i + 1])
    expected = 0
    for position, (index, event) in enumerate(events):
        if position == 0 and 0 < event["previous"] < boundary:
            expected = int(event["previous"])  # the event before it is pruned
        if event["previous"] != expected:
            raise TamperedError(
                f"the log_pruned event at {index} starts at {event['previous']}, not at the "
                f"{expected} the one before recorded (the boundary moved outside pruning)",
                reason="prune_chain_broken",
                index=min(expected, int(event["previous"])),
            )
        expected = int(event["boundary"])
        holding = bisect.bisect_right(sizes, index)  # the first checkpoint of a size > index
        signed_ms = earliest_from[holding] if holding < len(sizes) else now_ms
        signed = datetime.fromtimestamp(signed_ms / 1000, UTC)
        horizon_ms = int(check_pruned_horizon(index, event, signed).timestamp() * 1000)
        at = bisect.bisect_right(times, horizon_ms)
        if at < len(times) and smallest_after[at] < expected:
            proven = smallest_after[at]
            raise TamperedError(
                f"the log_pruned event at {index} pruned entries up to {expected} as older "
                f"than {event['horizon']}, but a checkpoint of size {proven} signed after "
                f"then proves entry {proven} was appended later (store times moved back)",
                reason="prune_too_recent",
                index=proven,
            )


def _check_boundary(boundary: int, recorded: int, erased: int | None, *, moved: bool) -> None:
    """The pruned boundary must be the latest ``log_pruned`` event's, and no entry at or
    beyond it may lack its bytes (``moved``: a prune ran meanwhile, and its event is beyond
    the tree audited)."""
    if boundary < recorded:
        raise TamperedError(
            f"the pruned boundary {boundary} is below the {recorded} the log recorded "
            "(moved backwards)",
            reason="prune_boundary_lowered",
            index=boundary,
        )
    if erased is not None:
        raise TamperedError(
            f"entry {erased} has no bytes but is not below the pruned boundary {boundary} "
            "(deleted outside pruning)",
            reason="entry_erased",
            index=erased,
        )
    if boundary > recorded and not moved:
        raise TamperedError(
            f"the pruned boundary {boundary} is beyond the {recorded} the log recorded "
            "(entries deleted without a log_pruned event)",
            reason="prune_unrecorded",
            index=recorded,
        )


def _compare_nodes(log: TransparencyLog, recomputed: list[tuple[NodeID, bytes]]) -> None:
    if not recomputed:
        return
    stored = log.lookup([node for node, _ in recomputed])
    for node, h in recomputed:
        if stored[node] != h:
            first = node.index << node.level
            raise TamperedError(
                f"leaves {first}..{first + (1 << node.level) - 1} do not hash to the stored "
                f"subtree (entries edited, swapped or reordered)",
                reason="tree_mismatch",
                index=first,
            )
