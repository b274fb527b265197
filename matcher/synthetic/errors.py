"""Typed error of the synthetic generator and the argument checks that raise it."""

from __future__ import annotations

import operator

from matcher.errors import MatcherError


class SyntheticParameterError(MatcherError, ValueError):
    """A generator argument is out of range (negative count, unknown class or profile...).

    It is also a :class:`ValueError`, so callers that treat bad arguments generically work.
    """

    default_reason = "bad_synthetic_parameter"


def check_count(value: object, name: str, minimum: int = 0) -> int:
    """An integer count ``>= minimum`` (numpy integers accepted; bools and floats refused)."""
    if isinstance(value, bool):
        raise SyntheticParameterError(f"{name} must be an integer", reason="bad_count")
    try:
        n = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise SyntheticParameterError(f"{name} must be an integer", reason="bad_count") from None
    if n < minimum:
        raise SyntheticParameterError(f"{name} must be >= {minimum}, got {n}", reason="bad_count")
    return int(n)
