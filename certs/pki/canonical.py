"""Canonical JSON: the byte form of every signed payload (messages, trust lists).

Rules: objects with string keys, sorted by code point; no insignificant whitespace
(``","`` and ``":"`` separators); UTF-8 without escaping non-ASCII; values are ``None``,
booleans, integers, strings, lists and objects only. **Floats are refused** (their text form is
not portable): send scores as integers in fixed point, e.g. ``round(score * 10**6)``. Integers
must fit in IEEE-754 doubles exactly (|n| <= 2**53 - 1) so that every JSON reader sees the same
number. The same value always gives the same bytes.
"""

from __future__ import annotations

import json
from typing import Any

from certs.pki import params, reasons
from certs.pki.errors import PkiInputError

# Largest integer every JSON implementation represents exactly (I-JSON, RFC 7493).
MAX_SAFE_INTEGER = 2**53 - 1


def _check(value: Any, path: str, depth: int = 0) -> None:
    if depth > params.MAX_JSON_DEPTH:
        raise PkiInputError(
            f"{path}: nested deeper than {params.MAX_JSON_DEPTH} levels", reason=reasons.MALFORMED
        )
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise PkiInputError(f"{path}: integer outside +-2**53", reason=reasons.MALFORMED)
        return
    if isinstance(value, float):
        raise PkiInputError(
            f"{path}: floats are not canonical; use integers", reason=reasons.MALFORMED
        )
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise PkiInputError(
                    f"{path}: object keys must be strings", reason=reasons.MALFORMED
                )
            _check(item, f"{path}.{key}", depth + 1)
        return
    raise PkiInputError(f"{path}: {type(value).__name__} is not JSON", reason=reasons.MALFORMED)


def canonical_json(value: Any) -> bytes:
    """The canonical UTF-8 bytes of ``value`` (see module docstring); raises on floats etc."""
    _check(value, "$")
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (e.g. from "\ud800" in parsed JSON)
        raise PkiInputError("strings must be valid Unicode", reason=reasons.MALFORMED) from None


def parse_canonical(data: bytes) -> Any:
    """Parse ``data`` and insist it is already canonical (so signed bytes have one meaning)."""
    try:
        value = json.loads(data.decode("utf-8"), parse_float=_no_float)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PkiInputError(f"payload is not JSON: {exc}", reason=reasons.MALFORMED) from None
    except RecursionError:  # nested deeper than the parser's stack
        raise PkiInputError(
            f"payload nested deeper than {params.MAX_JSON_DEPTH} levels", reason=reasons.MALFORMED
        ) from None
    if canonical_json(value) != data:
        raise PkiInputError("payload is not in canonical form", reason=reasons.MALFORMED)
    return value


def _no_float(text: str) -> Any:
    raise ValueError(f"float {text} in canonical JSON")
