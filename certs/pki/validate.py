"""Certificate validation against the pinned root, the trust list and the CRL.

:class:`TrustAnchors` holds what a node trusts (root certificate, trust list, CRL) as one
immutable snapshot that :meth:`~TrustAnchors.refresh_trust_list` and
:meth:`~TrustAnchors.refresh_crl` swap atomically after verifying the new document.
:meth:`~TrustAnchors.validate` returns the verified :class:`Identity` or raises
:class:`~certs.pki.errors.CertificateRefused` with one reason, checked in this order:
``weak_algorithm``, ``expired``/``not_yet_valid``, ``wrong_key_usage``, ``unknown_ca`` (chain
building by ``cryptography.x509.verification``), ``revoked``, ``not_in_trust_list``,
``wrong_country``. Stale trust lists/CRLs raise ``stale_trust_list``/``stale_crl``.

Validated chains are cached per (certificate fingerprint, usage, trust-list sequence, CRL
number) with the certificate's validity window, so a repeat peer costs a dict lookup.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification as xv

from certs.pki import names, params, profiles, reasons
from certs.pki.errors import CertificateRefused
from certs.pki.keys import fingerprint, load_certificate, read_file
from certs.pki.profiles import Usage
from certs.pki.revocation import Crl, load_crl
from certs.pki.trustlist import TrustList, load_trust_list

Source = bytes | str | os.PathLike[str]


@dataclass(frozen=True)
class Identity:
    """Who a validated certificate belongs to."""

    country: str
    node_name: str
    usage: Usage
    fingerprint: str
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime


@dataclass(frozen=True)
class _Snapshot:
    trust_list: TrustList
    crl: Crl


_EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)


def _now(now: dt.datetime | None) -> dt.datetime:
    return now or dt.datetime.now(dt.UTC)


def _read(source: Source, max_bytes: int = params.MAX_PKI_FILE_BYTES) -> bytes:
    return source if isinstance(source, bytes) else read_file(source, max_bytes=max_bytes)


class TrustAnchors:
    """The pinned root plus the current trust list and CRL of a node."""

    def __init__(
        self,
        root: x509.Certificate,
        trust_list: TrustList,
        crl: Crl,
        *,
        grace: dt.timedelta = params.DEFAULT_GRACE,
    ) -> None:
        self.root = root
        self.grace = grace
        self._store = xv.Store([root])
        self._snap = _Snapshot(trust_list, crl)
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, Usage, int, int], Identity] = OrderedDict()

    @classmethod
    def load(
        cls,
        root: Source,
        trust_list: Source,
        crl: Source,
        *,
        now: dt.datetime | None = None,
        grace: dt.timedelta = params.DEFAULT_GRACE,
        min_trust_list_sequence: int | None = None,
        min_crl_number: int | None = None,
        check_fresh: bool = True,
    ) -> TrustAnchors:
        """Load the pinned root and verify the trust list and CRL against it (paths or bytes).

        A node that restarts passes the trust-list sequence and CRL number it last accepted
        (persisted by the node) as ``min_*`` so that an older file on disk is refused. With
        ``check_fresh=False`` a list past its next update (+ grace) is loaded all the same (a
        node that must start, or a local command, while its documents are stale): every
        :meth:`validate` still checks freshness, so nothing validates until a newer one is in.
        """
        # load_trust_list and load_crl check freshness at the time given; at the earliest
        # time there is, no document is past its next update.
        when = _now(now) if check_fresh else _EARLIEST
        root_cert = load_certificate(root)
        tl = load_trust_list(
            _read(trust_list, params.MAX_TRUST_LIST_FILE_BYTES),
            root_cert,
            now=when,
            grace=grace,
            min_sequence=min_trust_list_sequence,
        )
        revocations = load_crl(
            _read(crl), root_cert, now=when, grace=grace, min_number=min_crl_number
        )
        return cls(root_cert, tl, revocations, grace=grace)

    @property
    def trust_list(self) -> TrustList:
        return self._snap.trust_list

    @property
    def crl(self) -> Crl:
        return self._snap.crl

    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)

    def refresh_trust_list(self, data: bytes, *, now: dt.datetime | None = None) -> TrustList:
        """Verify ``data`` (no rollback, not stale) and swap it in; the old list stays on error."""
        with self._lock:
            held = self._snap.trust_list
            new = load_trust_list(
                data,
                self.root,
                now=_now(now),
                grace=self.grace,
                min_sequence=held.sequence,
                held_raw=held.raw,
            )
            self._snap = _Snapshot(new, self._snap.crl)
            self._cache.clear()
            return new

    def refresh_crl(self, data: bytes, *, now: dt.datetime | None = None) -> Crl:
        """Verify a new CRL (no rollback, not stale) and swap it in; the old one stays on error."""
        with self._lock:
            new = load_crl(
                data, self.root, now=_now(now), grace=self.grace, min_number=self._snap.crl.number
            )
            self._snap = _Snapshot(self._snap.trust_list, new)
            self._cache.clear()
            return new

    def clear_cache(self) -> None:
        """Forget validated chains (the next validation of each certificate is a full one)."""
        with self._lock:
            self._cache.clear()

    def cached(
        self, der: bytes, usage: Usage | str, *, now: dt.datetime | None = None
    ) -> Identity | None:
        """The identity of a DER leaf certificate that :meth:`validate` accepted under the trust
        list and CRL held now and whose validity window includes ``now``; ``None`` when it must
        be validated (not seen, or the documents changed since). Stale documents still raise.
        Costs a hash and a dict lookup, so it may run where a full validation may not."""
        usage = Usage(usage)
        when = _now(now)
        snap = self._snap
        snap.trust_list.check_fresh(when, self.grace)
        snap.crl.check_fresh(when, self.grace)
        key = (hashlib.sha256(der).hexdigest(), usage, snap.trust_list.sequence, snap.crl.number)
        identity = self._cache.get(key)
        if identity is None or not identity.not_before <= when <= identity.not_after:
            return None
        return identity

    def validate(
        self,
        chain: x509.Certificate | bytes | Sequence[x509.Certificate],
        usage: Usage | str,
        *,
        expected_country: str | None = None,
        now: dt.datetime | None = None,
    ) -> Identity:
        """Validate a leaf certificate (DER/PEM bytes, a certificate, or [leaf, *intermediates])."""
        usage = Usage(usage)
        when = _now(now)
        extra: list[x509.Certificate] = []
        leaf_fp: str | None = None
        if isinstance(chain, bytes):
            leaf = load_certificate(chain)
            if not chain.lstrip().startswith(b"-----"):
                leaf_fp = hashlib.sha256(chain).hexdigest()  # DER: skip re-encoding
        elif isinstance(chain, x509.Certificate):
            leaf = chain
        else:
            leaf, extra = chain[0], list(chain[1:])
        snap = self._snap
        snap.trust_list.check_fresh(when, self.grace)
        snap.crl.check_fresh(when, self.grace)
        key = (leaf_fp or fingerprint(leaf), usage, snap.trust_list.sequence, snap.crl.number)
        identity = self._cache.get(key)
        if identity is None or not identity.not_before <= when <= identity.not_after:
            try:
                identity = self._validate(leaf, extra, usage, snap, when, key[0])
            except (UnsupportedAlgorithm, ValueError) as exc:
                # cryptography parses keys, algorithms and extensions lazily: a certificate
                # that decodes but names an unknown algorithm or holds a malformed extension
                # fails here, and is refused like any other bad certificate.
                raise CertificateRefused(
                    f"certificate cannot be validated ({type(exc).__name__}: {exc})",
                    reason=reasons.BAD_CERTIFICATE,
                ) from exc
            with self._lock:
                self._cache[key] = identity
                while len(self._cache) > params.CACHE_MAX_ENTRIES:
                    self._cache.popitem(last=False)
        if expected_country is not None and identity.country != expected_country.upper():
            raise CertificateRefused(
                f"certificate is for {identity.country}, not {expected_country.upper()}",
                reason=reasons.WRONG_COUNTRY,
            )
        return identity

    def _validate(
        self,
        leaf: x509.Certificate,
        extra: list[x509.Certificate],
        usage: Usage,
        snap: _Snapshot,
        when: dt.datetime,
        leaf_fp: str,
    ) -> Identity:
        subject = leaf.subject.rfc4514_string()
        profiles.check_algorithms(leaf)
        not_before = max(leaf.not_valid_before_utc, self.root.not_valid_before_utc)
        not_after = min(leaf.not_valid_after_utc, self.root.not_valid_after_utc)
        if when < not_before:
            raise CertificateRefused(
                f"certificate {subject} is valid only from {not_before:%Y-%m-%d %H:%M}Z",
                reason=reasons.NOT_YET_VALID,
            )
        if when > not_after:
            raise CertificateRefused(
                f"certificate {subject} expired at {not_after:%Y-%m-%d %H:%M}Z",
                reason=reasons.EXPIRED,
            )
        profiles.check_usage(leaf, usage)
        builder = xv.PolicyBuilder().store(self._store).time(when)
        builder = builder.max_chain_depth(params.MAX_CHAIN_DEPTH)
        if usage is Usage.SIGNING:
            # Signing certificates carry our own EKU and no SAN, which the WebPKI end-entity
            # profile would refuse; key usage was checked above by check_usage.
            builder = builder.extension_policies(
                ca_policy=xv.ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=xv.ExtensionPolicy.permit_all(),
            )
        try:
            builder.build_client_verifier().verify(leaf, extra)
        except xv.VerificationError as exc:
            raise CertificateRefused(
                f"certificate {subject} does not chain to the pinned root: {exc}",
                reason=reasons.UNKNOWN_CA,
            ) from None
        snap.crl.check(leaf)
        entry = snap.trust_list.entry(leaf_fp)
        if entry is None:
            raise CertificateRefused(
                f"certificate {subject} is not in trust list {snap.trust_list.sequence}",
                reason=reasons.NOT_IN_TRUST_LIST,
            )
        member, listed_usage = entry
        country = names.country_of(leaf.subject)
        if listed_usage is not usage:
            raise CertificateRefused(
                f"certificate {subject} is listed as a {listed_usage} certificate",
                reason=reasons.WRONG_KEY_USAGE,
            )
        if country != member.country:
            raise CertificateRefused(
                f"certificate {subject} is listed for {member.country}",
                reason=reasons.WRONG_COUNTRY,
            )
        return Identity(
            country=member.country,
            node_name=member.node_name,
            usage=usage,
            fingerprint=leaf_fp,
            serial=leaf.serial_number,
            not_before=not_before,
            not_after=not_after,
        )
