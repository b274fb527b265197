"""Immutable builders (pyca style: every method returns a new builder) for the region's
certificate signing requests, root certificate and node certificates."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, replace

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from certs.pki import names, params, profiles, reasons
from certs.pki.errors import PkiInputError
from certs.pki.keys import PrivateKey
from certs.pki.profiles import Usage

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def signature_hash(key: PrivateKey) -> hashes.SHA256 | None:
    """The hash to sign with ``key``: SHA-256, or ``None`` for Ed25519 (which hashes itself)."""
    # Ed25519 signs the message itself; cryptography wants ``None`` as the hash there.
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class CsrBuilder:
    """A node's certificate signing request: country, node name, usage, SANs (TLS only)."""

    _country: str | None = None
    _node_name: str | None = None
    _usage: Usage | None = None
    _dns: tuple[str, ...] = ()
    _ips: tuple[IPAddress, ...] = ()

    def country(self, code: str) -> CsrBuilder:
        return replace(self, _country=names.validate_country(code))

    def node_name(self, name: str) -> CsrBuilder:
        return replace(self, _node_name=names.validate_node_name(name))

    def usage(self, usage: Usage | str) -> CsrBuilder:
        return replace(self, _usage=Usage(usage))

    def dns_names(self, dns: Sequence[str]) -> CsrBuilder:
        return replace(self, _dns=self._dns + tuple(names.validate_dns_name(d) for d in dns))

    def ip_addresses(self, ips: Sequence[str | IPAddress]) -> CsrBuilder:
        try:
            parsed = tuple(ipaddress.ip_address(ip) for ip in ips)
        except ValueError as exc:
            raise PkiInputError(str(exc), reason="invalid_ip") from None
        return replace(self, _ips=self._ips + parsed)

    def sign(self, key: PrivateKey) -> x509.CertificateSigningRequest:
        if self._country is None or self._usage is None:
            raise PkiInputError("a CSR needs a country and a usage", reason=reasons.BAD_CSR)
        node = self._node_name or f"bdx-{self._country.lower()}"
        builder = x509.CertificateSigningRequestBuilder().subject_name(
            names.subject_name(self._country, f"{node}-{self._usage}")
        )
        if self._usage is Usage.TLS:
            if not (self._dns or self._ips):
                raise PkiInputError("a TLS CSR needs a DNS name or IP", reason=reasons.BAD_CSR)
            sans: list[x509.GeneralName] = [x509.DNSName(d) for d in self._dns]
            sans += [x509.IPAddress(ip) for ip in self._ips]
            builder = builder.add_extension(
                x509.SubjectAlternativeName(_checked_sans(sans)), critical=False
            )
        elif self._dns or self._ips:
            raise PkiInputError(
                "signing certificates carry no DNS names/IPs", reason=reasons.BAD_CSR
            )
        return builder.sign(key, signature_hash(key))


@dataclass(frozen=True)
class RootCaBuilder:
    """The regional root CA's self-signed certificate."""

    _country: str | None = None
    _name: str = "bdx regional root CA"
    _not_before: dt.datetime | None = None
    _validity: dt.timedelta = params.ROOT_VALIDITY

    def country(self, code: str) -> RootCaBuilder:
        return replace(self, _country=names.validate_country(code))

    def common_name(self, name: str) -> RootCaBuilder:
        return replace(self, _name=name)

    def not_before(self, when: dt.datetime) -> RootCaBuilder:
        return replace(self, _not_before=when)

    def validity(self, period: dt.timedelta) -> RootCaBuilder:
        return replace(self, _validity=period)

    def sign(self, key: PrivateKey) -> x509.Certificate:
        if self._country is None:
            raise PkiInputError("the root CA needs a country", reason=reasons.INVALID_COUNTRY)
        start = self._not_before or _utcnow() - params.BACKDATE
        subject = names.subject_name(self._country, self._name)
        public = key.public_key()
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + self._validity)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(profiles.key_usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, signature_hash(key))
        )


