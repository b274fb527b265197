"""Typed errors of the node's service layer; the HTTP layer maps each to a status code."""

from __future__ import annotations

from node.errors import NodeError


class AuthenticationError(NodeError):
    """No credentials, or a token that is unknown, malformed, expired or revoked (HTTP 401)."""

    exit_code = 5
    default_reason = "invalid_token"


class PermissionDeniedError(NodeError):
    """The caller is known but its role may not do this (HTTP 403)."""

    exit_code = 5
    default_reason = "forbidden"


class ConflictError(NodeError):
    """The request clashes with existing state, e.g. a name already taken (HTTP 409)."""

    exit_code = 3
    default_reason = "conflict"


class InvalidRequestError(NodeError):
    """The request is well-formed but its values are refused (HTTP 422)."""

    exit_code = 3
    default_reason = "invalid_request"


class PayloadTooLargeError(NodeError):
    """The request body exceeds the configured size limit (HTTP 413)."""

    exit_code = 3
    default_reason = "payload_too_large"


class StoreUnavailableError(NodeError):
    """The gallery store is not configured or not reachable for this operation, or its files
    could not be written (``storage_error``: no permission, disk full, I/O error) (HTTP 503;
    exit code 7, the node's storage)."""

    exit_code = 7
    default_reason = "store_unavailable"


class ExchangeUnavailableError(NodeError):
    """This node runs no peer exchange (no ``pki_dir`` or ``policy_file``), so it can neither
    query peers nor show their terms or quotas: ``no_exchange`` (HTTP 503; exit code 6, the
    peer side, as the CLI reports the 503; not a storage fault)."""

    exit_code = 6
    default_reason = "no_exchange"


class DatabaseUnavailableError(NodeError):
    """The database cannot be reached or refused the connection (HTTP 503; exit code 7, the
    node's storage)."""

    exit_code = 7
    default_reason = "database_unavailable"


class StoresDisagreeError(NodeError):
    """The database and the gallery disagree beyond what an interrupted write leaves (a
    modality's gallery missing while the database holds its records, or gallery records
    without database rows beyond the few a crash leaves): another data_dir or database, or a
    lost gallery. Nothing is changed (exit code 7, the node's storage)."""

    exit_code = 7
    default_reason = "stores_disagree"


class InternalServiceError(NodeError):
    """An unexpected failure already logged where it happened, with its traceback (HTTP 500):
    what a request is answered with when the failure itself must not travel (its frames hold
    a peer's query)."""

    exit_code = 1
    default_reason = "internal_error"


class RetryLaterError(NodeError):
    """A peer asked more than its share: ``peer_busy`` (HTTP 503, its queries' queue is full)
    or ``too_many_refusals`` (HTTP 429: requests refused before their signature verified,
    beyond its refusal budget; a verified query always gets its signed refusal, and refusals
    of this node's own making are never 429); the answer says when to ask again
    (``Retry-After``: :attr:`retry_after_s`)."""

    exit_code = 6
    default_reason = "too_many_refusals"

    def __init__(self, message: str, *, reason: str | None = None, retry_after_s: int) -> None:
        super().__init__(message, reason=reason)
        self.retry_after_s = retry_after_s
