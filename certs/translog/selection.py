"""Selection statements: the log's signed word that a filtered export left nothing out.

An export that is a *selection* (the entries of a range that a filter chose: one peer's
slice, say) proves each entry it holds, but not that the range holds no other entry the
filter chose: those are not in the file to be checked, and anyone holding it can delete
entries and their indices. The exporting log therefore signs, with its checkpoint key, a
statement naming the tree, the range, the filter and the exact indices it chose. A holder who
drops an entry must change the indices, and the statement no longer matches; one who drops
the statement leaves an export that verifies as an *unattested* selection (the report says
so). What the statement cannot do is make an untruthful log truthful: it is the log's word,
bound to its key, that it applied the recorded filter to every entry of the range.

Body (canonical, versioned; a C2SP signed note's text)::

    bdx-translog-selection/v1
    <origin>
    <tree size, decimal> <root hash, base64>
    <start> <end>
    <filter: SHA-256 hex of its canonical JSON>
    <indices: SHA-256 hex of their canonical JSON>

Six lines: a checkpoint's body has four and ends with its format line, so neither reads as
the other (:meth:`~certs.translog.checkpoint.Checkpoint.parse_body` refuses this one).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from certs.translog.errors import NoteFormatError, SignatureError, TamperedError
from certs.translog.keys import SigningKey, VerifyingKey
from certs.translog.note import Note, NoteSignature, parse_note

SELECTION_FORMAT = "bdx-translog-selection/v1"


def _digest(value: Any) -> str:
    return hashlib.sha256(
        json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


@dataclass(frozen=True)
class SelectionStatement:
    """What the log states about a selection: ``indices`` are every entry of ``[start, end)``
    in its tree (``tree_size``, ``root_hash``) that ``filter`` chose."""

    origin: str
    tree_size: int
    root_hash: bytes
    start: int
    end: int
    filter: Mapping[str, Any]
    indices: Sequence[int]

    def body(self) -> str:
        root = base64.b64encode(self.root_hash).decode()
        chosen = f"{_digest(dict(self.filter))}\n{_digest(list(self.indices))}\n"
        return (
            f"{SELECTION_FORMAT}\n{self.origin}\n{self.tree_size} {root}\n"
            f"{self.start} {self.end}\n{chosen}"
        )

    def sign(self, key: SigningKey) -> str:
        """The statement as a signed note (text), signed by the log's ``key``."""
        text = self.body()
        sig = NoteSignature(key.name, key.verifying_key().key_id(), key.sign(text.encode()))
        return Note(text, (sig,)).encode().decode()

    def verify(self, signed: str, keys: Sequence[VerifyingKey]) -> None:
        """Return if ``signed`` is this statement signed by one of the log's ``keys``; raise
        :class:`TamperedError` (``selection_altered``) when it states another selection, tree
        or range, :class:`SignatureError` when no log key signed it, and
        :class:`NoteFormatError` when it is no signed note."""
        try:
            note = parse_note(signed.encode())
        except UnicodeEncodeError:  # a lone surrogate escaped in the JSON
            raise NoteFormatError(
                "the selection statement is not UTF-8", reason="bad_note"
            ) from None
        if not note.text.startswith(SELECTION_FORMAT + "\n"):
            raise NoteFormatError(
                "the selection statement is not a " + SELECTION_FORMAT, reason="bad_note"
            )
        if note.text != self.body():
            raise TamperedError(
                "the selection's entries, filter, range or tree are not those the log signed",
                reason="selection_altered",
            )
        message = note.text.encode()
        first: SignatureError | None = None
        for key in keys:
            mine = [s for s in note.signatures if s.name == key.name and s.key_id == key.key_id()]
            for sig in mine:
                try:
                    key.verify(message, sig.payload)
                    return
                except SignatureError as exc:
                    first = first or exc
        raise first or SignatureError(
            "the selection statement is not signed by the log key", reason="unsigned"
        )
