"""C2SP signed notes: ``text`` + blank line + ``— <name> <base64(key id || signature)>`` lines."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from certs.translog.errors import NoteFormatError
from certs.translog.params import MAX_NOTE_BYTES, MAX_NOTE_SIGNATURES

SIG_PREFIX = "\u2014 "  # em dash, space


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key ID and the signature payload after the ID."""

    name: str
    key_id: bytes
    payload: bytes

    def line(self) -> str:
        return f"{SIG_PREFIX}{self.name} {base64.b64encode(self.key_id + self.payload).decode()}\n"


@dataclass(frozen=True)
class Note:
    """A parsed signed note: ``text`` (ends with a newline) and its signature lines."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def encode(self) -> bytes:
        return (self.text + "\n" + "".join(s.line() for s in self.signatures)).encode()

    def with_signatures(self, *extra: NoteSignature) -> Note:
        """A new note with ``extra`` lines appended (duplicates of existing lines dropped)."""
        merged = list(self.signatures)
        merged.extend(s for s in extra if s not in merged)
        return Note(self.text, tuple(merged))


def b64decode_canonical(value: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise NoteFormatError(f"{what} is not base64", reason="bad_base64") from None
    if base64.b64encode(raw).decode() != value:
        raise NoteFormatError(f"{what} is not canonical base64", reason="bad_base64")
    return raw


def parse_note(raw: bytes) -> Note:
    """Parse and syntax-check a signed note; signatures are not verified here."""
    if not isinstance(raw, bytes):
        raise NoteFormatError("a signed note must be bytes", reason="bad_note")
    if len(raw) > MAX_NOTE_BYTES:
        raise NoteFormatError(f"signed note over {MAX_NOTE_BYTES} bytes", reason="note_too_large")
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise NoteFormatError("signed note is not UTF-8", reason="bad_note") from None
    if any(ord(c) < 0x20 and c != "\n" for c in s):
        raise NoteFormatError("signed note has control characters", reason="bad_note")
    split = s.rfind("\n\n")
    if split < 0 or not s.endswith("\n"):
        raise NoteFormatError("signed note has no signature block", reason="bad_note")
    text, block = s[: split + 1], s[split + 2 :]
    lines = block[:-1].split("\n")
    if len(lines) > MAX_NOTE_SIGNATURES:
        raise NoteFormatError(f"more than {MAX_NOTE_SIGNATURES} signatures", reason="bad_note")
    signatures = []
    for line in lines:
        parts = line[len(SIG_PREFIX) :].split(" ") if line.startswith(SIG_PREFIX) else []
        # Key names: non-empty, no "+", no Unicode space (C2SP signed-note).
        if len(parts) != 2 or not parts[0] or any(c == "+" or c.isspace() for c in parts[0]):
            raise NoteFormatError(f"malformed signature line {line!r}", reason="bad_note")
        payload = b64decode_canonical(parts[1], "signature")
        if len(payload) < 5:
            raise NoteFormatError("signature shorter than a key ID", reason="bad_note")
        signatures.append(NoteSignature(parts[0], payload[:4], payload[4:]))
    return Note(text, tuple(signatures))
