"""RFC 6962 / RFC 9162 Merkle trees: hashing, compact ranges, proof generation, verification.

Verification functions return nothing or raise a :class:`MerkleError` subclass.
"""

from certs.merkle.compact import CompactRange, NodeID, decompose, fold_right
from certs.merkle.errors import (
    HashSizeError,
    IndexOutOfRangeError,
    MerkleError,
    ProofLengthError,
    RootMismatchError,
    TreeSizeError,
)
from certs.merkle.hashing import EMPTY_ROOT, HASH_SIZE, hash_children, hash_leaf
from certs.merkle.proof import (
    NodeLookup,
    ProofPlan,
    build_proof,
    consistency_plan,
    consistency_proof,
    inclusion_plan,
    inclusion_proof,
    memory_lookup,
    plan_nodes,
    root_plan,
)
from certs.merkle.verify import (
    consistency_proof_length,
    inclusion_proof_length,
    root_from_inclusion_proof,
    roots_from_consistency_proof,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "HashSizeError",
    "IndexOutOfRangeError",
    "MerkleError",
    "NodeID",
    "NodeLookup",
    "ProofLengthError",
    "ProofPlan",
    "RootMismatchError",
    "TreeSizeError",
    "build_proof",
    "consistency_plan",
    "consistency_proof",
    "consistency_proof_length",
    "decompose",
    "fold_right",
    "hash_children",
    "hash_leaf",
    "inclusion_plan",
    "inclusion_proof",
    "inclusion_proof_length",
    "memory_lookup",
    "plan_nodes",
    "root_from_inclusion_proof",
    "root_plan",
    "roots_from_consistency_proof",
    "verify_consistency",
    "verify_inclusion",
]
