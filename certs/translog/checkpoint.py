"""Checkpoints (c2sp.org/tlog-checkpoint with one bdx extension line) and cosignatures.

Body (canonical, versioned)::

    <origin>
    <tree size, decimal>
    <root hash, base64>
    bdx-checkpoint/v1 <timestamp, Unix milliseconds>

The body is the text of a C2SP signed note signed by the log; witnesses add
c2sp.org/tlog-cosignature lines (``cosignature/v1`` / ``time <s>`` / body), so the whole
object stays readable by standard checkpoint tooling.
"""

from __future__ import annotations

import base64
import re
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from certs.merkle import HASH_SIZE
from certs.translog.errors import NoteFormatError, SignatureError
from certs.translog.keys import SigningKey, VerifyingKey
from certs.translog.note import Note, NoteSignature, b64decode_canonical, parse_note
from certs.translog.params import CLOCK_SKEW_S, MAX_TIMESTAMP

CHECKPOINT_FORMAT = "bdx-checkpoint/v1"
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")


#: Largest size or timestamp a checkpoint may carry: a signed 64-bit integer, as stored.
MAX_DECIMAL = 2**63 - 1


def _decimal(value: str, what: str) -> int:
    if not _DECIMAL.fullmatch(value) or int(value) > MAX_DECIMAL:
        raise NoteFormatError(
            f"{what} {value!r} is not a canonical decimal below 2^63", reason="bad_checkpoint"
        )
    return int(value)


@dataclass(frozen=True)
class Checkpoint:
    """A log's statement: its tree of ``size`` leaves has ``root_hash`` (at ``timestamp_ms``)."""

    origin: str
    size: int
    root_hash: bytes
    timestamp_ms: int

    def body(self) -> str:
        root = base64.b64encode(self.root_hash).decode()
        return f"{self.origin}\n{self.size}\n{root}\n{CHECKPOINT_FORMAT} {self.timestamp_ms}\n"

    @classmethod
    def parse_body(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) != 5 or lines[4] != "":
            raise NoteFormatError("checkpoint body must have 4 lines", reason="bad_checkpoint")
        origin, size, root, ext = lines[:4]
        if not origin or origin != origin.strip():
            raise NoteFormatError("checkpoint origin is empty or padded", reason="bad_checkpoint")
        root_hash = b64decode_canonical(root, "checkpoint root hash")
        if len(root_hash) != HASH_SIZE:
            raise NoteFormatError("checkpoint root hash is not 32 bytes", reason="bad_checkpoint")
        version, _, stamp = ext.partition(" ")
        if version != CHECKPOINT_FORMAT:
            raise NoteFormatError(
                f"unsupported checkpoint format {version!r}", reason="unsupported_checkpoint"
            )
        return cls(origin, _decimal(size, "size"), root_hash, _decimal(stamp, "timestamp"))


@dataclass(frozen=True)
class Cosignature:
    """A witness's timestamped statement that ``checkpoint`` is the largest consistent one
    it has seen for that log (c2sp.org/tlog-cosignature)."""

    witness: str
    key_id: bytes
    timestamp: int
    signature: bytes

    def note_signature(self) -> NoteSignature:
        return NoteSignature(
            self.witness, self.key_id, struct.pack(">Q", self.timestamp) + self.signature
        )

    @classmethod
    def from_note_signature(cls, sig: NoteSignature) -> Cosignature:
        if len(sig.payload) < 9:
            raise NoteFormatError("cosignature too short", reason="bad_cosignature")
        (stamp,) = struct.unpack(">Q", sig.payload[:8])
        return cls(sig.name, sig.key_id, stamp, sig.payload[8:])

    def verify(self, checkpoint: Checkpoint, key: VerifyingKey, now: float | None = None) -> None:
        """Raise unless this cosignature by ``key`` covers ``checkpoint``."""
        if self.witness != key.name or self.key_id != key.key_id("cosignature"):
            raise SignatureError(f"cosignature is not by witness {key.name}")
        if not 0 <= self.timestamp <= MAX_TIMESTAMP:
            raise SignatureError("cosignature timestamp is out of range", reason="bad_timestamp")
        if self.timestamp > (time.time() if now is None else now) + CLOCK_SKEW_S:
            raise SignatureError("cosignature timestamp is in the future", reason="bad_timestamp")
        key.verify(cosigned_message(checkpoint, self.timestamp), self.signature)


