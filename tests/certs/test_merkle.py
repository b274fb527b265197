"""Merkle tree hashing, proof generation and RFC 9162 verification, against a naive model."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certs.errors import CertsError
from certs.merkle import (
    EMPTY_ROOT,
    CompactRange,
    HashSizeError,
    IndexOutOfRangeError,
    ProofLengthError,
    RootMismatchError,
    TreeSizeError,
    consistency_plan,
    consistency_proof,
    consistency_proof_length,
    hash_leaf,
    inclusion_plan,
    inclusion_proof,
    memory_lookup,
    root_from_inclusion_proof,
    root_plan,
    roots_from_consistency_proof,
    verify_consistency,
    verify_inclusion,
)

# --- naive RFC 6962 §2.1 model, straight from the recursive definitions --------------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def naive_mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = _k(len(leaves))
    return hashlib.sha256(b"\x01" + naive_mth(leaves[:k]) + naive_mth(leaves[k:])).digest()


def naive_path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = _k(len(leaves))
    if m < k:
        return [*naive_path(m, leaves[:k]), naive_mth(leaves[k:])]
    return [*naive_path(m - k, leaves[k:]), naive_mth(leaves[:k])]


def naive_subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [naive_mth(leaves)]
    k = _k(n)
    if m <= k:
        return [*naive_subproof(m, leaves[:k], whole), naive_mth(leaves[k:])]
    return [*naive_subproof(m - k, leaves[k:], False), naive_mth(leaves[:k])]


def data(n: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(n)]


def flip(value: bytes, bit: int) -> bytes:
    b = bytearray(value)
    b[bit // 8 % len(b)] ^= 1 << (bit % 8)
    return bytes(b)


# RFC 6962 test tree used by certificate-transparency and transparency-dev/merkle.
RFC_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
RFC_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_empty_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT.hex() == hashlib.sha256(b"").hexdigest()
    assert CompactRange().root() == EMPTY_ROOT


def test_rfc6962_reference_roots() -> None:
    cr = CompactRange()
    for size, leaf in enumerate(RFC_LEAVES, start=1):
        cr.append(hash_leaf(leaf))
        assert cr.root().hex() == RFC_ROOTS[size - 1]
        assert naive_mth(RFC_LEAVES[:size]).hex() == RFC_ROOTS[size - 1]


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=300))
def test_compact_range_root_and_nodes_match_naive(n: int) -> None:
    leaves = data(n)
    cr = CompactRange()
    completed = cr.extend(hash_leaf(x) for x in leaves)
    assert cr.root() == naive_mth(leaves)
    # Every completed node is the naive root of the leaves it covers, each level >= 1 once.
    for node, h in completed:
        begin = node.index << node.level
        assert h == naive_mth(leaves[begin : begin + (1 << node.level)])
    assert len(completed) == len({node for node, _ in completed}) == n - n.bit_count()
    restored = CompactRange(cr.size, cr.hashes)
    assert restored.root() == cr.root()


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_inclusion_proofs_verify_and_match_naive(draw: st.DataObject) -> None:
    n = draw.draw(st.integers(min_value=1, max_value=200))
    index = draw.draw(st.integers(min_value=0, max_value=n - 1))
    leaves = data(n)
    hashes = [hash_leaf(x) for x in leaves]
    proof = inclusion_proof(index, n, memory_lookup(hashes))
    assert proof == naive_path(index, leaves)
    root = naive_mth(leaves)
    verify_inclusion(hashes[index], index, n, proof, root)
    assert root_from_inclusion_proof(hashes[index], index, n, proof) == root

    bit = draw.draw(st.integers(min_value=0, max_value=255))
    with pytest.raises(RootMismatchError):
        verify_inclusion(flip(hashes[index], bit), index, n, proof, root)
    with pytest.raises(RootMismatchError):
        verify_inclusion(hashes[index], index, n, proof, flip(root, bit))
    if proof:
        at = draw.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        bad = list(proof)
        bad[at] = flip(bad[at], bit)
        with pytest.raises(RootMismatchError):
            verify_inclusion(hashes[index], index, n, bad, root)
    other = index ^ (1 << draw.draw(st.integers(min_value=0, max_value=8)))
    with pytest.raises((RootMismatchError, ProofLengthError, IndexOutOfRangeError)):
        verify_inclusion(hashes[index], other, n, proof, root)


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_consistency_proofs_verify_and_match_naive(draw: st.DataObject) -> None:
    n2 = draw.draw(st.integers(min_value=1, max_value=200))
    n1 = draw.draw(st.integers(min_value=1, max_value=n2))
    leaves = data(n2)
    hashes = [hash_leaf(x) for x in leaves]
    proof = consistency_proof(n1, n2, memory_lookup(hashes))
    assert proof == ([] if n1 == n2 else naive_subproof(n1, leaves, True))
    root1, root2 = naive_mth(leaves[:n1]), naive_mth(leaves)
    verify_consistency(n1, n2, proof, root1, root2)

    bit = draw.draw(st.integers(min_value=0, max_value=255))
    with pytest.raises(RootMismatchError):
        verify_consistency(n1, n2, proof, flip(root1, bit), root2)
    with pytest.raises(RootMismatchError):
        verify_consistency(n1, n2, proof, root1, flip(root2, bit))
    if proof:
        at = draw.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        bad = list(proof)
        bad[at] = flip(bad[at], bit)
        with pytest.raises(RootMismatchError):
            verify_consistency(n1, n2, bad, root1, root2)
        with pytest.raises(ProofLengthError):
            verify_consistency(n1, n2, proof[:-1], root1, root2)
    with pytest.raises(ProofLengthError):
        verify_consistency(n1, n2, [*proof, root1], root1, root2)


def test_consistency_of_a_forked_history_fails() -> None:
    a = [hash_leaf(x) for x in data(10)]
    b = list(a)
    b[6] = hash_leaf(b"forged")
    ra7 = CompactRange()
    ra7.extend(a[:7])
    rb10 = CompactRange()
    rb10.extend(b)
    proof = consistency_proof(7, 10, memory_lookup(b))
    with pytest.raises(RootMismatchError):
        verify_consistency(7, 10, proof, ra7.root(), rb10.root())


def test_edge_sizes_and_errors() -> None:
    h = hash_leaf(b"x")
    verify_inclusion(h, 0, 1, [], h)
    verify_consistency(0, 5, [], EMPTY_ROOT, h)
    verify_consistency(3, 3, [], h, h)
    with pytest.raises(RootMismatchError):
        verify_consistency(0, 5, [], h, h)
    with pytest.raises(RootMismatchError):
        verify_consistency(3, 3, [], h, EMPTY_ROOT)
    with pytest.raises(ProofLengthError):
        verify_consistency(3, 3, [h], h, h)
    with pytest.raises(ProofLengthError):
        verify_inclusion(h, 0, 1, [h], h)
    with pytest.raises(IndexOutOfRangeError):
        verify_inclusion(h, 1, 1, [], h)
    with pytest.raises(IndexOutOfRangeError):
        verify_inclusion(h, -1, 4, [], h)
    with pytest.raises(IndexOutOfRangeError):
        inclusion_proof(5, 5, memory_lookup([h] * 5))
    with pytest.raises(TreeSizeError):
        verify_consistency(5, 3, [], h, h)
    with pytest.raises(TreeSizeError):
        consistency_proof(5, 3, memory_lookup([h] * 5))
    with pytest.raises(TreeSizeError):
        roots_from_consistency_proof(3, 3, [], h)
    with pytest.raises(TreeSizeError):
        inclusion_plan(0, -1)
    with pytest.raises(TreeSizeError):
        root_plan(-1)
    with pytest.raises(TreeSizeError):
        consistency_proof_length(4, 2)
    assert root_plan(0) == [] and consistency_plan(0, 9) == consistency_plan(9, 9) == []
    with pytest.raises(TreeSizeError):
        CompactRange(-1)
    with pytest.raises(TreeSizeError):
        CompactRange(3, [h])
    with pytest.raises(HashSizeError):
        verify_inclusion(h[:31], 0, 1, [], h)
    with pytest.raises(HashSizeError):
        verify_inclusion(h, 0, 2, [b"short"], h)
    with pytest.raises(HashSizeError):
        CompactRange().append(b"")
    # Every Merkle error is a certs error with a machine-readable reason (exit code 5).
    try:
        verify_inclusion(h, 0, 1, [], EMPTY_ROOT)
    except CertsError as exc:
        assert exc.reason == "root_mismatch" and exc.exit_code == 5
    else:  # pragma: no cover - the call above must raise
        pytest.fail("verify_inclusion accepted a wrong root")
