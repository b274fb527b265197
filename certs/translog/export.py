"""Audit exports: entries with inclusion proofs, checkpoints and consistency proofs (JSON),
and entries alone as CSV for spreadsheets.

JSON document (``format: bdx-translog-export/v1``, or ``/v2`` when it holds pruned entries)::

    {"format", "origin", "tree_size",
     "range": {"start", "end", "since", "until"},      # entries start <= index < end
     "checkpoints": [signed note text, ...],           # increasing sizes, last one = tree_size
     "consistency": [{"size1", "size2", "proof": [b64]}, ...],   # between successive ones
     "entries": [{"index", "created_at", "leaf_hash" (hex), "data" (b64),
                  "inclusion_proof": [b64]}, ...],     # proofs against the last checkpoint
     "selection": {"filter": {...}, "indices": [int, ...],    # only in a selection
                   "attested_from": int,               # the first entry not pruned
                   "statement": signed note text},     # the log's word: nothing left out
     "pruning": {"index", "data" (b64), "inclusion_proof": [b64]}}   # only with pruned entries

A pruned entry (its bytes deleted by :meth:`TransparencyLog.prune`, its leaf hash kept) is
exported as ``{"index", "created_at", "leaf_hash", "pruned": true, "inclusion_proof"}``, no
``data``: its inclusion is proven from the leaf hash, what it said is gone. An export holding
one is ``bdx-translog-export/v2`` (v1 has none), so a verifier that predates pruning refuses it
instead of misreading it, and every export it could read is still v1. A selection leaves
pruned entries out (their data matches no filter).

An export holding pruned entries carries the evidence that the log pruned them: ``pruning``
is the latest ``log_pruned`` event under the export's checkpoint (its bytes and inclusion
proof), whose boundary is above every pruned entry exported; a verifier refuses a pruned
entry without it, so nobody can pass recent entries off as pruned by editing an export. An
export whose checkpoint predates the pruning of its entries is refused (issue a checkpoint
first). In CSV a pruned entry has an empty
``data`` cell (an appended entry is never empty).

An export holds every entry of its range, or, when it has a ``selection``, only the entries
of the range a filter chose (one peer's slice, say): ``indices`` lists them, increasing, and
``filter`` records what chose them. Each selected entry is proven as in a full export; that
no other entry of the range matched the filter cannot be (the entries left out are not in it
to be checked), so the log signs a ``statement`` naming its tree, the range from
``attested_from`` (past the pruned entries, which no filter can read), the filter and the
indices (:mod:`certs.translog.selection`): a holder who leaves entries out no longer
matches it. A verifier reports an export as a selection, never as a complete range, and
says whether the log attested it.

The bytes are canonical: sorted keys, no insignificant whitespace. ``created_at`` is the
store's clock and is not signed: what is signed about time is that each entry is in the
first checkpoint of the chain that covers it, whose timestamp (and witnesses' cosignature
times) bound when the entry was logged. Events carry their own time inside ``data``.
"""

from __future__ import annotations

import base64
import csv
import io
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from certs.translog.checkpoint import SignedCheckpoint
from certs.translog.errors import NotFoundError, SignatureError, TranslogError
from certs.translog.selection import SelectionStatement
from certs.translog.store import Entry, TransparencyLog

EXPORT_FORMAT = "bdx-translog-export/v1"
EXPORT_FORMAT_PRUNED = "bdx-translog-export/v2"
"""The format of an export that holds pruned entries (the module docstring)."""
MAX_EXPORT_CHECKPOINTS = 64
"""Most checkpoints in one export: a consistency chain through more adds bytes, not trust
(consistency is transitive), so long chains are thinned evenly, keeping both ends."""
PROOF_BATCH = 256
"""Entries whose inclusion proofs are read with one query while exporting."""
_CSV_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _b64(items: Sequence[bytes]) -> list[str]:
    return [base64.b64encode(h).decode() for h in items]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _select(
    log: TransparencyLog,
    since: datetime | None,
    until: datetime | None,
    start: int | None,
    end: int | None,
    size: int,
) -> tuple[int, int]:
    """Index range ``[lo, hi)`` within ``size``: the time window intersected with
    ``[start, end)``; empty ranges come back as ``(lo, lo)``."""
    lo, hi = (0, size) if since is None and until is None else log.index_range(since, until)
    lo = max(lo, start or 0)
    hi = min(hi, size, size if end is None else end)
    return lo, max(lo, hi)


