"""Audit of the stored log against its own signed checkpoints (``bdx audit store``).

Recomputes every leaf hash from the stored entry bytes and the whole tree from the leaves, and
compares with the stored perfect-subtree hashes, the head row and every signed checkpoint (its
stored columns too). The log may be written while it is audited: the tree audited is the head
read at the start, and entries appended since are not alarms. Any edited, deleted, inserted or
reordered entry is reported by the first index concerned, even when the attacker also rewrote
the stored hashes (the signed roots then disagree).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from certs.merkle import CompactRange, NodeID, hash_leaf
from certs.translog.checkpoint import verify_any
from certs.translog.errors import TamperedError
from certs.translog.keys import VerifyingKey
from certs.translog.params import AUDIT_CHUNK
from certs.translog.store import TransparencyLog


@dataclass(frozen=True)
class AuditReport:
    """What a successful :func:`audit_store` established."""

    origin: str
    tree_size: int
    root_hash: bytes
    entries_checked: int
    checkpoints_checked: int


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
    head = log.head()
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

    for entry in log.entries(0, head.size):
        if entry.index != cr.size:
            flush(
                TamperedError(f"entry {cr.size} is missing", reason="entry_missing", index=cr.size)
            )
        if hash_leaf(entry.data) != entry.leaf_hash:
            flush(
                TamperedError(
                    f"entry {entry.index} does not hash to its stored leaf hash",
                    reason="entry_modified",
                    index=entry.index,
                )
            )
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
    return AuditReport(log.origin, cr.size, cr.root(), cr.size, len(checkpoints))


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
