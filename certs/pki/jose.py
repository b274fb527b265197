"""Compact JWS (RFC 7515) with an x5c certificate chain, on top of joserfc.

Low-level: :func:`sign_compact` makes a token over already-canonical payload bytes;
:func:`parse_compact` splits a token and checks its header (algorithm allow-list, ``typ``,
``x5c``) without trusting it; :func:`check_signature` verifies the signature with a key the
caller has validated. :mod:`certs.jws` and :mod:`certs.pki.trustlist` build on these.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from joserfc.jws import JWSRegistry

from certs.pki import params, reasons
from certs.pki.errors import MessageRefused
from certs.pki.keys import PrivateKey, PublicKey


class _Registry(JWSRegistry):
    # joserfc's default 512-byte header limit is too small for an x5c chain.
    max_header_length = params.MAX_HEADER_BYTES
    max_payload_length = params.MAX_TOKEN_BYTES


REGISTRY = _Registry(algorithms=list(params.JWS_ALGORITHMS))


def thumbprint(cert: x509.Certificate) -> str:
    """``x5t#S256``: base64url (unpadded) SHA-256 of the DER certificate."""
    return _b64url_sha256(cert.public_bytes(serialization.Encoding.DER))


@functools.lru_cache(maxsize=params.HEADER_CACHE_ENTRIES)
def _canonical_header(alg: str, typ: str, kid: str, x5t: str, cert: str) -> bytes:
    """The header segment sign_compact writes for these values (the same for every message of
    one signer: cached)."""
    fields = dict(zip(params.JWS_HEADER_ORDER, (alg, typ, kid, x5t, [cert]), strict=True))
    text = json.dumps(fields, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode("ascii")).rstrip(b"=")


def _b64url_sha256(der: bytes) -> str:
    digest = hashlib.sha256(der).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@functools.lru_cache(maxsize=params.CACHE_MAX_ENTRIES)
def _chain_header(chain: tuple[x509.Certificate, ...]) -> tuple[str, tuple[str, ...]]:
    """(``x5t#S256`` of the leaf, ``x5c``) of a signing chain: the same for every message."""
    ders = [c.public_bytes(serialization.Encoding.DER) for c in chain]
    return _b64url_sha256(ders[0]), tuple(base64.b64encode(d).decode("ascii") for d in ders)


# The joserfc key of each signing key in use: importing one exports its private numbers, which
# costs as much as a signature. Keyed by identity (the key object is kept alive with its entry).
_SIGNING_JWKS: dict[int, tuple[PrivateKey, ECKey]] = {}
_SIGNING_JWKS_LOCK = threading.Lock()


def _signing_jwk(key: ec.EllipticCurvePrivateKey) -> ECKey:
    held = _SIGNING_JWKS.get(id(key))
    if held is not None and held[0] is key:
        return held[1]
    jwk = ECKey.import_key(key)
    with _SIGNING_JWKS_LOCK:
        if len(_SIGNING_JWKS) >= params.CACHE_MAX_ENTRIES:
            _SIGNING_JWKS.clear()
        _SIGNING_JWKS[id(key)] = (key, jwk)
    return jwk


def sign_compact(
    payload: bytes, key: PrivateKey, chain: Sequence[x509.Certificate], *, typ: str
) -> str:
    """Compact JWS over ``payload`` signed with ``key`` (ES256), header carrying ``chain``."""
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise MessageRefused("ES256 signing needs a P-256 key", reason=reasons.WEAK_ALGORITHM)
    if len(chain) != 1:  # what parse_compact reads (the region has no intermediates)
        raise MessageRefused(
            "sign with the signing certificate alone (no chain)", reason=reasons.MALFORMED
        )
    leaf_print, x5c = _chain_header(tuple(chain))
    header = {
        "alg": params.JWS_ALGORITHMS[0],
        "typ": typ,
        "kid": leaf_print,
        "x5t#S256": leaf_print,
        "x5c": list(x5c),
    }
    return jws.serialize_compact(header, payload, _signing_jwk(key), registry=REGISTRY)


@dataclass(frozen=True)
class ParsedToken:
    """A split, header-checked, **not yet verified** compact JWS."""

    header: dict[str, Any]
    payload: bytes
    chain: tuple[x509.Certificate, ...]
    leaf_der: bytes
    obj: Any


