"""A node's own TLS and signing certificates and keys, validated together and held as one value.

:func:`load_own` takes the four files as read once (:func:`read_own`), checks that each key
belongs to its certificate, validates both certificates against the trust anchors (in date,
unrevoked, in the trust list, one country) and builds the mutual-TLS contexts from the same
files; files that changed while they were read are refused (``files_changed``), so a context
never holds other material than the pair that was validated. :class:`OwnPair` is immutable: a
node that picks up renewed files swaps the whole pair, and a signature and the certificate sent
with it, or a TLS key and its certificate, never come from two generations.
"""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509

from certs.errors import CertsError
from certs.pki import names, params, reasons
from certs.pki.errors import CertificateRefused, KeyFileError, PkiInputError
from certs.pki.keys import PrivateKey, fingerprint, load_certificate, load_private_key, read_file
from certs.pki.profiles import Usage
from certs.pki.tls import client_context, server_context
from certs.pki.validate import Identity, TrustAnchors

if TYPE_CHECKING:
    from pathlib import Path

    from certs.pki.credentials import NodePaths

#: Reason of a pair whose files changed while they were read (read again next time).
FILES_CHANGED = "files_changed"


@dataclass(frozen=True)
class OwnFiles:
    """The bytes of a node's certificate and key files, as read at one time."""

    tls_cert: bytes
    tls_key: bytes
    signing_cert: bytes
    signing_key: bytes


def read_own(paths: NodePaths) -> OwnFiles:
    """Read the node's four certificate and key files (typed errors when one cannot be)."""
    return OwnFiles(
        _read_pem(paths.tls_cert),
        _read_pem(paths.tls_key),
        _read_pem(paths.signing_cert),
        _read_pem(paths.signing_key),
    )


def _read_pem(path: Path) -> bytes:
    return read_file(path, max_bytes=params.MAX_PEM_FILE_BYTES)


@dataclass(frozen=True)
class OwnPair:
    """The node's validated TLS and signing material and the TLS contexts built from it."""

    files: OwnFiles
    tls_cert: x509.Certificate
    signing_cert: x509.Certificate
    signing_key: PrivateKey
    #: As validated; ``None`` only for a pair loaded with ``check=False`` that was refused.
    tls_identity: Identity | None
    signing_identity: Identity | None
    server: ssl.SSLContext  # the peer listener's: presents tls_cert, requires a client's
    client: ssl.SSLContext  # outbound connections to peers

    @property
    def subject_country(self) -> str | None:
        """The ``C=`` of the TLS certificate's subject (the country when it was refused)."""
        return names.country_of(self.tls_cert.subject)

    def summary(self) -> str:
        """Serials and SHA-256 fingerprints of both certificates (no key material)."""
        return ", ".join(
            f"{usage} certificate serial {cert.serial_number:x} (SHA-256 {fingerprint(cert)})"
            for usage, cert in (("TLS", self.tls_cert), ("signing", self.signing_cert))
        )


def _check_key(cert: x509.Certificate, key: PrivateKey, cert_file: object) -> None:
    if key.public_key() != cert.public_key():
        raise KeyFileError(
            f"the key beside {cert_file} is not the key of that certificate",
            reason=reasons.KEY_MISMATCH,
        )


def load_own(
    paths: NodePaths,
    anchors: TrustAnchors,
    *,
    passphrase: bytes | None = None,
    now: dt.datetime | None = None,
    country: str | None = None,
    files: OwnFiles | None = None,
    check: bool = True,
) -> OwnPair:
    """Validate the node's pair (``files``, or the files read now) against ``anchors``; with
    ``country``, it must be that country's. Raises a :class:`~certs.pki.errors.PkiError`
    with the reason (``key_mismatch``, ``not_in_trust_list``, ``revoked``, ...). With
    ``check=False`` a pair the anchors refuse (expired, revoked, unlisted) is loaded all the
    same, without identities, for a node or command that must run meanwhile; its keys must
    still be its certificates' and its subject must name a country."""
    got = files or read_own(paths)
    tls_cert = load_certificate(got.tls_cert)
    signing_cert = load_certificate(got.signing_cert)
    _check_key(tls_cert, load_private_key(got.tls_key, passphrase), paths.tls_cert)
    signing_key = load_private_key(got.signing_key, passphrase)
    _check_key(signing_cert, signing_key, paths.signing_cert)
    tls_identity: Identity | None = None
    signing_identity: Identity | None = None
    try:
        tls_identity = anchors.validate(tls_cert, Usage.TLS, expected_country=country, now=now)
        signing_identity = anchors.validate(
            signing_cert, Usage.SIGNING, expected_country=tls_identity.country, now=now
        )
    except CertsError:
        if check or names.country_of(tls_cert.subject) is None:
            raise
        tls_identity = signing_identity = None
    try:
        server = server_context(paths.tls_cert, paths.tls_key, paths.root, passphrase=passphrase)
        client = client_context(paths.tls_cert, paths.tls_key, paths.root, passphrase=passphrase)
    except (ssl.SSLError, OSError) as exc:  # changed under us, or refused by OpenSSL
        raise KeyFileError(
            f"cannot load {paths.tls_cert} for TLS: {exc}", reason=reasons.BAD_KEY
        ) from None
    if (_read_pem(paths.tls_cert), _read_pem(paths.tls_key)) != (got.tls_cert, got.tls_key):
        raise PkiInputError(
            f"{paths.tls_cert} or its key changed while it was read", reason=FILES_CHANGED
        )
    if fingerprint(load_certificate(paths.root)) != fingerprint(anchors.root):
        raise CertificateRefused(
            f"{paths.root} is not the root this node pinned (a new root needs a restart)",
            reason=reasons.UNKNOWN_CA,
        )
    return OwnPair(
        got, tls_cert, signing_cert, signing_key, tls_identity, signing_identity, server, client
    )