def _chain(log: TransparencyLog, min_size: int, target: SignedCheckpoint) -> list[SignedCheckpoint]:
    """Distinct-size checkpoints from the first of at least ``min_size`` up to ``target``.

    Starting at the first checkpoint that covers the range's first entry shows (through the
    cosignatures and consistency proofs) that the entries were in the log by then."""
    by_size: dict[int, SignedCheckpoint] = {}
    for cp in log.checkpoints(min_size=min_size, max_size=target.checkpoint.size):
        if cp.checkpoint.size < target.checkpoint.size:
            by_size[cp.checkpoint.size] = cp
    chain = [by_size[s] for s in sorted(by_size)]
    if len(chain) > MAX_EXPORT_CHECKPOINTS - 1:
        step = len(chain) / (MAX_EXPORT_CHECKPOINTS - 1)
        chain = [chain[int(i * step)] for i in range(MAX_EXPORT_CHECKPOINTS - 1)]
    return [*chain, target]


def export_json(
    log: TransparencyLog,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    start: int | None = None,
    end: int | None = None,
    checkpoint: SignedCheckpoint | None = None,
    select: Callable[[bytes], bool] | None = None,
    selection: Mapping[str, str] | None = None,
) -> bytes:
    """Export the entries appended in ``[since, until)`` (or with ``start <= index < end``)
    that the checkpoint covers (default: the latest one issued), with every proof needed
    to check them offline (:func:`certs.translog.verify.verify_export`).

    ``select`` (an entry's data -> whether to export it) makes the export a selection of the
    range, and ``selection`` is the filter recorded with it (what chose the entries)."""
    target = checkpoint or log.latest_checkpoint()
    if target is None:
        raise NotFoundError("the log has issued no checkpoint yet", reason="no_checkpoint")
    size = target.checkpoint.size
    lo, hi = _select(log, since, until, start, end, size)
    out_entries: list[dict[str, object]] = []
    indices: list[int] = []
    batch: list[Entry] = []
    pruned = False
    last_pruned = -1
    attested_from = lo  # a selection: the first entry its filter could read (not pruned)
    for entry in log.entries(lo, hi):
        if select is not None and entry.pruned:
            if entry.index != attested_from:  # pruned after an entry that was not
                raise TranslogError(
                    "the log was pruned while it was exported: export again",
                    reason="pruned_during_export",
                )
            attested_from = entry.index + 1
            continue
        if select is not None and not select(entry.data):
            continue
        if entry.pruned:
            pruned, last_pruned = True, entry.index
        batch.append(entry)
        indices.append(entry.index)
        if len(batch) == PROOF_BATCH:
            out_entries.extend(_entries_with_proofs(log, batch, size))
            batch = []
    out_entries.extend(_entries_with_proofs(log, batch, size))
    # The chain starts at the first checkpoint covering the first entry exported.
    first = (indices[0] if indices else None) if select is not None else (lo if hi > lo else None)
    chain = _chain(log, hi if first is None else first + 1, target)
    consistency = [
        {
            "size1": a.checkpoint.size,
            "size2": b.checkpoint.size,
            "proof": _b64(log.consistency_proof(a.checkpoint.size, b.checkpoint.size)),
        }
        for a, b in itertools.pairwise(chain)
    ]
    doc = {
        "format": EXPORT_FORMAT_PRUNED if pruned else EXPORT_FORMAT,
        "origin": log.origin,
        "tree_size": size,
        "range": {"start": lo, "end": hi, "since": _iso(since), "until": _iso(until)},
        "checkpoints": [cp.to_bytes().decode() for cp in chain],
        "consistency": consistency,
        "entries": out_entries,
    }
    if select is not None:
        doc["selection"] = _attested(log, target, attested_from, hi, dict(selection or {}), indices)
    if pruned:
        doc["pruning"] = _pruning_evidence(log, last_pruned, size)
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _attested(
    log: TransparencyLog,
    target: SignedCheckpoint,
    start: int,
    end: int,
    selection: dict[str, str],
    indices: list[int],
) -> dict[str, object]:
    """A selection with the log's signed statement that ``indices`` are every entry of
    ``[start, end)`` its filter chose (``start``: past the pruned entries, which no filter
    can read). The statement is signed with the key of the checkpoint it names: one signed
    by an earlier key (a renewal, no checkpoint since) is refused, as a verifier holding
    that key alone would refuse the statement."""
    try:
        target.verify(log.verifying_key)
    except SignatureError:
        raise NotFoundError(
            f"the checkpoint of size {target.checkpoint.size} was signed by an earlier log key: "
            "issue a checkpoint (bdx audit checkpoint) and export again",
            reason="no_checkpoint",
        ) from None
    statement = SelectionStatement(
        log.origin,
        target.checkpoint.size,
        target.checkpoint.root_hash,
        start,
        end,
        selection,
        indices,
    )
    return {
        "filter": selection,
        "indices": indices,
        "attested_from": start,
        "statement": log.attest(statement),
    }


