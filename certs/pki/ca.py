"""The regional root CA: a directory holding its key, certificate and issuance state.

Layout of a CA directory::

    ca.key       private key, mode 0600, optionally passphrase-encrypted
    ca.pem       self-signed root certificate (the one every node pins)
    state.json   issued and revoked serial numbers, last CRL number, last trust-list sequence

The CA is meant to run offline: it issues certificates from CSRs, revokes them, and publishes a
CRL and a signed trust list that nodes fetch.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from certs.pki import params, reasons
from certs.pki.builders import NodeCertificateBuilder, RootCaBuilder
from certs.pki.errors import CertificateRefused, PkiInputError
from certs.pki.keys import (
    PrivateKey,
    certificate_pem,
    fingerprint,
    generate_key,
    load_certificate,
    load_private_key,
    read_file,
    write_private_key,
    write_public,
)
from certs.pki.profiles import Usage
from certs.pki.revocation import RevokedEntry, build_crl
from certs.pki.trustlist import TrustListBuilder

KEY_FILE = "ca.key"
CERT_FILE = "ca.pem"
STATE_FILE = "state.json"


def _empty_state() -> dict[str, Any]:
    return {"v": 1, "crl_number": 0, "trust_list_sequence": 0, "issued": {}, "revoked": {}}


def _read_state(path: Path) -> dict[str, Any]:
    """The CA's issuance state file; a damaged one is refused (nothing issued from it)."""
    try:
        state = json.loads(read_file(path).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        state = None
    expected = _empty_state()
    if (
        not isinstance(state, dict)
        or state.get("v") != expected["v"]
        or any(type(state.get(k)) is not type(v) for k, v in expected.items())
    ):
        raise PkiInputError(
            f"{path} is not a CA state file (damaged?): restore it from the CA's backup",
            reason="bad_ca_state",
        )
    return state


class CertificateAuthority:
    """The root key and certificate plus issuance state; saved to ``directory`` if given."""

    def __init__(
        self,
        key: PrivateKey,
        cert: x509.Certificate,
        *,
        directory: Path | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.key = key
        self.cert = cert
        self.directory = directory
        self.state = state or _empty_state()

    @classmethod
    def create(
        cls,
        country: str,
        *,
        directory: str | os.PathLike[str] | None = None,
        common_name: str = "bdx regional root CA",
        passphrase: bytes | None = None,
        not_before: dt.datetime | None = None,
        validity: dt.timedelta = params.ROOT_VALIDITY,
    ) -> CertificateAuthority:
        """A new root CA; with ``directory``, written there (which must not hold a CA yet)."""
        key = generate_key()
        builder = RootCaBuilder().country(country).common_name(common_name).validity(validity)
        if not_before is not None:
            builder = builder.not_before(not_before)
        ca = cls(key, builder.sign(key))
        if directory is not None:
            ca.save(directory, passphrase=passphrase)
        return ca

    def save(self, directory: str | os.PathLike[str], *, passphrase: bytes | None = None) -> None:
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        write_private_key(target / KEY_FILE, self.key, passphrase)
        write_public(target / CERT_FILE, certificate_pem(self.cert))
        self.directory = target
        self._save_state()

    @classmethod
    def open(
        cls, directory: str | os.PathLike[str], *, passphrase: bytes | None = None
    ) -> CertificateAuthority:
        """Load the CA kept in ``directory``."""
        target = Path(directory)
        if not (target / CERT_FILE).is_file() or not (target / KEY_FILE).is_file():
            raise PkiInputError(
                f"{target} is not a CA directory (no {CERT_FILE}/{KEY_FILE})", reason="not_a_ca"
            )
        key = load_private_key(target / KEY_FILE, passphrase)
        cert = load_certificate(target / CERT_FILE)
        state_path = target / STATE_FILE
        state = _read_state(state_path) if state_path.is_file() else _empty_state()
        return cls(key, cert, directory=target, state=state)

    def _save_state(self) -> None:
        if self.directory is not None:
            text = json.dumps(self.state, indent=2, sort_keys=True) + "\n"
            write_public(self.directory / STATE_FILE, text.encode("utf-8"))

    def issue(
        self,
        csr: x509.CertificateSigningRequest,
        usage: Usage | str,
        *,
        validity: dt.timedelta = params.NODE_VALIDITY,
        not_before: dt.datetime | None = None,
    ) -> x509.Certificate:
        """Issue a node certificate for ``usage`` from ``csr`` and record it."""
        builder = NodeCertificateBuilder(csr, Usage(usage)).validity(validity)
        if not_before is not None:
            builder = builder.not_before(not_before)
        cert = builder.sign(self.key, self.cert)
        self.state["issued"][f"{cert.serial_number:x}"] = {
            "subject": cert.subject.rfc4514_string(),
            "usage": str(Usage(usage)),
            "sha256": fingerprint(cert),
            "not_after": int(cert.not_valid_after_utc.timestamp()),
        }
        self._save_state()
        return cert

    def revoke(
        self,
        cert: x509.Certificate,
        *,
        reason: x509.ReasonFlags = x509.ReasonFlags.unspecified,
        now: dt.datetime | None = None,
    ) -> None:
        """Put ``cert`` (issued by this CA) on the next CRL."""
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise CertificateRefused(
                f"certificate {cert.subject.rfc4514_string()} was not issued by this CA ({exc})",
                reason=reasons.UNKNOWN_CA,
            ) from None
        when = now or dt.datetime.now(dt.UTC)
        self.state["revoked"][f"{cert.serial_number:x}"] = {
            "at": int(when.timestamp()),
            "reason": reason.value,
        }
        self._save_state()

    def crl(
        self, *, now: dt.datetime | None = None, validity: dt.timedelta = params.CRL_VALIDITY
    ) -> x509.CertificateRevocationList:
        """Publish the next CRL (its number is one more than the last one)."""
        self.state["crl_number"] += 1
        entries = [
            RevokedEntry(
                int(serial, 16),
                dt.datetime.fromtimestamp(r["at"], dt.UTC),
                x509.ReasonFlags(r["reason"]),
            )
            for serial, r in sorted(self.state["revoked"].items())
        ]
        crl = build_crl(
            self.key,
            self.cert,
            entries,
            number=self.state["crl_number"],
            this_update=now or dt.datetime.now(dt.UTC),
            validity=validity,
        )
        self._save_state()
        return crl

    def trust_list(
        self,
        members: Sequence[tuple[str, x509.Certificate, x509.Certificate]],
        *,
        now: dt.datetime | None = None,
        validity: dt.timedelta = params.TRUST_LIST_VALIDITY,
    ) -> str:
        """Publish the next signed trust list of ``(country, tls_cert, signing_cert)`` members.

        A country given twice is listed with both pairs (a renewal: its old and new
        certificates side by side, see :meth:`TrustListBuilder.add_member`)."""
        sequence = self.state["trust_list_sequence"] + 1
        builder = TrustListBuilder().sequence(sequence).validity(validity)
        builder = builder.issued_at(now or dt.datetime.now(dt.UTC))
        for country, tls, signing in members:
            builder = builder.add_member(country, tls, signing)
        token = builder.sign(self.key, self.cert)
        self.state["trust_list_sequence"] = sequence
        self._save_state()
        return token
