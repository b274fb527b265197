"""RFC 6962 §2.1 / RFC 9162 §2.1.1 hashing: SHA-256 with domain-separation prefixes.

A leaf hash is ``SHA-256(0x00 || data)``, an interior node ``SHA-256(0x01 || left || right)``,
and the root of the empty tree ``SHA-256("")``. The prefixes keep a leaf from ever being
confused with an interior node (second-preimage resistance of the tree).
"""

from __future__ import annotations

import hashlib

from certs.merkle.errors import HashSizeError

HASH_SIZE = 32
"""Bytes in a SHA-256 digest: every leaf, node and root hash has this length."""

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


def hash_leaf(data: bytes) -> bytes:
    """Hash of the leaf holding ``data`` (any bytes, possibly empty)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """Hash of the interior node whose children hash to ``left`` and ``right``."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def check_hash(value: bytes, what: str) -> None:
    """Raise :class:`HashSizeError` unless ``value`` is a 32-byte ``bytes`` hash."""
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        size = len(value) if isinstance(value, bytes | bytearray) else type(value).__name__
        raise HashSizeError(f"{what} must be {HASH_SIZE} bytes, got {size}")
