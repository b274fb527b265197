"""Certificate profiles: what a root, a TLS and a signing certificate carry, and the checks.

- root CA: ``basicConstraints CA:TRUE, pathlen:0``, key usage ``keyCertSign, cRLSign``.
- TLS (mutual TLS between peers): key usage ``digitalSignature``, EKU ``serverAuth, clientAuth``,
  a subjectAltName with the node's DNS names/IPs.
- signing (JWS messages): key usage ``digitalSignature, nonRepudiation``, EKU only the project's
  :data:`~certs.pki.params.SIGNING_EKU` (so TLS stacks refuse it), no subjectAltName.
"""

from __future__ import annotations

import enum

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID

from certs.pki import params, reasons
from certs.pki.errors import CertificateRefused

TLS_EKUS = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)


class Usage(enum.StrEnum):
    """What a node certificate is for."""

    TLS = "tls"
    SIGNING = "signing"


def key_usage(
    *, sign: bool = False, non_repudiation: bool = False, ca: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=non_repudiation,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def usage_extensions(usage: Usage) -> list[tuple[x509.ExtensionType, bool]]:
    """(extension, critical) pairs of a node certificate for ``usage`` (SAN excluded)."""
    if usage is Usage.TLS:
        return [
            (key_usage(sign=True), True),
            (x509.ExtendedKeyUsage(list(TLS_EKUS)), False),
        ]
    return [
        (key_usage(sign=True, non_repudiation=True), True),
        (x509.ExtendedKeyUsage([params.SIGNING_EKU]), False),
    ]


def _ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def check_usage(cert: x509.Certificate, usage: Usage) -> None:
    """Raise ``wrong_key_usage`` unless ``cert`` is a node certificate made for ``usage``."""
    ku = _ext(cert, x509.KeyUsage)
    eku = _ext(cert, x509.ExtendedKeyUsage)
    bc = _ext(cert, x509.BasicConstraints)
    ekus = set(eku) if isinstance(eku, x509.ExtendedKeyUsage) else set()
    problem: str | None = None
    if isinstance(bc, x509.BasicConstraints) and bc.ca:
        problem = "is a CA certificate"
    elif not isinstance(ku, x509.KeyUsage) or not ku.digital_signature:
        problem = "lacks the digitalSignature key usage"
    elif usage is Usage.TLS and not set(TLS_EKUS) <= ekus:
        problem = "lacks the serverAuth+clientAuth extended key usage"
    elif usage is Usage.TLS and params.SIGNING_EKU in ekus:
        problem = "is a message-signing certificate"
    elif usage is Usage.SIGNING and params.SIGNING_EKU not in ekus:
        problem = "lacks the bdx message-signing extended key usage"
    elif usage is Usage.SIGNING and ekus & set(TLS_EKUS):
        problem = "is a TLS certificate"
    elif usage is Usage.SIGNING and not ku.content_commitment:
        problem = "lacks the nonRepudiation key usage"
    if problem:
        raise CertificateRefused(
            f"certificate {cert.subject.rfc4514_string()} {problem}; not usable for {usage}",
            reason=reasons.WRONG_KEY_USAGE,
        )


def check_algorithms(cert: x509.Certificate) -> None:
    """Raise ``weak_algorithm`` unless the key is P-256/P-384 or Ed25519 and the hash SHA-2."""
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        ok_key = key.curve.name in params.ALLOWED_CURVES
    else:
        ok_key = isinstance(key, ed25519.Ed25519PublicKey)
    hash_alg = cert.signature_hash_algorithm
    # Ed25519 signatures carry no separate hash (None); everything else must be SHA-2 >= 256.
    ok_hash = hash_alg is None or hash_alg.name in params.ALLOWED_HASHES
    if not (ok_key and ok_hash):
        raise CertificateRefused(
            f"certificate {cert.subject.rfc4514_string()} uses a refused algorithm "
            f"({type(key).__name__}, {hash_alg.name if hash_alg else 'none'})",
            reason=reasons.WEAK_ALGORITHM,
        )
