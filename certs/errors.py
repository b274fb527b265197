"""Typed errors of the certs package: verification fails by raising one of these."""

from __future__ import annotations

from matcher.errors import BdxError


class CertsError(BdxError):
    """Base of certs errors: a certificate, signature, key or proof was refused (exit code 5)."""

    exit_code = 5
    default_reason = "certs_error"
