"""Canonical bytes of an exchange event, the data of one log entry.

Canonical JSON: UTF-8, keys sorted, no insignificant whitespace, no NaN/Infinity, so the
same event always hashes to the same leaf. Events describe exchanges (queries sent and
received, policy decisions and reasons, outcomes, refusals, operator/admin/auditor
actions); biometric data never goes in the log, so keys that name biometric payloads and
raw bytes values are refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from certs.translog.errors import EntryError

EVENT_VERSION = 1
"""Written as ``"v"`` into every event: readers can tell future layouts apart."""

FORBIDDEN_KEYS = frozenset(
    {
        "template",
        "templates",
        "minutiae",
        "embedding",
        "embeddings",
        "image",
        "images",
        "fingerprint_image",
        "face_image",
        "probe",
        "sample",
        "biometric",
        "biometrics",
    }
)
"""Keys that would carry biometric data: an event with one is refused, at any depth."""


def _check(value: Any, path: str) -> None:
    if isinstance(value, bytes | bytearray | memoryview):
        raise EntryError(f"{path}: raw bytes do not belong in a log event", reason="bad_event")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise EntryError(f"{path}: event keys must be strings", reason="bad_event")
            if key.lower() in FORBIDDEN_KEYS:
                raise EntryError(
                    f"{path}.{key}: biometric data is never logged", reason="biometric_data"
                )
            _check(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]")


def encode_event(kind: str, fields: Mapping[str, Any]) -> bytes:
    """Canonical JSON bytes of the event ``kind`` (e.g. ``query_received``) with ``fields``."""
    if not kind or "event" in fields or "v" in fields:
        raise EntryError("an event needs a kind; 'event' and 'v' are reserved", reason="bad_event")
    _check(fields, "event")
    try:
        return json.dumps(
            {"event": kind, "v": EVENT_VERSION, **fields},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        ).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise EntryError(f"event is not JSON data: {exc}", reason="bad_event") from None


def decode_event(data: bytes) -> dict[str, Any]:
    """Parse an entry's bytes back into the event (for exports and audit tools)."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
        raise EntryError("entry is not a JSON event", reason="bad_event") from None
    if not isinstance(value, dict) or "event" not in value:
        raise EntryError("entry is not a JSON event", reason="bad_event")
    return value
