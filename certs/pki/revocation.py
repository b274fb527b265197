"""Revocation: the root CA's X.509 CRL (RFC 5280), built, loaded and checked.

A node accepts a CRL only if the pinned root signed it, its number is not lower than the one it
holds (no rollback), and it is not stale (``now`` <= next update + grace).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs.pki import params, reasons
from certs.pki.builders import signature_hash
from certs.pki.errors import CertificateRefused, CrlRefused
from certs.pki.keys import PrivateKey


@dataclass(frozen=True)
class RevokedEntry:
    serial: int
    revoked_at: dt.datetime
    reason: x509.ReasonFlags = x509.ReasonFlags.unspecified


def build_crl(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    revoked: Iterable[RevokedEntry],
    *,
    number: int,
    this_update: dt.datetime,
    validity: dt.timedelta = params.CRL_VALIDITY,
) -> x509.CertificateRevocationList:
    """A CRL numbered ``number`` listing ``revoked``, valid until ``this_update + validity``."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(this_update)
        .next_update(this_update + validity)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    for entry in revoked:
        item = (
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revoked_at)
        )
        if entry.reason is not x509.ReasonFlags.unspecified:
            item = item.add_extension(x509.CRLReason(entry.reason), critical=False)
        builder = builder.add_revoked_certificate(item.build())
    return builder.sign(ca_key, signature_hash(ca_key))


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Crl:
    """A verified CRL: its number, update times and revoked serial numbers."""

    number: int
    this_update: dt.datetime
    next_update: dt.datetime
    revoked: frozenset[int]
    raw: bytes

    def check(self, cert: x509.Certificate) -> None:
        """Raise ``revoked`` if ``cert``'s serial number is on this CRL."""
        if cert.serial_number in self.revoked:
            raise CertificateRefused(
                f"certificate {cert.subject.rfc4514_string()} (serial {cert.serial_number:x}) "
                "is revoked",
                reason=reasons.REVOKED,
            )

    def check_fresh(self, now: dt.datetime, grace: dt.timedelta) -> None:
        if now > self.next_update + grace:
            raise CrlRefused(
                f"the CRL (number {self.number}) was due for update at "
                f"{self.next_update:%Y-%m-%d %H:%M}Z",
                reason=reasons.STALE_CRL,
            )


def load_crl(
    data: bytes,
    root: x509.Certificate,
    *,
    now: dt.datetime,
    grace: dt.timedelta = params.DEFAULT_GRACE,
    min_number: int | None = None,
) -> Crl:
    """Parse and verify a CRL (PEM or DER) against the pinned root."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            crl = x509.load_pem_x509_crl(data)
        else:
            crl = x509.load_der_x509_crl(data)
        number_ext = crl.extensions.get_extension_for_class(x509.CRLNumber).value
        next_update = crl.next_update_utc
    except (ValueError, x509.ExtensionNotFound) as exc:
        raise CrlRefused(f"not a usable CRL: {exc}", reason=reasons.MALFORMED) from None
    if next_update is None:
        raise CrlRefused("the CRL has no next update time", reason=reasons.MALFORMED)
    if crl.issuer != root.subject or not crl.is_signature_valid(root.public_key()):  # type: ignore[arg-type]
        raise CrlRefused(
            "the CRL is not signed by the pinned root CA", reason=reasons.BAD_SIGNATURE
        )
    hash_alg = crl.signature_hash_algorithm
    if hash_alg is not None and hash_alg.name not in params.ALLOWED_HASHES:
        raise CrlRefused(f"the CRL is signed with {hash_alg.name}", reason=reasons.WEAK_ALGORITHM)
    if min_number is not None and number_ext.crl_number < min_number:
        raise CrlRefused(
            f"CRL number {number_ext.crl_number} is older than the held {min_number}",
            reason=reasons.ROLLBACK,
        )
    result = Crl(
        number=number_ext.crl_number,
        this_update=crl.last_update_utc,
        next_update=next_update,
        revoked=frozenset(r.serial_number for r in crl),
        raw=data,
    )
    result.check_fresh(now, grace)
    return result
