"""The compact range of a tree: the roots of the perfect subtrees that make up ``[0, size)``.

A tree of ``size`` leaves decomposes into one perfect (power-of-two) subtree per set bit of
``size``, largest first. Keeping only those ``popcount(size)`` hashes is enough to append a
leaf, to list the perfect subtrees that an append completes (so a store can persist them
and later serve any proof with O(log n) reads) and to compute the root, all without reading
older nodes. This is the "compact range" of transparency-dev/merkle, restricted to ranges
that start at leaf 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from certs.merkle.errors import TreeSizeError
from certs.merkle.hashing import EMPTY_ROOT, check_hash, hash_children


@dataclass(frozen=True, slots=True)
class NodeID:
    """A perfect subtree: leaves ``[index * 2**level, (index + 1) * 2**level)``.

    Level 0 nodes are leaves; their hash is the leaf hash.
    """

    level: int
    index: int


class CompactRange:
    """Mutable compact range of ``[0, size)``; ``hashes`` are ordered largest subtree first."""

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0:
            raise TreeSizeError(f"tree size must be >= 0, got {size}")
        if len(hashes) != size.bit_count():
            raise TreeSizeError(
                f"a compact range of size {size} has {size.bit_count()} hashes, got {len(hashes)}"
            )
        for h in hashes:
            check_hash(h, "compact range hash")
        self._size = size
        self._hashes = [bytes(h) for h in hashes]

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def node_ids(self) -> list[NodeID]:
        """The perfect subtrees the range is made of, in the order of :attr:`hashes`."""
        return decompose(0, self._size)

    def append(self, leaf_hash: bytes) -> list[tuple[NodeID, bytes]]:
        """Append one leaf; return the perfect subtrees of level >= 1 it completed.

        Completed subtrees are returned smallest first; an append completes
        ``trailing_ones(old_size)`` of them (amortised one per append, at most log2(n)).
        """
        check_hash(leaf_hash, "leaf hash")
        index = self._size
        current = bytes(leaf_hash)
        completed: list[tuple[NodeID, bytes]] = []
        level = 0
        while (index >> level) & 1:
            current = hash_children(self._hashes.pop(), current)
            level += 1
            completed.append((NodeID(level, index >> level), current))
        self._hashes.append(current)
        self._size += 1
        return completed

    def extend(self, leaf_hashes: Iterable[bytes]) -> list[tuple[NodeID, bytes]]:
        """Append several leaves; return every completed subtree of level >= 1."""
        completed: list[tuple[NodeID, bytes]] = []
        for leaf_hash in leaf_hashes:
            completed.extend(self.append(leaf_hash))
        return completed

    def root(self) -> bytes:
        """RFC 6962 root of ``[0, size)``: fold the subtree hashes from the right."""
        return fold_right(self._hashes) if self._hashes else EMPTY_ROOT

    def copy(self) -> CompactRange:
        return CompactRange(self._size, self._hashes)


def fold_right(hashes: Sequence[bytes]) -> bytes:
    """Hash adjacent subtrees (largest first) into the root of the range they cover.

    In an RFC 6962 tree a range ``[begin, end)`` whose size is not a power of two is the
    node ``hash(left perfect part, right remainder)``, so the remainder is folded first.
    """
    result = hashes[-1]
    for h in reversed(hashes[:-1]):
        result = hash_children(h, result)
    return result


def decompose(begin: int, end: int) -> list[NodeID]:
    """Split ``[begin, end)`` into maximal aligned perfect subtrees, largest first.

    For the ranges that occur as nodes of an RFC 6962 tree (``begin`` a multiple of a
    power of two at least ``end - begin``) this is the list whose :func:`fold_right` is the
    node's hash.
    """
    nodes: list[NodeID] = []
    while begin < end:
        size = end - begin
        level = size.bit_length() - 1
        if begin:
            level = min(level, (begin & -begin).bit_length() - 1)
        nodes.append(NodeID(level, begin >> level))
        begin += 1 << level
    return nodes
