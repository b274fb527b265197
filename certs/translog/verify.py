"""Offline verification of an audit export (``bdx audit verify EXPORT``).

Needs only the export bytes and the public keys: the log's, and the witnesses' the auditor
trusts. Every check raises a typed error naming what failed; success returns a report.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from certs.merkle import MerkleError, hash_leaf, verify_consistency, verify_inclusion
from certs.translog.checkpoint import Checkpoint, SignedCheckpoint, verify_any
from certs.translog.errors import (
    ExportFormatError,
    NoteFormatError,
    OriginMismatchError,
    SignatureError,
    TamperedError,
)
from certs.translog.export import EXPORT_FORMAT, EXPORT_FORMAT_PRUNED
from certs.translog.keys import VerifyingKey
from certs.translog.selection import SelectionStatement
from certs.translog.store import check_pruned_horizon, pruned_event


@dataclass(frozen=True)
class VerificationReport:
    """What a successful :func:`verify_export` established."""

    origin: str
    tree_size: int
    root_hash: bytes
    checkpoint_timestamp_ms: int
    start: int
    end: int
    entries_verified: int
    checkpoints_verified: int
    entries_pruned: int = 0
    """Of the entries verified, those pruned: proven in the tree by their leaf hash, with no
    data (v2 exports)."""
    cosigners: dict[int, list[str]] = field(default_factory=dict)
    """Checkpoint size -> names of trusted witnesses with a valid cosignature on it."""
    selection: dict[str, Any] | None = None
    """The filter of an export that is a selection of its range (``None``: every entry of the
    range is in it, which the verification established). Each selected entry is proven; that
    no other entry of the range matched cannot be, only attested by the log."""
    selection_attested_from: int | None = None
    """A selection carries the log's signed statement that its entries are every one of the
    range from this index on that its filter chose (:mod:`certs.translog.selection`), and the
    statement matched. Above the range's start when its first entries were pruned (no filter
    can read them); ``None``: no statement (unattested)."""

    @property
    def selection_attested(self) -> bool:
        return self.selection_attested_from is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "tree_size": self.tree_size,
            "root_hash": base64.b64encode(self.root_hash).decode(),
            "checkpoint_timestamp_ms": self.checkpoint_timestamp_ms,
            "range": {"start": self.start, "end": self.end},
            "entries_verified": self.entries_verified,
            "entries_pruned": self.entries_pruned,
            "checkpoints_verified": self.checkpoints_verified,
            "cosigners": {str(k): v for k, v in self.cosigners.items()},
            "selection": self.selection,
            "selection_attested": self.selection_attested if self.selection is not None else None,
            "selection_attested_from": self.selection_attested_from,
        }


def _get(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise ExportFormatError(f"{where}: missing {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ExportFormatError(f"{where}: {key!r} has the wrong type")
    return value


def _hashes(values: Any, where: str) -> list[bytes]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ExportFormatError(f"{where}: a proof must be a list of base64 strings")
    try:
        return [base64.b64decode(v, validate=True) for v in values]
    except (binascii.Error, ValueError):
        raise ExportFormatError(f"{where}: a proof hash is not base64") from None


def verify_export(
    export: bytes,
    log_key: VerifyingKey | Sequence[VerifyingKey],
    witness_keys: Sequence[VerifyingKey] = (),
    *,
    min_cosignatures: int = 0,
) -> VerificationReport:
    """Check an export: checkpoint signatures and cosignatures, consistency between the
    checkpoints, the completeness and order of the entries, and every inclusion proof.

    ``min_cosignatures``: the export's last checkpoint (the tree every inclusion proof is of)
    needs that many valid cosignatures from ``witness_keys``. The earlier ones need none: the
    consistency proofs make each a prefix of the last, which the witnesses checked against the
    history they hold before cosigning; asking it of every checkpoint failed every honest log
    whose peers missed a round (a peer down for an hour left a dozen checkpoints with one
    cosignature fewer). Every cosignature present is still verified and reported.

    An export with a ``selection`` (entries a filter chose from the range) must hold exactly
    the entries its ``indices`` list, in order; the report carries its filter, since such an
    export proves its entries, not that the range holds no others that match. Its
    ``statement``, when present, must be the log's signature over that selection, tree and
    range (``selection_altered`` otherwise: entries dropped with their indices, say); the
    report then says the selection is attested.

    A pruned entry (``"pruned": true``, v2 exports) has no data: it is proven in the tree by
    its leaf hash alone and counted in :attr:`VerificationReport.entries_pruned`; the pruned
    entries must come first (a log prunes a prefix), and the export's ``pruning`` evidence
    must be a ``log_pruned`` event in the signed tree whose boundary is above each of them
    (``prune_unproven`` otherwise: an export edited to pass entries off as pruned), and whose
    horizon is at least :data:`~certs.translog.params.MIN_RETENTION_DAYS` before the export's
    checkpoint was signed (``prune_too_recent``: a pruning refuses a later horizon, so such an
    event was forged, a future horizon say).

    Raises :class:`ExportFormatError`, :class:`SignatureError` or :class:`TamperedError`
    (reason ``entry_modified``, ``entry_missing``, ``entry_reordered``, ``inclusion_failed``,
    ``consistency_failed``, ``bad_pruned_entry``, ``prune_unproven``, ``prune_too_recent``,
    ``selection_altered``).
    """
    try:
        doc = json.loads(export)
    except (ValueError, UnicodeDecodeError, RecursionError):  # nesting deeper than the stack
        raise ExportFormatError("the export is not JSON") from None
    version = _get(doc, "format", str, "export")
    if version not in (EXPORT_FORMAT, EXPORT_FORMAT_PRUNED):
        raise ExportFormatError(f"unsupported export format {doc['format']!r}", reason="bad_format")
    keys = (log_key,) if isinstance(log_key, VerifyingKey) else tuple(log_key)
    if not keys:
        raise ExportFormatError("no log key to verify the export with", reason="no_log_key")
    if _get(doc, "origin", str, "export") != keys[0].name:  # a well-formed export, another
        # log's (or the wrong key): a failed verification (exit 5), not a malformed file
        raise OriginMismatchError(f"export is of log {doc['origin']!r}, not {keys[0].name!r}")
    tree_size = _get(doc, "tree_size", int, "export")
    rng = _get(doc, "range", dict, "export")
    start, end = _get(rng, "start", int, "range"), _get(rng, "end", int, "range")
    notes = _get(doc, "checkpoints", list, "export")
    if not notes or not all(isinstance(n, str) for n in notes):
        raise ExportFormatError("export has no checkpoints")

    try:
        encoded = [n.encode() for n in notes]
    except UnicodeEncodeError:  # a lone surrogate escaped in the JSON
        raise ExportFormatError("a checkpoint is not valid UTF-8 text") from None
    try:
        chain = [SignedCheckpoint.from_bytes(n) for n in encoded]
    except NoteFormatError as exc:  # not a signed note at all: the file is malformed
        raise ExportFormatError(
            f"a checkpoint is not a signed note ({exc.message})", reason=exc.reason
        ) from None
    cosigners: dict[int, list[str]] = {}
    for signed in chain:
        verify_any(signed, keys)  # keys the log signed with, before and after a renewal
        cosigners[signed.checkpoint.size] = signed.verified_cosigners(witness_keys)
    witnessed = cosigners[chain[-1].checkpoint.size]
    if len(witnessed) < min_cosignatures:
        raise SignatureError(
            f"the last checkpoint (size {chain[-1].checkpoint.size}) has {len(witnessed)} "
            f"trusted cosignatures, {min_cosignatures} required",
            reason="too_few_cosignatures",
        )
    sizes = [s.checkpoint.size for s in chain]
    if sizes != sorted(set(sizes)):
        raise ExportFormatError("checkpoints are not in increasing size order")
    target = chain[-1].checkpoint
    if target.size != tree_size:
        raise ExportFormatError("tree_size is not the size of the last checkpoint")

    links = _get(doc, "consistency", list, "export")
    if len(links) != len(chain) - 1:
        raise ExportFormatError("one consistency proof per pair of successive checkpoints")
    for a, b, link in zip(chain, chain[1:], links, strict=False):
        s1, s2 = _get(link, "size1", int, "consistency"), _get(link, "size2", int, "consistency")
        if (s1, s2) != (a.checkpoint.size, b.checkpoint.size):
            raise ExportFormatError("consistency proof sizes do not match the checkpoints")
        proof = _hashes(_get(link, "proof", list, "consistency"), "consistency")
        try:
            verify_consistency(s1, s2, proof, a.checkpoint.root_hash, b.checkpoint.root_hash)
        except MerkleError as exc:
            raise TamperedError(
                f"checkpoint {s2} is not consistent with checkpoint {s1}: {exc.message}",
                reason="consistency_failed",
            ) from exc

    if not 0 <= start <= end <= tree_size:
        raise ExportFormatError("range is not within the checkpoint's tree")
    entries = _get(doc, "entries", list, "export")
    indices = [_get(item, "index", int, "entry") for item in entries]
    wanted, selection = _wanted(doc, start, end)
    at = 0  # position in ``wanted`` of the entry expected next
    pruned = 0
    boundary: int | None = None  # the pruning evidence's boundary, read at the first pruned
    for position, (item, index) in enumerate(zip(entries, indices, strict=True)):
        expected = wanted[at] if at < len(wanted) else end
        if index < expected or (index > expected and expected in indices[position:]):
            raise TamperedError(
                f"entry {index} is out of order or repeated", reason="entry_reordered", index=index
            )
        if index != expected or at == len(wanted):
            raise TamperedError(
                f"entry {expected} is missing from the export",
                reason="entry_missing",
                index=expected,
            )
        if _pruned(item, index, version):
            leaf = _leaf_hash(item, index)
            if pruned != at:  # the pruned entries of a log are a prefix
                raise TamperedError(
                    f"entry {index} is pruned after entries that are not",
                    reason="bad_pruned_entry",
                    index=index,
                )
            if boundary is None:
                boundary = _pruned_boundary(doc, target)
            if index >= boundary:
                raise TamperedError(
                    f"entry {index} is marked pruned but the log recorded pruning only below "
                    f"{boundary}",
                    reason="prune_unproven",
                    index=index,
                )
            pruned += 1
        else:
            try:
                data = base64.b64decode(_get(item, "data", str, "entry"), validate=True)
            except (binascii.Error, ValueError):
                raise ExportFormatError(f"entry {index}: data is not base64") from None
            leaf = hash_leaf(data)
        if leaf != _leaf_hash(item, index):
            raise TamperedError(
                f"entry {index}: data does not hash to its leaf hash",
                reason="entry_modified",
                index=index,
            )
        proof = _hashes(_get(item, "inclusion_proof", list, "entry"), f"entry {index}")
        try:
            verify_inclusion(leaf, index, target.size, proof, target.root_hash)
        except MerkleError as exc:
            raise TamperedError(
                f"entry {index} is not in the signed tree of size {target.size}: {exc.message}",
                reason="inclusion_failed",
                index=index,
            ) from exc
        at += 1
    if at != len(wanted):
        raise TamperedError(
            f"entry {wanted[at]} is missing from the export",
            reason="entry_missing",
            index=wanted[at],
        )
    attested_from: int | None = None
    if selection is not None and "statement" in doc["selection"]:
        statement = _get(doc["selection"], "statement", str, "selection")
        attested_from = _get(doc["selection"], "attested_from", int, "selection")
        if not start <= attested_from <= end or (wanted and wanted[0] < attested_from):
            raise ExportFormatError("selection: attested_from is not within the range's start")
        said = SelectionStatement(
            target.origin, target.size, target.root_hash, attested_from, end, selection, wanted
        )
        try:
            said.verify(statement, keys)
        except NoteFormatError as exc:
            raise ExportFormatError(
                f"the selection statement is not a signed note ({exc.message})", reason=exc.reason
            ) from None
    return VerificationReport(
        origin=target.origin,
        tree_size=target.size,
        root_hash=target.root_hash,
        checkpoint_timestamp_ms=target.timestamp_ms,
        start=start,
        end=end,
        entries_verified=len(entries),
        checkpoints_verified=len(chain),
        entries_pruned=pruned,
        cosigners=cosigners,
        selection=selection,
        selection_attested_from=attested_from,
    )


def _pruned_boundary(doc: dict[str, Any], target: Checkpoint) -> int:
    """The boundary the export's ``pruning`` evidence records: a ``log_pruned`` event proven
    in the signed tree of ``target``, whose horizon is at least the shortest retention
    (:data:`~certs.translog.params.MIN_RETENTION_DAYS`) before ``target`` was signed (a pruning
    refuses a later one: ``prune_too_recent``); raises :class:`TamperedError` otherwise."""
    size, root = target.size, target.root_hash
    if "pruning" not in doc:
        raise TamperedError(
            "the export has pruned entries but no evidence that the log pruned them",
            reason="prune_unproven",
        )
    evidence = _get(doc, "pruning", dict, "export")
    index = _get(evidence, "index", int, "pruning")
    try:
        data = base64.b64decode(_get(evidence, "data", str, "pruning"), validate=True)
    except (binascii.Error, ValueError):
        raise ExportFormatError("pruning: data is not base64") from None
    proof = _hashes(_get(evidence, "inclusion_proof", list, "pruning"), "pruning")
    try:
        verify_inclusion(hash_leaf(data), index, size, proof, root)
    except MerkleError as exc:
        raise TamperedError(
            f"the pruning evidence (entry {index}) is not in the signed tree of size {size}: "
            f"{exc.message}",
            reason="prune_unproven",
            index=index,
        ) from exc
    event = pruned_event(data)
    if event is None or not 0 <= event["boundary"] <= index:
        raise TamperedError(
            f"the pruning evidence (entry {index}) is not a log_pruned event",
            reason="prune_unproven",
            index=index,
        )
    check_pruned_horizon(index, event, datetime.fromtimestamp(target.timestamp_ms / 1000, UTC))
    return int(event["boundary"])


def _pruned(item: Any, index: int, version: str) -> bool:
    """Whether an export's entry is marked pruned (only a v2 export may hold one)."""
    if not isinstance(item, dict) or "pruned" not in item:
        return False
    if item["pruned"] is not True or "data" in item or version != EXPORT_FORMAT_PRUNED:
        raise ExportFormatError(
            f"entry {index}: 'pruned' is true, without 'data', and only in a "
            f"{EXPORT_FORMAT_PRUNED} export"
        )
    return True


def _leaf_hash(item: Any, index: int) -> bytes:
    try:
        return bytes.fromhex(_get(item, "leaf_hash", str, "entry"))
    except ValueError:
        raise ExportFormatError(f"entry {index}: leaf hash is not hex") from None


def _wanted(
    doc: dict[str, Any], start: int, end: int
) -> tuple[Sequence[int], dict[str, Any] | None]:
    """The indices the export must hold, in order, and the filter of a selection: every index
    of ``[start, end)``, or the ``selection``'s (increasing, within the range)."""
    if "selection" not in doc:
        return range(start, end), None
    chosen = _get(doc, "selection", dict, "export")
    wanted = _get(chosen, "indices", list, "selection")
    flt = _get(chosen, "filter", dict, "selection")
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in wanted):
        raise ExportFormatError("selection: indices must be integers")
    if any(b <= a for a, b in itertools.pairwise(wanted)):
        raise ExportFormatError("selection: indices must be increasing")
    if wanted and not (start <= wanted[0] and wanted[-1] < end):
        raise ExportFormatError("selection: an index is outside the export's range")
    return wanted, flt
