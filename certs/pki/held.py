"""The newest trust list and CRL a node has accepted, kept across restarts.

A running node refuses an older trust list or CRL (``rollback``), but the files on disk are
all a restarted node sees: a restored backup, or anyone able to write the shared PKI folder,
could put an older CRL back and un-revoke a certificate until that CRL goes stale. So the node
records the trust-list sequence and CRL number it holds, per pinned root, in a small JSON file
(written atomically, mode 0600) and passes them as the minimums when it starts again.

File: ``{"version": 1, "root": "<sha256 of the root, hex>", "trust_list_sequence": N,
"crl_number": M}``. A file for another root (a new regional PKI) sets no minimum; an
unreadable one is an error, never silently ignored (delete it deliberately to start afresh).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from certs.pki import reasons
from certs.pki.errors import PkiFileNotFound, PkiInputError
from certs.pki.keys import read_file

VERSION = 1
#: A record is about 150 bytes; a file far larger is none, and is read no further.
MAX_HELD_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Held:
    """What was accepted last under the root with SHA-256 fingerprint ``root``."""

    root: str
    trust_list_sequence: int
    crl_number: int


def read_held(path: Path, root: str) -> Held | None:
    """The record for ``root`` in ``path``; None when there is no file or it is another
    root's. Raises :class:`PkiInputError` (``malformed``) for a file that does not parse."""
    try:
        raw = read_file(path, max_bytes=MAX_HELD_FILE_BYTES)  # a FIFO is refused, not waited on
    except PkiFileNotFound:
        return None
    try:
        data = json.loads(raw)
        if data.get("version") != VERSION:
            raise ValueError(f"version {data.get('version')!r}")
        held = Held(str(data["root"]), int(data["trust_list_sequence"]), int(data["crl_number"]))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise PkiInputError(
            f"{path}: not a held-documents record ({exc}); delete it only to trust the files "
            "on disk as they are",
            reason=reasons.MALFORMED,
        ) from exc
    return held if held.root == root else None


def write_held(path: Path, held: Held) -> None:
    """Replace ``path`` atomically with ``held`` (0600; the folder is created if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps(
        {
            "version": VERSION,
            "root": held.root,
            "trust_list_sequence": held.trust_list_sequence,
            "crl_number": held.crl_number,
        }
    ).encode()
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
