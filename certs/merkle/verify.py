"""Proof verification following RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency).

Layers: ``root_from_inclusion_proof`` / ``roots_from_consistency_proof`` recompute roots
(after checking the proof has exactly the length the sizes prescribe, which stands for the
RFC's in-loop "sn is 0" and final "sn is not 0" length failures), and
``verify_inclusion`` / ``verify_consistency`` compare them with the expected roots. All of
them return nothing or raise a :class:`~certs.merkle.errors.MerkleError`; none returns a bool.
"""

from __future__ import annotations

from collections.abc import Sequence

from certs.merkle.errors import (
    IndexOutOfRangeError,
    ProofLengthError,
    RootMismatchError,
    TreeSizeError,
)
from certs.merkle.hashing import EMPTY_ROOT, check_hash, hash_children


def inclusion_proof_length(index: int, size: int) -> int:
    """Number of hashes in the inclusion proof of ``index`` in a tree of ``size`` leaves."""
    if not 0 <= index < size:
        raise IndexOutOfRangeError(f"leaf index {index} is outside a tree of size {size}")
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def consistency_proof_length(size1: int, size2: int) -> int:
    """Number of hashes in the consistency proof from ``size1`` to ``size2`` leaves."""
    if size1 < 0 or size2 < size1:
        raise TreeSizeError(f"cannot prove consistency from size {size1} to size {size2}")
    if size1 == 0 or size1 == size2:
        return 0
    shift = (size1 & -size1).bit_length() - 1
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    border = ((size1 - 1) >> inner).bit_count()
    seed = 0 if size1 == 1 << shift else 1
    return seed + inner - shift + border


def _check_proof(proof: Sequence[bytes], expected: int) -> None:
    if len(proof) != expected:
        raise ProofLengthError(f"proof has {len(proof)} hashes, expected {expected}")
    for h in proof:
        check_hash(h, "proof hash")


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """Root of the tree of ``size`` leaves implied by ``leaf_hash`` at ``index`` and ``proof``."""
    check_hash(leaf_hash, "leaf hash")
    _check_proof(proof, inclusion_proof_length(index, size))
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if fn & 1 or fn == sn:
            r = hash_children(p, r)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = hash_children(r, p)
        fn >>= 1
        sn >>= 1
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise unless ``proof`` shows ``leaf_hash`` at ``index`` in the tree with ``root``."""
    check_hash(root, "root hash")
    if root_from_inclusion_proof(leaf_hash, index, size, proof) != root:
        raise RootMismatchError(
            f"inclusion proof of leaf {index} does not lead to the root of size {size}"
        )


def roots_from_consistency_proof(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes
) -> tuple[bytes, bytes]:
    """Recompute (old root, new root) from a consistency proof; ``0 < size1 < size2``.

    When ``size1`` is a power of two the old tree is a node of the new one and ``root1``
    seeds the path (RFC 9162 §2.1.4.2 step 2), so the first returned root is ``root1``.
    """
    check_hash(root1, "old root hash")
    if not 0 < size1 < size2:
        raise TreeSizeError(f"a consistency path needs 0 < size1 < size2, got {size1}, {size2}")
    _check_proof(proof, consistency_proof_length(size1, size2))
    path = [root1, *proof] if size1 & (size1 - 1) == 0 else list(proof)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if fn & 1 or fn == sn:
            fr = hash_children(c, fr)
            sr = hash_children(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = hash_children(sr, c)
        fn >>= 1
        sn >>= 1
    return fr, sr


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Raise unless the tree (``size2``, ``root2``) extends the tree (``size1``, ``root1``)."""
    check_hash(root1, "old root hash")
    check_hash(root2, "new root hash")
    if size1 < 0 or size2 < size1:
        raise TreeSizeError(f"cannot prove consistency from size {size1} to size {size2}")
    if size1 == 0 or size1 == size2:
        _check_proof(proof, 0)
        if size1 == 0 and root1 != EMPTY_ROOT:
            raise RootMismatchError("the root of an empty tree must be SHA-256 of nothing")
        if size1 == size2 and root1 != root2:
            raise RootMismatchError(f"two different roots for the same tree size {size1}")
        return
    old, new = roots_from_consistency_proof(size1, size2, proof, root1)
    if old != root1:
        raise RootMismatchError(f"consistency proof does not lead to the old root (size {size1})")
    if new != root2:
        raise RootMismatchError(f"consistency proof does not lead to the new root (size {size2})")
