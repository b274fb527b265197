"""Proof generation (RFC 6962 §2.1.1, §2.1.2; RFC 9162 §2.1.3.1, §2.1.4.1) from stored hashes.

Generation is split in two steps so a store can serve a proof with one batched read:

1. :func:`inclusion_plan` / :func:`consistency_plan` compute, from the sizes alone, which
   nodes the proof is made of. Each proof element is a range of the tree; a range that is a
   perfect subtree is one stored node, a right-border range that is not (the tree's size is
   not a power of two) is the :func:`~certs.merkle.compact.fold_right` of a few perfect
   subtrees. A plan needs O(log n) perfect subtrees in all.
2. :func:`build_proof` folds the looked-up hashes into the proof.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from certs.merkle.compact import NodeID, decompose, fold_right
from certs.merkle.errors import IndexOutOfRangeError, TreeSizeError
from certs.merkle.hashing import hash_children

ProofPlan = list[list[NodeID]]
"""One list of perfect subtrees (largest first) per proof element, leaf-side first."""

NodeLookup = Callable[[Sequence[NodeID]], Mapping[NodeID, bytes]]
"""Returns the hashes of the given perfect subtrees (level 0 = leaf hashes)."""


def _split(n: int) -> int:
    """Largest power of two strictly smaller than ``n`` (``n >= 2``): RFC 6962's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_plan(index: int, size: int) -> ProofPlan:
    """Nodes of the audit path ``PATH(index, D[0:size])``, leaf side first."""
    if size < 0:
        raise TreeSizeError(f"tree size must be >= 0, got {size}")
    if not 0 <= index < size:
        raise IndexOutOfRangeError(f"leaf index {index} is outside a tree of size {size}")
    plan: ProofPlan = []
    begin, end = 0, size
    while end - begin > 1:
        k = _split(end - begin)
        if index < begin + k:
            plan.append(decompose(begin + k, end))
            end = begin + k
        else:
            plan.append(decompose(begin, begin + k))
            begin += k
    plan.reverse()
    return plan


def consistency_plan(size1: int, size2: int) -> ProofPlan:
    """Nodes of ``PROOF(size1, D[0:size2])``; empty when ``size1`` is 0 or equals ``size2``."""
    if size1 < 0 or size2 < size1:
        raise TreeSizeError(f"cannot prove consistency from size {size1} to size {size2}")
    if size1 == 0 or size1 == size2:
        return []
    plan: ProofPlan = []
    begin, end, whole = 0, size2, True
    while True:
        if size1 == end:
            if not whole:
                plan.append(decompose(begin, end))
            break
        k = _split(end - begin)
        if size1 <= begin + k:
            plan.append(decompose(begin + k, end))
            end = begin + k
        else:
            plan.append(decompose(begin, begin + k))
            begin += k
            whole = False
    plan.reverse()
    return plan


def plan_nodes(plan: ProofPlan) -> list[NodeID]:
    """All distinct perfect subtrees a plan needs, for one batched lookup."""
    return list(dict.fromkeys(node for element in plan for node in element))


def build_proof(plan: ProofPlan, hashes: Mapping[NodeID, bytes]) -> list[bytes]:
    """Fold the looked-up subtree hashes of each proof element into the proof."""
    return [fold_right([hashes[node] for node in element]) for element in plan]


def inclusion_proof(index: int, size: int, lookup: NodeLookup) -> list[bytes]:
    """Inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
    plan = inclusion_plan(index, size)
    return build_proof(plan, lookup(plan_nodes(plan)))


def consistency_proof(size1: int, size2: int, lookup: NodeLookup) -> list[bytes]:
    """Consistency proof between the trees of ``size1`` and ``size2`` leaves."""
    plan = consistency_plan(size1, size2)
    return build_proof(plan, lookup(plan_nodes(plan)))


def root_plan(size: int) -> list[NodeID]:
    """Perfect subtrees whose :func:`fold_right` is the root of the tree of ``size`` leaves."""
    if size < 0:
        raise TreeSizeError(f"tree size must be >= 0, got {size}")
    return decompose(0, size)


def memory_lookup(leaf_hashes: Sequence[bytes]) -> NodeLookup:
    """A lookup over an in-memory list of leaf hashes (tests, small trees): O(2^level) each."""

    def subtree(node: NodeID) -> bytes:
        begin = node.index << node.level
        level = list(leaf_hashes[begin : begin + (1 << node.level)])
        while len(level) > 1:
            level = [hash_children(level[i], level[i + 1]) for i in range(0, len(level), 2)]
        return level[0]

    def lookup(nodes: Iterable[NodeID]) -> dict[NodeID, bytes]:
        return {node: subtree(node) for node in nodes}

    return lookup
