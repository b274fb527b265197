"""Typed errors of the regional PKI and of signed messages.

Every refusal carries a stable ``reason`` (see :mod:`certs.pki.reasons`); callers branch on the
reason, never on the message. All derive from :class:`certs.errors.CertsError` (exit code 5:
refused), except bad input (:class:`PkiInputError`, 3) and missing files
(:class:`PkiFileNotFound`, 4).
"""

from __future__ import annotations

from certs.errors import CertsError


class PkiError(CertsError):
    """Base of PKI errors."""

    default_reason = "pki_error"


class PkiInputError(PkiError):
    """Bad input to a PKI operation: an invalid country code, a malformed CSR or file (exit 3,
    bad input data, rather than a refusal)."""

    exit_code = 3
    default_reason = "bad_input"


class PkiFileNotFound(PkiInputError):
    """A file named to a PKI operation does not exist (exit 4, not found)."""

    exit_code = 4
    default_reason = "unreadable_file"


class KeyFileError(PkiError):
    """A private key file could not be written or read (exists, wrong or missing passphrase)."""

    default_reason = "bad_key"


class CertificateRefused(PkiError):
    """A certificate failed validation (expired, revoked, unknown CA, wrong usage or country)."""

    default_reason = "certificate_refused"


class TrustListRefused(PkiError):
    """A trust list was refused (bad signature, rollback, stale, malformed)."""

    default_reason = "bad_trust_list"


class CrlRefused(PkiError):
    """A certificate revocation list was refused (bad signature, rollback, stale, malformed)."""

    default_reason = "bad_crl"


class MessageRefused(PkiError):
    """A signed message (JWS) was refused (bad signature, refused algorithm, malformed)."""

    default_reason = "bad_message"
