"""Typed errors of the node package."""

from __future__ import annotations

from matcher.errors import BdxError


class NodeError(BdxError):
    """Base of node errors (configuration, storage, peers)."""

    exit_code = 1
    default_reason = "node_error"


class NotFoundError(NodeError):
    """A named subject, record, user or file does not exist (exit code 4)."""

    exit_code = 4
    default_reason = "not_found"


class ConfigError(NodeError):
    """Settings are missing, invalid or unsafe (exit code 2)."""

    exit_code = 2
    default_reason = "bad_config"


class PeerError(NodeError):
    """A peer could not be reached or answered badly (exit code 6)."""

    exit_code = 6
    default_reason = "peer_error"
