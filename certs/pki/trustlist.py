"""The regional trust list: the root CA's signed list of member nodes and their certificates.

Wire form: a compact JWS (``typ`` :data:`~certs.pki.params.TRUST_LIST_TYP`, ES256, ``x5c`` =
[root]) over canonical JSON::

    {"v": 1, "type": "bdx-trust-list", "issuer": "<root subject>", "sequence": 7,
     "issued_at": <unix seconds>, "next_update": <unix seconds>,
     "members": [{"country": "TH", "node_name": "...", "tls": "<b64 DER>",
                  "signing": "<b64 DER>"}, ...]}        # members sorted by country

While a member renews its certificates, the list holds its old and new ones side by side
(at most :data:`~certs.pki.params.MAX_LISTED_PER_USAGE` of each usage): version 2, where
``tls`` and ``signing`` are lists of base64 DER certificates, oldest first. A list with one
certificate of each usage per member is written as version 1, which older nodes read.

A node accepts a list only if the pinned root signed it, its sequence is not older than the one
held (rollback), and it is not stale (``now`` <= next_update + grace).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs.pki import names, params, profiles, reasons
from certs.pki.canonical import canonical_json, parse_canonical
from certs.pki.errors import CertificateRefused, MessageRefused, PkiError, TrustListRefused
from certs.pki.jose import check_signature, parse_compact, sign_compact
from certs.pki.keys import PrivateKey, fingerprint
from certs.pki.profiles import Usage

TYPE = "bdx-trust-list"


@dataclass(frozen=True)
class Member:
    """One member node: its country, name, TLS and signing certificates (one of each, or the
    old and the renewed one during a renewal; oldest first)."""

    country: str
    node_name: str
    tls: tuple[x509.Certificate, ...]
    signing: tuple[x509.Certificate, ...]

    def certificates(self, usage: Usage) -> tuple[x509.Certificate, ...]:
        return self.tls if usage is Usage.TLS else self.signing


@dataclass(frozen=True)
class TrustList:
    """A verified trust list. ``entry(fingerprint)`` finds the member holding a certificate."""

    sequence: int
    issued_at: dt.datetime
    next_update: dt.datetime
    members: tuple[Member, ...]
    raw: bytes
    _index: dict[str, tuple[Member, Usage]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for m in self.members:
            for usage in Usage:
                for cert in m.certificates(usage):
                    self._index[fingerprint(cert)] = (m, usage)

    def entry(self, cert_fingerprint: str) -> tuple[Member, Usage] | None:
        return self._index.get(cert_fingerprint)

    def member(self, country: str) -> Member | None:
        return next((m for m in self.members if m.country == country), None)

    def check_fresh(self, now: dt.datetime, grace: dt.timedelta) -> None:
        if now > self.next_update + grace:
            raise TrustListRefused(
                f"trust list {self.sequence} was due for update at "
                f"{self.next_update:%Y-%m-%d %H:%M}Z",
                reason=reasons.STALE_TRUST_LIST,
            )


def _b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")


def _oldest_first(certs: Sequence[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    return tuple(sorted(certs, key=lambda c: (c.not_valid_before_utc, fingerprint(c))))


def _added(
    listed: tuple[x509.Certificate, ...], cert: x509.Certificate
) -> tuple[x509.Certificate, ...]:
    return listed if fingerprint(cert) in {fingerprint(c) for c in listed} else (*listed, cert)


def _check_listing(members: Sequence[Member]) -> None:
    """Refuse a member or a certificate listed twice, and more certificates of one usage than
    the bound."""
    seen: set[str] = set()
    countries = [m.country for m in members]
    if len(set(countries)) != len(countries):
        raise TrustListRefused("a country is listed as two members", reason=reasons.MALFORMED)
    for m in members:
        for usage in Usage:
            certs = m.certificates(usage)
            if not 1 <= len(certs) <= params.MAX_LISTED_PER_USAGE:
                raise TrustListRefused(
                    f"{m.country} has {len(certs)} {usage} certificates listed; 1 to "
                    f"{params.MAX_LISTED_PER_USAGE} (the one in use and its renewal)",
                    reason=reasons.MALFORMED,
                )
            for cert in certs:
                fp = fingerprint(cert)
                if fp in seen:
                    raise TrustListRefused(
                        f"{m.country}'s {usage} certificate {cert.serial_number:x} is listed twice",
                        reason=reasons.MALFORMED,
                    )
                seen.add(fp)


@dataclass(frozen=True)
class TrustListBuilder:
    """Immutable builder of a signed trust list."""

    _sequence: int = 1
    _issued_at: dt.datetime | None = None
    _validity: dt.timedelta = params.TRUST_LIST_VALIDITY
    _members: tuple[Member, ...] = ()

    def sequence(self, number: int) -> TrustListBuilder:
        return replace(self, _sequence=number)

    def issued_at(self, when: dt.datetime) -> TrustListBuilder:
        return replace(self, _issued_at=when)

    def validity(self, period: dt.timedelta) -> TrustListBuilder:
        return replace(self, _validity=period)

    def add_member(
        self,
        country: str,
        tls: x509.Certificate,
        signing: x509.Certificate,
        node_name: str | None = None,
    ) -> TrustListBuilder:
        """List ``country``'s TLS and signing certificates. A country added again keeps its
        certificates listed before and gains these (a renewal: old and new side by side, at
        most :data:`~certs.pki.params.MAX_LISTED_PER_USAGE` of each usage); a certificate it
        lists already stays listed once, so one usage may be renewed alone."""
        code = names.validate_country(country)
        for cert, usage in ((tls, Usage.TLS), (signing, Usage.SIGNING)):
            profiles.check_usage(cert, usage)
            if names.country_of(cert.subject) != code:
                raise CertificateRefused(
                    f"{usage} certificate {cert.subject.rfc4514_string()} is not for {code}",
                    reason=reasons.WRONG_COUNTRY,
                )
        held = next((m for m in self._members if m.country == code), None)
        if held is None:
            name = node_name or (names.common_name_of(tls.subject) or code).removesuffix("-tls")
            member = Member(code, name, (tls,), (signing,))
        else:  # a certificate listed already stays listed once: one usage may be renewed alone
            member = Member(
                code,
                held.node_name,
                _oldest_first(_added(held.tls, tls)),
                _oldest_first(_added(held.signing, signing)),
            )
        members = (*(m for m in self._members if m.country != code), member)
        _check_listing(members)
        return replace(self, _members=members)

    def payload(self, issuer: x509.Certificate) -> dict[str, Any]:
        issued = self._issued_at or dt.datetime.now(dt.UTC)
        rollover = any(len(m.tls) > 1 or len(m.signing) > 1 for m in self._members)

        def listed(certs: tuple[x509.Certificate, ...]) -> str | list[str]:
            return [_b64(c) for c in certs] if rollover else _b64(certs[0])

        return {
            "v": params.TRUST_LIST_ROLLOVER_VERSION if rollover else params.TRUST_LIST_VERSION,
            "type": TYPE,
            "issuer": issuer.subject.rfc4514_string(),
            "sequence": self._sequence,
            "issued_at": int(issued.timestamp()),
            "next_update": int((issued + self._validity).timestamp()),
            "members": [
                {
                    "country": m.country,
                    "node_name": m.node_name,
                    "tls": listed(m.tls),
                    "signing": listed(m.signing),
                }
                for m in sorted(self._members, key=lambda m: m.country)
            ],
        }

    def sign(self, ca_key: PrivateKey, ca_cert: x509.Certificate) -> str:
        return sign_trust_list_payload(self.payload(ca_cert), ca_key, ca_cert)


def sign_trust_list_payload(
    payload: dict[str, Any], key: PrivateKey, root: x509.Certificate
) -> str:
    """Sign an already-built trust list payload (low level; prefer :class:`TrustListBuilder`)."""
    return sign_compact(canonical_json(payload), key, [root], typ=params.TRUST_LIST_TYP)


def load_trust_list(
    data: bytes | str,
    root: x509.Certificate,
    *,
    now: dt.datetime,
    grace: dt.timedelta = params.DEFAULT_GRACE,
    min_sequence: int | None = None,
    held_raw: bytes | None = None,
) -> TrustList:
    """Verify ``data`` against the pinned ``root`` and return the trust list."""
    raw = data.encode("ascii", "replace") if isinstance(data, str) else data
    raw = raw.strip()
    try:
        parsed = parse_compact(raw, typ=params.TRUST_LIST_TYP)
        if fingerprint(parsed.chain[0]) != fingerprint(root):
            raise TrustListRefused(
                "the trust list is not signed by the pinned root", reason=reasons.UNKNOWN_CA
            )
        check_signature(parsed, root.public_key())  # type: ignore[arg-type]
        body = parse_canonical(parsed.payload)
        result = _from_payload(body, raw)
    except MessageRefused as exc:
        raise TrustListRefused(f"trust list refused: {exc.message}", reason=exc.reason) from None
    except (PkiError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, TrustListRefused):
            raise
        reason = exc.reason if isinstance(exc, PkiError) else reasons.MALFORMED
        raise TrustListRefused(f"malformed trust list: {exc}", reason=reason) from None
    if min_sequence is not None and (
        result.sequence < min_sequence
        or (result.sequence == min_sequence and held_raw not in (None, raw))
    ):
        raise TrustListRefused(
            f"trust list sequence {result.sequence} is not newer than the held {min_sequence}",
            reason=reasons.ROLLBACK,
        )
    result.check_fresh(now, grace)
    return result


def _from_payload(body: Any, raw: bytes) -> TrustList:
    if not isinstance(body, dict) or body.get("type") != TYPE:
        raise TrustListRefused("not a bdx trust list", reason=reasons.MALFORMED)
    version = body.get("v")
    if version not in (params.TRUST_LIST_VERSION, params.TRUST_LIST_ROLLOVER_VERSION):
        raise TrustListRefused(
            f"trust list version {version!r}", reason=reasons.UNSUPPORTED_VERSION
        )
    rollover = version == params.TRUST_LIST_ROLLOVER_VERSION

    def certificates(field: Any) -> tuple[x509.Certificate, ...]:
        if rollover != isinstance(field, list):
            raise TypeError(f"a version {version} member lists its certificates otherwise")
        return tuple(
            x509.load_der_x509_certificate(base64.b64decode(c, validate=True))
            for c in (field if rollover else [field])
        )

    members = [
        Member(
            country=names.validate_country(m["country"]),
            node_name=str(m["node_name"]),
            tls=certificates(m["tls"]),
            signing=certificates(m["signing"]),
        )
        for m in body["members"]
    ]
    _check_listing(members)
    return TrustList(
        sequence=int(body["sequence"]),
        issued_at=dt.datetime.fromtimestamp(int(body["issued_at"]), dt.UTC),
        next_update=dt.datetime.fromtimestamp(int(body["next_update"]), dt.UTC),
        members=tuple(members),
        raw=raw,
    )
