"""Errors of ``bdx demo``."""

from __future__ import annotations

from node.errors import NodeError


class DemoError(NodeError):
    """A demo step failed (exit code 1); the message names the step."""

    exit_code = 1
    default_reason = "demo_failed"
