"""Typed errors of the policy package."""

from __future__ import annotations

from matcher.errors import BdxError


class PolicyError(BdxError):
    """Base of policy errors: an invalid rules file or a refused request (exit code 5)."""

    exit_code = 5
    default_reason = "policy_error"
