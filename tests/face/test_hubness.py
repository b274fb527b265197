"""Hubness-aware (CSLS) scores: offsets and leave-one-out evaluation against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from matcher import evaluation
from matcher.face import dataset_eval, diagnose, hubness
from matcher.face import params as P
from matcher.face.eval_cache import EvalRecords


def unit(rows: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(rows, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_offsets(e: np.ndarray, k: int) -> np.ndarray:
    n = e.shape[0]
    out = np.zeros(n)
    for i in range(n):
        others = sorted((float(e[i] @ e[j]) for j in range(n) if j != i), reverse=True)
        out[i] = np.mean(others[:k]) if others else 0.0
    return out


@pytest.mark.parametrize("k", [1, 3, 7, 40])
def test_offsets_match_brute_force(k: int) -> None:
    e = unit(23)
    got = hubness.csls_offsets(e, k, block_rows=5)  # several blocks
    assert got.dtype == np.float32 and got.shape == (23,)
    assert got == pytest.approx(brute_offsets(e, k), abs=1e-5)
    top = hubness.neighbour_scores(e, k, block_rows=4)
    assert top.shape == (23, min(k, 22)) and np.all(np.diff(top, axis=1) <= 0)


def test_offsets_edge_cases() -> None:
    assert hubness.csls_offsets(unit(1), 5).tolist() == [0.0]
    assert hubness.csls_offsets(np.zeros((0, 8), np.float32), 5).shape == (0,)
    two = unit(2)
    assert hubness.csls_offsets(two, 5) == pytest.approx([two[0] @ two[1]] * 2, abs=1e-6)
    with pytest.raises(ValueError):
        hubness.csls_offsets(unit(4), 0)
    with pytest.raises(ValueError):
        hubness.neighbour_scores(np.zeros(8, np.float32), 2)
    with pytest.raises(ValueError):
        hubness.neighbour_scores(np.full((3, 4), np.nan, np.float32), 2)


def test_hub_is_discounted() -> None:
    """A record near many others (a hub) gets the largest offset and loses a probe it stole."""
    people = unit(30, dim=64, seed=1)  # near-orthogonal identities
    hub = people[1:11].sum(axis=0)
    hub /= np.linalg.norm(hub)  # cosine ~0.3 to ten people
    gallery = np.vstack([people, hub[None, :]]).astype(np.float32)  # probe's mate: row 0
    probe = (people[0] + 1.1 * hub).astype(np.float32)
    probe /= np.linalg.norm(probe)
    r = hubness.csls_offsets(gallery, 5)
    assert int(np.argmax(r)) == 30
    cos = probe[None, :] @ gallery.T
    assert int(np.argmax(cos)) == 30  # the hub wins on cosine
    rq = hubness.mean_top_k(cos, 5)
    s = hubness.csls_scores(cos, rq, r)
    assert int(np.argmax(s)) == 0  # and loses on CSLS
    assert s == pytest.approx(cos - 0.5 * (rq[:, None] + r[None, :]), abs=1e-6)
    assert rq.shape == (1,) and rq[0] == pytest.approx(np.sort(cos[0])[-5:].mean(), abs=1e-6)
    assert hubness.mean_top_k(cos, 99)[0] == pytest.approx(cos.mean(), abs=1e-6)
    with pytest.raises(ValueError):
        hubness.csls_scores(cos, rq, r[:-1])


def brute_csls_sets(e: np.ndarray, labels: np.ndarray, k: int) -> tuple[list, list, float]:
    """Protocol of score_sets(csls_k=k) written out: probe i, gallery = all images but i."""
    n = len(labels)
    score = np.full((n, n), -np.inf)
    for q in range(n):
        gal = [g for g in range(n) if g != q]
        rq = brute_offsets(e[[q, *gal]], k)[0]
        for g in gal:
            rg = brute_offsets(e[gal], k)[gal.index(g)]
            score[q, g] = float(e[q] @ e[g]) - 0.5 * (rq + rg)
    gen, imp = [], []
    for i, j in itertools.combinations(range(n), 2):
        (gen if labels[i] == labels[j] else imp).append(score[i, j])
    has = np.bincount(labels)[labels] > 1
    return gen, imp, evaluation.rank1(score[has], labels[has], labels)


@pytest.mark.parametrize("k", [1, 2, 4, 30])
def test_leave_one_out_csls_matches_brute_force(monkeypatch: pytest.MonkeyPatch, k: int) -> None:
    monkeypatch.setattr(P, "SCORE_BLOCK_ROWS", 4)
    rng = np.random.default_rng(k)
    labels = np.repeat(np.arange(5), [3, 4, 1, 2, 3])
    centres = rng.normal(size=(5, 16))
    x = centres[labels] + 1.1 * rng.normal(size=(labels.size, 16))
    e = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    got = dataset_eval.score_sets(e, labels, csls_k=k, csls_pairs=True)
    gen, imp, rank1 = brute_csls_sets(e, labels, k)
    assert sorted(got["genuine"].tolist()) == pytest.approx(sorted(gen), abs=1e-5)
    assert sorted(got["impostor"].tolist()) == pytest.approx(sorted(imp), abs=1e-5)
    assert got["rank1"] == pytest.approx(rank1) and got["score"] == f"csls k={k}"
    plain = dataset_eval.score_sets(e, labels)
    assert plain["score"] == "cosine" and plain["rank1_probes"] == got["rank1_probes"]
    assert plain["ranking"] == "cosine" and plain["rank1_cosine"] == plain["rank1"]
    ranked = dataset_eval.score_sets(e, labels, csls_k=k)  # the node's way: rank by CSLS only
    assert ranked["ranking"] == f"csls k={k}" and ranked["score"] == "cosine"
    assert ranked["rank1"] == pytest.approx(rank1)
    assert ranked["rank1_cosine"] == pytest.approx(plain["rank1"])
    assert ranked["genuine"].tolist() == plain["genuine"].tolist()
    assert ranked["impostor"].tolist() == plain["impostor"].tolist()
    records = EvalRecords(
        files=np.array([f"{i}.jpg" for i in range(labels.size)]),
        identities=np.array([f"p{v}" for v in labels]),
        reasons=np.full(labels.size, ""),
        embeddings=e,
        boxes=np.tile(np.array([0, 0, 99, 99], np.int32), (labels.size, 1)),
        faces_found=np.ones(labels.size, np.int32),
        whole_image=np.zeros(labels.size, bool),
        notes=np.full(labels.size, ""),
    )
    d = diagnose.rank1_misses(records, csls_k=k)
    assert d["rank1"] == pytest.approx(got["rank1"], abs=1e-5)
