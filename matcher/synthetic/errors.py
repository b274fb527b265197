"""Typed error of the synthetic generator."""

from __future__ import annotations

from matcher.errors import MatcherError


class SyntheticParameterError(MatcherError, ValueError):
    """A generator argument is out of range (negative count, unknown class or profile...).

    It is also a :class:`ValueError`, so callers that treat bad arguments generically work.
    """

    default_reason = "bad_synthetic_parameter"
