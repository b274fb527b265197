"""Typed errors of Merkle proof verification: a proof is refused by raising one of these."""

from __future__ import annotations

from certs.errors import CertsError


class MerkleError(CertsError):
    """Base of Merkle tree and proof errors."""

    default_reason = "merkle_error"


class HashSizeError(MerkleError):
    """A hash (leaf, node, root or proof element) is not SHA-256 sized."""

    default_reason = "hash_size"


class TreeSizeError(MerkleError):
    """A tree size is negative, or the sizes of a consistency proof are out of order."""

    default_reason = "tree_size"


class IndexOutOfRangeError(MerkleError):
    """A leaf index is negative or not below the tree size."""

    default_reason = "index_out_of_range"


class ProofLengthError(MerkleError):
    """A proof has more or fewer hashes than RFC 9162 prescribes for its index and sizes."""

    default_reason = "proof_length"


class RootMismatchError(MerkleError):
    """The root recomputed from a proof differs from the expected (signed) root."""

    default_reason = "root_mismatch"
