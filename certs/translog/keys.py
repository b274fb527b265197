"""Signing and verifying keys for signed notes (C2SP signed-note, checkpoints, cosignatures).

Accepts ``cryptography`` key objects: Ed25519 or ECDSA P-256. Key IDs follow C2SP:

* note signatures: Ed25519 type ``0x01`` (``SHA-256(name || 0x0A || 0x01 || raw key)[:4]``),
  ECDSA type ``0x02`` (``SHA-256(DER SubjectPublicKeyInfo)[:4]``);
* cosignatures: Ed25519 type ``0x04`` (c2sp.org/tlog-cosignature); ECDSA P-256 witnesses use
  the private-use type ``0xff || "bdx-cosignature-ecdsa/v1"`` with the same timestamped
  message, since C2SP assigns no ECDSA cosignature type.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from certs.translog.errors import KeyTypeError, NoteFormatError, SignatureError

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
Purpose = Literal["note", "cosignature"]

ED25519_NOTE = b"\x01"
ECDSA_NOTE = b"\x02"
ED25519_COSIGNATURE = b"\x04"
ECDSA_COSIGNATURE = b"\xffbdx-cosignature-ecdsa/v1"


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" or ord(c) < 0x20 for c in name):
        raise NoteFormatError(
            f"key name {name!r} must be non-empty, without spaces or '+'", reason="bad_key_name"
        )


def _public_bytes(key: PublicKey) -> bytes:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _check_public(key: object) -> PublicKey:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise KeyTypeError(f"expected an Ed25519 or ECDSA P-256 key, got {type(key).__name__}")


@dataclass(frozen=True)
class VerifyingKey:
    """A named public key that verifies note signatures or cosignatures."""

    name: str
    public_key: PublicKey

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_public(self.public_key)

    def key_id(self, purpose: Purpose = "note") -> bytes:
        """The 4-byte C2SP key ID of this key for ``purpose``."""
        raw = _public_bytes(self.public_key)
        if isinstance(self.public_key, ed25519.Ed25519PublicKey):
            kind = ED25519_NOTE if purpose == "note" else ED25519_COSIGNATURE
        elif purpose == "note":
            return hashlib.sha256(raw).digest()[:4]
        else:
            kind = ECDSA_COSIGNATURE
        return hashlib.sha256(self.name.encode() + b"\n" + kind + raw).digest()[:4]

    def to_vkey(self, purpose: Purpose = "note") -> str:
        """C2SP verifier-key text ``<name>+<hex key ID>+<base64(type || public key)>``."""
        ed = isinstance(self.public_key, ed25519.Ed25519PublicKey)
        kind = {
            ("note", True): ED25519_NOTE,
            ("note", False): ECDSA_NOTE,
            ("cosignature", True): ED25519_COSIGNATURE,
            ("cosignature", False): ECDSA_COSIGNATURE,
        }[(purpose, ed)]
        material = base64.b64encode(kind + _public_bytes(self.public_key)).decode()
        return f"{self.name}+{self.key_id(purpose).hex()}+{material}"

    @classmethod
    def from_vkey(cls, vkey: str) -> tuple[VerifyingKey, Purpose]:
        """Parse :meth:`to_vkey` text (how witness keys are configured); the key ID must match."""
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3:
            raise NoteFormatError("a vkey is <name>+<key id>+<key>", reason="bad_vkey")
        name, key_id, material = parts
        try:
            raw = base64.b64decode(material, validate=True)
        except (binascii.Error, ValueError):
            raise NoteFormatError("vkey key material is not base64", reason="bad_vkey") from None
        purpose: Purpose
        try:
            if raw[:1] in (ED25519_NOTE, ED25519_COSIGNATURE):
                public: PublicKey = ed25519.Ed25519PublicKey.from_public_bytes(raw[1:])
                purpose = "note" if raw[:1] == ED25519_NOTE else "cosignature"
            elif raw[:1] == ECDSA_NOTE or raw.startswith(ECDSA_COSIGNATURE):
                der = raw[1:] if raw[:1] == ECDSA_NOTE else raw[len(ECDSA_COSIGNATURE) :]
                loaded = serialization.load_der_public_key(der)
                public = _check_public(loaded)
                purpose = "note" if raw[:1] == ECDSA_NOTE else "cosignature"
            else:
                raise KeyTypeError("unknown vkey signature type", reason="unsupported_key")
        except (ValueError, UnsupportedAlgorithm):
            raise NoteFormatError("vkey public key is malformed", reason="bad_vkey") from None
        key = cls(name, public)
        if key.key_id(purpose).hex() != key_id:
            raise NoteFormatError("vkey key ID does not match its key", reason="bad_vkey")
        return key, purpose

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise :class:`SignatureError` unless ``signature`` signs ``message``."""
        try:
            if isinstance(self.public_key, ed25519.Ed25519PublicKey):
                self.public_key.verify(signature, message)
            else:
                self.public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise SignatureError(f"signature by {self.name} does not verify") from None


@dataclass(frozen=True)
class SigningKey:
    """A named private key (the log's or a witness's)."""

    name: str
    private_key: PrivateKey

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.private_key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
            raise KeyTypeError(
                f"expected an Ed25519 or ECDSA P-256 private key, "
                f"got {type(self.private_key).__name__}"
            )
        _check_public(self.private_key.public_key())

    def verifying_key(self) -> VerifyingKey:
        return VerifyingKey(self.name, self.private_key.public_key())

    def sign(self, message: bytes) -> bytes:
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return self.private_key.sign(message)
        return self.private_key.sign(message, ec.ECDSA(hashes.SHA256()))
