"""Typed errors of the exchange log: every refusal or detected tampering raises one of these."""

from __future__ import annotations

from certs.errors import CertsError


class TranslogError(CertsError):
    """Base of exchange-log errors (exit code 5)."""

    default_reason = "translog_error"


class EntryError(TranslogError):
    """An entry to append is not acceptable (not bytes, empty, too large)."""

    default_reason = "bad_entry"


class NotFoundError(TranslogError):
    """An entry index, tree size or checkpoint the request names does not exist (yet): exit 4,
    as every "not found" of the CLI (the API answers 404), not 5 (a refusal)."""

    exit_code = 4
    default_reason = "not_found"


class HorizonTooRecentError(TranslogError):
    """A pruning asked for a horizon later than now less the shortest retention
    (:data:`~certs.translog.params.MIN_RETENTION_DAYS`): it would erase entries younger than the
    log must keep. Nothing is pruned."""

    default_reason = "horizon_too_recent"


class KeyTypeError(TranslogError):
    """A signing or verifying key is not an Ed25519 or ECDSA P-256 key."""

    default_reason = "unsupported_key"


class NoteFormatError(TranslogError):
    """A signed note or checkpoint is not in the canonical form (reason says which part)."""

    default_reason = "bad_checkpoint"


class SignatureError(TranslogError):
    """A checkpoint signature or cosignature is missing or does not verify."""

    default_reason = "bad_signature"


class OriginMismatchError(TranslogError):
    """A checkpoint or store belongs to another log than the one expected."""

    default_reason = "origin_mismatch"


class SplitViewError(TranslogError):
    """The log showed two histories that cannot both be true (same size, different roots,
    or a failed consistency proof): evidence of a forked (split-view) log."""

    default_reason = "split_view"

    def __init__(
        self, message: str, *, reason: str | None = None, evidence: tuple[bytes, ...] = ()
    ) -> None:
        super().__init__(message, reason=reason)
        self.evidence = evidence


class ProofError(TranslogError):
    """A consistency proof that cannot be checked as sent: malformed (``bad_proof``: a length
    or hash size wrong for its sizes) or made from another size than the witness's latest
    (``stale_proof``: the witness cosigned meanwhile). Neither is evidence of a fork; the log
    asks again with a fresh proof."""

    default_reason = "bad_proof"


class RollbackError(TranslogError):
    """A checkpoint is older (smaller) than one the witness already cosigned for that log."""

    default_reason = "checkpoint_rollback"


class TamperedError(TranslogError):
    """The stored log or an export disagrees with its signed checkpoints.

    ``reason`` names what: ``entry_modified``, ``entry_missing``, ``entry_inserted``,
    ``entry_reordered``, ``tree_mismatch``, ``node_missing``, ``head_mismatch``,
    ``inclusion_failed``, ``consistency_failed``, ``checkpoint_mismatch``, and about a
    pruned prefix: ``entry_erased`` (an entry's bytes deleted at or beyond the pruned
    boundary), ``prune_boundary_lowered`` (the boundary moved backwards),
    ``prune_unrecorded`` (moved forwards without a ``log_pruned`` event), ``bad_pruned_entry``
    (an export's pruned entry outside the export's pruned prefix), ``prune_unproven`` (an
    export's pruned entry that its ``log_pruned`` evidence does not cover),
    ``prune_chain_broken`` (``log_pruned`` events that do not chain), ``prune_too_recent``
    (entries pruned that a checkpoint signed after the horizon proves younger, or a
    ``log_pruned`` event whose horizon is less than the shortest retention before the first
    checkpoint holding it).
    ``index`` is the first entry index concerned, when one is known.
    """

    default_reason = "tampered"

    def __init__(
        self, message: str, *, reason: str | None = None, index: int | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.index = index


class ExportFormatError(TranslogError):
    """An export document is not valid JSON of the expected, versioned shape (exit 3: a
    malformed file; a well-formed export that fails verification is a refusal, 5)."""

    exit_code = 3
    default_reason = "bad_export"
