"""The tamper-evident exchange log: an RFC 6962/9162 Merkle tree log on SQLAlchemy with
signed checkpoints (C2SP signed-note / tlog-checkpoint), witness cosignatures
(c2sp.org/tlog-cosignature), audit exports and offline verification.

Typical node wiring::

    key = SigningKey("bdx.example.de/exchange-log", node_private_key)
    log = TransparencyLog.open(engine, key)
    log.append(encode_event("query_received", {...}))   # every exchange event
    log.maybe_issue_checkpoint()                  # from a periodic task
    export_json(log, since=..., until=...)        # bdx audit export
    verify_export(data, log_key, witness_keys)    # bdx audit verify EXPORT
    audit_store(log)                              # bdx audit store
    log.prune(horizon)                            # bdx audit prune: bytes of old entries
"""

from certs.translog.audit import AuditReport, audit_store
from certs.translog.checkpoint import (
    CHECKPOINT_FORMAT,
    Checkpoint,
    Cosignature,
    SignedCheckpoint,
    cosign,
)
from certs.translog.errors import (
    EntryError,
    ExportFormatError,
    HorizonTooRecentError,
    KeyTypeError,
    NoteFormatError,
    NotFoundError,
    OriginMismatchError,
    ProofError,
    RollbackError,
    SignatureError,
    SplitViewError,
    TamperedError,
    TranslogError,
)
from certs.translog.events import decode_event, encode_event
from certs.translog.export import EXPORT_FORMAT, EXPORT_FORMAT_PRUNED, export_csv, export_json
from certs.translog.keys import SigningKey, VerifyingKey
from certs.translog.schema import metadata
from certs.translog.store import PRUNED_EVENT, Entry, PruneResult, TransparencyLog
from certs.translog.verify import VerificationReport, verify_export
from certs.translog.witness import Witness, check_views

__all__ = [
    "CHECKPOINT_FORMAT",
    "EXPORT_FORMAT",
    "EXPORT_FORMAT_PRUNED",
    "PRUNED_EVENT",
    "AuditReport",
    "Checkpoint",
    "Cosignature",
    "Entry",
    "EntryError",
    "ExportFormatError",
    "HorizonTooRecentError",
    "KeyTypeError",
    "NotFoundError",
    "NoteFormatError",
    "OriginMismatchError",
    "ProofError",
    "PruneResult",
    "RollbackError",
    "SignatureError",
    "SignedCheckpoint",
    "SigningKey",
    "SplitViewError",
    "TamperedError",
    "TranslogError",
    "TransparencyLog",
    "VerificationReport",
    "VerifyingKey",
    "Witness",
    "audit_store",
    "check_views",
    "cosign",
    "decode_event",
    "encode_event",
    "export_csv",
    "export_json",
    "metadata",
    "verify_export",
]
