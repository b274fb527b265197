"""Tunables of the exchange log, each with the reason for its value."""

from __future__ import annotations

MAX_ENTRY_BYTES = 1 << 20
"""Largest entry accepted (1 MiB). Entries are canonical JSON of one exchange event (a few
hundred bytes); anything near this size is a bug or abuse, not an event."""

MAX_NOTE_BYTES = 1 << 20
"""Largest signed note parsed (1 MiB), as the Go reference parsers cap it."""

MAX_NOTE_SIGNATURES = 100
"""Most signature lines parsed in one note: the Go sumdb/note cap; C2SP requires >= 16."""

CHECKPOINT_INTERVAL_S = 60.0
"""Default age after which the periodic task issues a new checkpoint even if the size did not
change: witnesses then see a fresh timestamp every minute, so a frozen log is noticed."""

AUDIT_CHUNK = 5000
"""Entries read per query when auditing or exporting: bounded memory, few round trips."""

INSERT_CHUNK = 2000
"""Rows per multi-row INSERT in batch appends: stays under SQLite's 32766 bound parameters
(4 columns per entry row) while amortising statement overhead."""

CLOCK_SKEW_S = 300
"""Cosignature timestamps further than this in the future are refused (5 minutes of clock
skew between nodes, as is usual for signed tokens)."""

MAX_TIMESTAMP = (1 << 63) - 1
"""Largest cosignature timestamp (seconds): it travels as an unsigned 64-bit number and is
stored in a signed 64-bit column. A negative or larger one, validly signed by a peer, was
stored and then broke every read of the checkpoint (exports, audits, later rounds)."""

MAX_EXPORT_MIB = 256
"""Largest export ``bdx audit verify`` reads by default (MiB): the verifier holds the parsed
JSON, about 8 times the file's size, so 256 MiB needs about 2 GiB of memory; a larger export
is refused up front instead of failing part-way (``--max-mib`` raises the bound)."""

MIN_RETENTION_DAYS = 365
"""Shortest time an entry's bytes are kept (days): the data-protection authority reviews the
logged exchanges yearly, and a shorter log would be gone before it looks. A pruning with a
later horizon is refused, and a ``log_pruned`` event whose horizon is less than this before
the first checkpoint holding it (now, if none does; give or take ``CLOCK_SKEW_S``) is
tampering: it erased entries a checkpoint proves recent.
The node's ``exchange_log_days`` may not go below it."""

PRUNE_BATCH = 5000
"""Most entries one pruning transaction deletes the bytes of (one ``log_pruned`` event each):
the head row stays locked, and appends wait, for no more than one ``AUDIT_CHUNK``-sized
update; a long backlog is pruned batch after batch."""
