"""Signed peer messages: compact JWS (RFC 7515, ES256) over canonical JSON.

Header (protected): ``alg`` = ES256, ``typ`` (default ``bdx-msg+jws``; use e.g.
``bdx-query+jws``), ``x5c`` = [signing certificate, ...] (base64 DER), ``kid`` = ``x5t#S256`` =
base64url SHA-256 of the signing certificate.

Payload: canonical JSON (:func:`canonical_json`: sorted keys, no whitespace, UTF-8, no floats)
of an object that carries ``"v"`` (payload version, :data:`~certs.pki.params.PAYLOAD_VERSION`)
and ``"sender"`` (the sender's ISO 3166-1 alpha-2 country).

:func:`verify` checks, in order: size and structure, the ``alg`` allow-list (``none``, HS*,
RS* -> ``weak_algorithm``), ``typ``, that the x5c leaf validates as a *signing* certificate
(chain to the pinned root, trust list, CRL, key usage; see :class:`TrustAnchors`), the
signature (``bad_signature``), the payload's canonical form and version, and that ``sender``
(and ``expected_country``, e.g. the peer country from mutual TLS) is the certificate's country
(``wrong_country``). It returns a :class:`VerifiedMessage` or raises; never a bool.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from joserfc.jwk import ECKey

from certs.pki import names, params, profiles, reasons
from certs.pki.canonical import canonical_json, parse_canonical
from certs.pki.errors import CertificateRefused, MessageRefused, PkiInputError
from certs.pki.jose import check_signature, parse_compact, public_jwk, sign_compact
from certs.pki.keys import PrivateKey
from certs.pki.profiles import Usage
from certs.pki.validate import Identity, TrustAnchors

__all__ = ["TrustAnchors", "VerifiedMessage", "canonical_json", "sign", "verify"]


@dataclass(frozen=True)
class VerifiedMessage:
    """A message whose signature, signer and sender were verified."""

    payload: dict[str, Any]
    payload_bytes: bytes
    header: dict[str, Any]
    signer: Identity

    @property
    def sender(self) -> str:
        return self.signer.country


def _check_body(payload: Any) -> None:
    if not isinstance(payload, dict):
        raise MessageRefused("the payload must be a JSON object", reason=reasons.MALFORMED)
    if payload.get("v") != params.PAYLOAD_VERSION or isinstance(payload.get("v"), bool):
        raise MessageRefused(
            f"payload version other than v={params.PAYLOAD_VERSION}, which this node reads",
            reason=reasons.UNSUPPORTED_VERSION,
        )
    sender = payload.get("sender")
    if not isinstance(sender, str) or sender not in names.ISO_3166_ALPHA2:
        raise MessageRefused("the payload has no valid 'sender' country", reason=reasons.MALFORMED)


@functools.lru_cache(maxsize=params.CACHE_MAX_ENTRIES)
def _signer_key(leaf_der: bytes) -> ECKey:
    # Called only after the certificate validated; repeat senders skip the key import.
    return public_jwk(x509.load_der_x509_certificate(leaf_der).public_key())  # type: ignore[arg-type]


@functools.lru_cache(maxsize=params.CACHE_MAX_ENTRIES)
def _signing_country(leaf: x509.Certificate) -> str | None:
    """The country of a certificate with signing key usage (``wrong_key_usage`` otherwise):
    checked here so a wrong certificate fails at the signer, not at every peer; the answer
    depends on the certificate only, so each is checked once."""
    profiles.check_usage(leaf, Usage.SIGNING)
    return names.country_of(leaf.subject)


def sign(
    payload: dict[str, Any],
    key: PrivateKey,
    cert_chain: Sequence[x509.Certificate],
    *,
    typ: str = params.MESSAGE_TYP,
) -> str:
    """Compact JWS of ``payload`` (needs ``v`` and ``sender``) signed with the node's signing key.

    ``cert_chain`` starts with the signing certificate (signing key usage, else
    ``wrong_key_usage``); its country must be ``sender`` (else ``wrong_country``).
    """
    _check_body(payload)
    if not cert_chain:
        raise MessageRefused("the signing certificate chain is empty", reason=reasons.MALFORMED)
    leaf_country = _signing_country(cert_chain[0])
    if leaf_country != payload["sender"]:
        raise CertificateRefused(
            f"signing certificate is for {leaf_country}, payload sender is {payload['sender']}",
            reason=reasons.WRONG_COUNTRY,
        )
    try:
        body = canonical_json(payload)
    except PkiInputError as exc:
        raise MessageRefused(exc.message, reason=exc.reason) from None
    return sign_compact(body, key, cert_chain, typ=typ)


def verify(
    token: str | bytes,
    trust: TrustAnchors,
    *,
    expected_country: str | None = None,
    now: dt.datetime | None = None,
    typ: str = params.MESSAGE_TYP,
) -> VerifiedMessage:
    """Verify a compact JWS from a peer; see the module docstring for the checks."""
    parsed = parse_compact(token, typ=typ)
    chain = parsed.leaf_der if len(parsed.chain) == 1 else list(parsed.chain)
    signer = trust.validate(chain, Usage.SIGNING, now=now)
    check_signature(parsed, _signer_key(parsed.leaf_der))
    try:
        payload = parse_canonical(parsed.payload)
    except PkiInputError as exc:
        raise MessageRefused(exc.message, reason=exc.reason) from None
    _check_body(payload)
    if payload["sender"] != signer.country:
        raise CertificateRefused(
            f"message claims sender {payload['sender']} but is signed by {signer.country}",
            reason=reasons.WRONG_COUNTRY,
        )
    if expected_country is not None and signer.country != expected_country.upper():
        raise CertificateRefused(
            f"message signed by {signer.country}, expected {expected_country.upper()}",
            reason=reasons.WRONG_COUNTRY,
        )
    return VerifiedMessage(payload, parsed.payload, parsed.header, signer)