def _pruning_evidence(log: TransparencyLog, last_pruned: int, size: int) -> dict[str, object]:
    """The latest ``log_pruned`` event in the tree of ``size``, with its inclusion proof: its
    boundary must be above ``last_pruned`` (the last pruned entry exported)."""
    found = log.last_pruned_event(size)
    if found is None or int(found[1]["boundary"]) <= last_pruned:
        raise NotFoundError(
            f"the checkpoint of size {size} predates the pruning of entry {last_pruned}: "
            "issue a checkpoint (bdx audit checkpoint) and export again",
            reason="no_checkpoint",
        )
    index = found[0]
    (proof,) = log.inclusion_proofs([index], size)
    return {
        "index": index,
        "data": base64.b64encode(log.entry(index).data).decode(),
        "inclusion_proof": _b64(proof),
    }


def _entries_with_proofs(
    log: TransparencyLog, batch: list[Entry], size: int
) -> list[dict[str, object]]:
    proofs = log.inclusion_proofs([e.index for e in batch], size) if batch else []
    return [_entry_item(e, proof) for e, proof in zip(batch, proofs, strict=True)]


def _entry_item(entry: Entry, proof: list[bytes]) -> dict[str, object]:
    item: dict[str, object] = {
        "index": entry.index,
        "created_at": entry.created_at.isoformat(),
        "leaf_hash": entry.leaf_hash.hex(),
        "inclusion_proof": _b64(proof),
    }
    if entry.pruned:
        item["pruned"] = True
    else:
        item["data"] = base64.b64encode(entry.data).decode()
    return item


def csv_cell(text: str) -> str:
    """Neutralise spreadsheet formulas (CSV injection) by quoting a leading trigger."""
    return "'" + text if text.startswith(_CSV_FORMULA_PREFIXES) else text


def export_csv(
    log: TransparencyLog,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    start: int | None = None,
    end: int | None = None,
    select: Callable[[bytes], bool] | None = None,
) -> str:
    """Entries as CSV (``index, created_at, leaf_hash, data``), no proofs. ``data`` is the
    UTF-8 text of the entry, or ``base64:...`` for entries that are not UTF-8, and empty for
    a pruned entry. ``select`` (an entry's data -> whether to export it) keeps only the
    entries it chooses (never a pruned one)."""
    lo, hi = _select(log, since, until, start, end, log.size())
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["index", "created_at", "leaf_hash", "data"])
    for entry in log.entries(lo, hi):
        if select is not None and (entry.pruned or not select(entry.data)):
            continue
        try:
            text = entry.data.decode("utf-8")
        except UnicodeDecodeError:
            text = "base64:" + base64.b64encode(entry.data).decode()
        writer.writerow(
            [entry.index, entry.created_at.isoformat(), entry.leaf_hash.hex(), csv_cell(text)]
        )
    return buf.getvalue()