@dataclass(frozen=True)
class NodeCertificateBuilder:
    """A node certificate issued by the root from a CSR, for one usage (TLS or signing).

    The subject (country, name) and, for TLS, the SANs are taken from the CSR after checking
    its signature and country; a validity window may be set explicitly (e.g. in the past, to
    test expiry handling).
    """

    _csr: x509.CertificateSigningRequest
    _usage: Usage
    _not_before: dt.datetime | None = None
    _validity: dt.timedelta = params.NODE_VALIDITY
    _serial: int | None = None

    def not_before(self, when: dt.datetime) -> NodeCertificateBuilder:
        return replace(self, _not_before=when)

    def validity(self, period: dt.timedelta) -> NodeCertificateBuilder:
        return replace(self, _validity=period)

    def serial_number(self, serial: int) -> NodeCertificateBuilder:
        return replace(self, _serial=serial)

    def sign(self, ca_key: PrivateKey, ca_cert: x509.Certificate) -> x509.Certificate:
        csr = self._csr
        if not csr.is_signature_valid:
            raise PkiInputError("the CSR's signature is invalid", reason=reasons.BAD_CSR)
        country = names.country_of(csr.subject)
        if country is None:
            raise PkiInputError(
                "the CSR's subject has no valid C= country", reason=reasons.INVALID_COUNTRY
            )
        cn = names.common_name_of(csr.subject) or f"bdx-{country.lower()}-{self._usage}"
        try:
            names.validate_node_name(cn)
        except PkiInputError as exc:
            raise PkiInputError(f"the CSR's CN: {exc.message}", reason=reasons.BAD_CSR) from None
        public = csr.public_key()
        if not (
            isinstance(public, ed25519.Ed25519PublicKey)
            or (
                isinstance(public, ec.EllipticCurvePublicKey)
                and public.curve.name in params.ALLOWED_CURVES
            )
        ):
            raise PkiInputError(
                "the CSR key must be ECDSA P-256/P-384 or Ed25519", reason=reasons.WEAK_ALGORITHM
            )
        start = self._not_before or _utcnow() - params.BACKDATE
        builder = (
            x509.CertificateBuilder()
            .subject_name(names.subject_name(country, cn))
            .issuer_name(ca_cert.subject)
            .public_key(public)
            .serial_number(self._serial or x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(min(start + self._validity, ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
        )
        for ext, critical in profiles.usage_extensions(self._usage):
            builder = builder.add_extension(ext, critical=critical)
        if self._usage is Usage.TLS:
            try:
                san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            except x509.ExtensionNotFound:
                raise PkiInputError(
                    "a TLS CSR needs a subjectAltName", reason=reasons.BAD_CSR
                ) from None
            builder = builder.add_extension(
                x509.SubjectAlternativeName(_checked_sans(list(san))), critical=False
            )
        return builder.sign(ca_key, signature_hash(ca_key))


def _checked_sans(sans: list[x509.GeneralName]) -> list[x509.GeneralName]:
    """``sans`` if a node's TLS certificate may carry them: 1 to ``MAX_SAN_ENTRIES`` DNS names
    (:func:`names.validate_dns_name`) and IP addresses, nothing else (no e-mail, URI or
    directory names, which no peer checks and a CA should not vouch for unasked)."""
    if not 0 < len(sans) <= params.MAX_SAN_ENTRIES:
        raise PkiInputError(
            f"a TLS certificate carries 1 to {params.MAX_SAN_ENTRIES} DNS names or IP addresses,"
            f" not {len(sans)}",
            reason=reasons.BAD_CSR,
        )
    for san in sans:
        if isinstance(san, x509.DNSName):
            try:
                names.validate_dns_name(san.value)
            except PkiInputError as exc:
                raise PkiInputError(exc.message, reason=reasons.BAD_CSR) from None
        elif not isinstance(san, x509.IPAddress):
            raise PkiInputError(
                f"a TLS certificate carries DNS names and IP addresses only, not"
                f" {type(san).__name__}",
                reason=reasons.BAD_CSR,
            )
    return sans