def cosigned_message(checkpoint: Checkpoint, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{checkpoint.body()}".encode()


def cosign(checkpoint: Checkpoint, key: SigningKey, timestamp: int | None = None) -> Cosignature:
    """Cosign ``checkpoint`` with a witness key (callers check consistency first)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    verifying = key.verifying_key()
    return Cosignature(
        key.name,
        verifying.key_id("cosignature"),
        stamp,
        key.sign(cosigned_message(checkpoint, stamp)),
    )


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint together with its signed note (log signature, then cosignatures)."""

    checkpoint: Checkpoint
    note: Note

    @classmethod
    def sign(cls, checkpoint: Checkpoint, key: SigningKey) -> SignedCheckpoint:
        text = checkpoint.body()
        sig = NoteSignature(key.name, key.verifying_key().key_id(), key.sign(text.encode()))
        return cls(checkpoint, Note(text, (sig,)))

    @classmethod
    def from_bytes(cls, raw: bytes) -> SignedCheckpoint:
        note = parse_note(raw)
        return cls(Checkpoint.parse_body(note.text), note)

    def to_bytes(self) -> bytes:
        return self.note.encode()

    def verify(self, log_key: VerifyingKey) -> None:
        """Raise unless the log's key signed this checkpoint (and its origin is the key name)."""
        if self.checkpoint.origin != log_key.name:
            raise SignatureError(
                f"checkpoint origin {self.checkpoint.origin!r} is not log {log_key.name!r}",
                reason="origin_mismatch",
            )
        key_id = log_key.key_id()
        mine = [s for s in self.note.signatures if s.name == log_key.name and s.key_id == key_id]
        if not mine:
            raise SignatureError("checkpoint is not signed by the log key", reason="unsigned")
        for sig in mine:
            log_key.verify(self.note.text.encode(), sig.payload)

    def cosignatures(self) -> list[Cosignature]:
        """Lines that may be cosignatures (not the log's), unverified."""
        origin = self.checkpoint.origin
        return [
            Cosignature.from_note_signature(s)
            for s in self.note.signatures
            if s.name != origin and len(s.payload) >= 9
        ]

    def verified_cosigners(self, witness_keys: Iterable[VerifyingKey]) -> list[str]:
        """Names of the given witnesses with a valid cosignature here; a known witness's
        cosignature that fails verification raises (C2SP: reject the whole note)."""
        found: list[str] = []
        for key in witness_keys:
            key_id = key.key_id("cosignature")
            for sig in self.note.signatures:
                if sig.name == key.name and sig.key_id == key_id:
                    Cosignature.from_note_signature(sig).verify(self.checkpoint, key)
                    if key.name not in found:
                        found.append(key.name)
        return found

    def with_cosignatures(self, *cosignatures: Cosignature) -> SignedCheckpoint:
        return SignedCheckpoint(
            self.checkpoint, self.note.with_signatures(*(c.note_signature() for c in cosignatures))
        )


def verify_any(signed: SignedCheckpoint, keys: Sequence[VerifyingKey]) -> None:
    """Raise the first key's :class:`SignatureError` unless one of ``keys`` signed it."""
    if not keys:
        raise SignatureError("no key to verify the checkpoints with")
    first: SignatureError | None = None
    for key in keys:
        try:
            signed.verify(key)
            return
        except SignatureError as exc:
            first = first or exc
    assert first is not None
    raise first