def parse_compact(token: str | bytes, *, typ: str) -> ParsedToken:
    """Split ``token`` and check its header; the signature is not checked here."""
    raw = token.encode("ascii", "replace") if isinstance(token, str) else token
    if len(raw) > params.MAX_TOKEN_BYTES:
        raise MessageRefused("token too large", reason=reasons.MALFORMED)
    try:
        obj = jws.extract_compact(raw, registry=REGISTRY)
        header = dict(obj.headers())
    except (JoseError, ValueError, TypeError) as exc:
        raise MessageRefused(f"not a compact JWS: {exc}", reason=reasons.MALFORMED) from None
    except RecursionError:  # a header nested deeper than the parser's stack
        raise MessageRefused(
            "the JWS header is nested too deeply", reason=reasons.MALFORMED
        ) from None
    alg = header.get("alg")
    if alg not in params.JWS_ALGORITHMS:
        raise MessageRefused(
            f"the JWS algorithm is refused (allowed: {', '.join(params.JWS_ALGORITHMS)})",
            reason=reasons.WEAK_ALGORITHM,
        )
    if "crit" in header:
        raise MessageRefused(
            "JWS 'crit' header parameters are not supported", reason=reasons.MALFORMED
        )
    if header.get("typ") != typ:
        raise MessageRefused(f"the JWS typ is not {typ!r}", reason=reasons.WRONG_TYPE)
    others = set(header) - params.JWS_HEADER_PARAMETERS
    if others:
        raise MessageRefused(
            f"{len(others)} JWS header parameter(s) other than "
            f"{', '.join(sorted(params.JWS_HEADER_PARAMETERS))}",
            reason=reasons.MALFORMED,
        )
    if header.get("kid") != header.get("x5t#S256"):
        raise MessageRefused("JWS kid differs from x5t#S256", reason=reasons.MALFORMED)
    # The header exactly as sign_compact writes it: no repeated key (JSON parsers keep one of
    # them, the token keeps both), no spacing or escapes, one certificate (the region has no
    # intermediates: params.MAX_CHAIN_DEPTH) — nothing in it is the signer's free choice.
    x5c = header.get("x5c")
    if not isinstance(x5c, list) or len(x5c) != 1:
        raise MessageRefused(
            "JWS x5c must hold the signing certificate alone", reason=reasons.MALFORMED
        )
    if not all(isinstance(c, str) for c in x5c):
        raise MessageRefused("JWS header has no x5c certificate chain", reason=reasons.MALFORMED)
    values = tuple(header.get(name) for name in params.JWS_HEADER_ORDER[:-1])
    if not all(isinstance(v, str) for v in values) or raw.split(b".", 1)[0] != _canonical_header(
        *values, x5c[0]
    ):
        raise MessageRefused("the JWS header is not in canonical form", reason=reasons.MALFORMED)
    try:
        ders = [base64.b64decode(c, validate=True) for c in x5c]
        chain = tuple(x509.load_der_x509_certificate(der) for der in ders)
    except (ValueError, binascii.Error) as exc:
        raise MessageRefused(
            f"bad x5c certificate: {exc}", reason=reasons.BAD_CERTIFICATE
        ) from None
    if base64.b64encode(ders[0]).decode("ascii") != x5c[0]:  # no stray bits in the padding
        raise MessageRefused("the JWS header is not in canonical form", reason=reasons.MALFORMED)
    return ParsedToken(header=header, payload=obj.payload, chain=chain, leaf_der=ders[0], obj=obj)


def check_signature(parsed: ParsedToken, public_key: PublicKey | ECKey) -> None:
    """Raise ``bad_signature`` unless ``parsed`` is signed by ``public_key``."""
    jwk = public_key if isinstance(public_key, ECKey) else public_jwk(public_key)
    try:
        ok = jws.validate_compact(parsed.obj, jwk, registry=REGISTRY)
    except (JoseError, ValueError) as exc:
        raise MessageRefused(
            f"signature check failed: {exc}", reason=reasons.BAD_SIGNATURE
        ) from None
    if not ok or parsed.header.get("x5t#S256") != _b64url_sha256(parsed.leaf_der):
        raise MessageRefused("the JWS signature does not verify", reason=reasons.BAD_SIGNATURE)


def public_jwk(public_key: PublicKey) -> ECKey:
    """The joserfc key object of an ES256 public key."""
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise MessageRefused("ES256 needs an ECDSA P-256 key", reason=reasons.WEAK_ALGORITHM)
    return ECKey.import_key(public_key)
