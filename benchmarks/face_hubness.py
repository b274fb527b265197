"""Hubness-aware face scores on a cached ``bdx eval face`` run: rank-1, EER, TAR at FAR.

Reads the per-image outcomes that ``bdx eval face --cache FILE.npz`` saved (no extraction) and
scores the enrolled embeddings under the leave-one-out protocol of
``matcher.face.dataset_eval.score_sets`` (probe = row image, gallery = every other enrolled
image, pairs i < j scored with i as the probe), with these scores:

* ``cosine``: the plain cosine (what the node uses today);
* ``csls k=K``: ``cos - (r_q + r_g) / 2`` (``score_sets(csls_k=K)``, the code behind
  ``bdx eval face --csls-k K``);
* ``gallery-only k=K``: ``cos - r_g / 2``, no probe term (same ranking as CSLS; a search that
  only adds a stored per-record offset);
* ``csls-other-subjects k=K``: ``r_g`` over the records of *other* subjects only (a node knows
  each record's subject), so a person's own images do not count as crowding;
* ``csls-at-enrolment k=K``: ``r_g`` computed once when ``g`` is enrolled, against the records
  enrolled before it (images enrolled in a seeded random order), never updated;
* ``znorm``: ``(cos - mu_g) / sigma_g``, mean and spread of ``g``'s cosines to the rest of the
  gallery (gallery-side Z-norm, cohort = the gallery less the probe).

Every offset is computed on the gallery the probe is searched against, so without the probe.

    .venv/bin/python benchmarks/face_hubness.py benchmarks/cache/lfw_a_to_m-lm68.npz --json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from matcher import evaluation
from matcher.face import dataset_eval, eval_cache, hubness
from matcher.face import params as P

F32 = npt.NDArray[np.float32]
# (rows (b,), cosines (b, n)) -> scores (b, n); the diagonal is masked by the caller
Adjust = Callable[[npt.NDArray[np.int64], F32], F32]


def scored_sets(
    e: F32, labels: npt.NDArray[np.int64], adjust: Adjust, thresholds: dict[str, float]
) -> dict[str, Any]:
    """Genuine / impostor scores (pairs i < j, i the probe), leave-one-out rank-1, and the
    open-set figures at each cosine threshold: the top-ranked record is a hit when its *cosine*
    reaches the threshold; DIR = mated probes whose top record is a mate and a hit, FPIR =
    probes without an enrolled mate (singletons) whose top record is a hit."""
    n = e.shape[0]
    counts = np.bincount(labels)
    cols = np.arange(n)
    gen, imp, hits, probes = [], [], 0.0, 0
    dir_hits = dict.fromkeys(thresholds, 0)
    false_alarms = dict.fromkeys(thresholds, 0)
    for start in range(0, n, P.SCORE_BLOCK_ROWS):
        rows = np.arange(start, min(n, start + P.SCORE_BLOCK_ROWS))
        c = e[rows] @ e.T
        s = adjust(rows, c.copy())
        same = labels[rows, None] == labels[None, :]
        upper = cols[None, :] > rows[:, None]
        gen.append(s[upper & same])
        imp.append(s[upper & ~same])
        s[np.arange(rows.size), rows] = -np.inf
        has = counts[labels[rows]] > 1
        hits += has.sum() * evaluation.rank1(s[has], labels[rows][has], labels)
        probes += int(has.sum())
        top = s.argmax(axis=1)
        top_cos = c[np.arange(rows.size), top]
        mate = labels[top] == labels[rows]
        for name, t in thresholds.items():
            dir_hits[name] += int(np.sum(has & mate & (top_cos >= t)))
            false_alarms[name] += int(np.sum(~has & (top_cos >= t)))
    singletons = int(np.sum(counts == 1))
    return {
        "genuine": np.concatenate(gen),
        "impostor": np.concatenate(imp),
        "rank1": hits / probes,
        "rank1_probes": probes,
        "open_set": {
            name: {
                "threshold": t,
                "dir": round(dir_hits[name] / probes, 5),
                "fpir": round(false_alarms[name] / max(singletons, 1), 5),
            }
            for name, t in thresholds.items()
        },
        "non_mated_probes": singletons,
    }


def figures(sets: dict[str, Any]) -> dict[str, Any]:
    g, i = sets["genuine"], sets["impostor"]
    out = {
        "rank1": round(float(sets["rank1"]), 5),
        "misses": round((1 - sets["rank1"]) * sets["rank1_probes"]),
        "eer": round(evaluation.eer(g, i), 5),
        "tar_at_far_1%": round(1 - evaluation.fnmr_at_fmr(g, i, 0.01), 5),
        "tar_at_far_0.1%": round(1 - evaluation.fnmr_at_fmr(g, i, 0.001), 5),
    }
    if "open_set" in sets:
        out["open_set"] = sets["open_set"]
        out["non_mated_probes"] = sets["non_mated_probes"]
    return out


def top_with_mask(
    e: F32, k: int, allowed: Callable[[npt.NDArray[np.int64]], npt.NDArray[np.bool_]]
) -> tuple[F32, npt.NDArray[np.int64]]:
    """Each record's k + 1 best cosines (descending, -inf padded) over the records that
    ``allowed(rows)`` (b, n) admits, and how many it admits."""
    n = e.shape[0]
    top = np.full((n, k + 1), -np.inf, np.float32)
    count = np.zeros(n, np.int64)
    for start in range(0, n, P.SCORE_BLOCK_ROWS):
        rows = np.arange(start, min(n, start + P.SCORE_BLOCK_ROWS))
        ok = allowed(rows)
        s = np.where(ok, e[rows] @ e.T, -np.inf).astype(np.float32)
        w = min(k + 1, n)
        part = np.partition(s, n - w, axis=1)[:, n - w :]
        top[rows, :w] = -np.sort(-part, axis=1)
        count[rows] = ok.sum(axis=1)
    return top, count


def masked_offsets(
    top: F32, count: npt.NDArray[np.int64], k: int, s: F32, probe_in: npt.NDArray[np.bool_]
) -> F32:
    """r_g (b, n) without probe q, from the k + 1 best admitted scores of each g; ``probe_in``
    (b, n): the probe is among g's admitted records."""
    kk = np.minimum(count, k)  # (n,) neighbours in the full admitted set
    tk = np.where(np.arange(k + 1)[None, :] < kk[:, None], top, 0.0)
    total = tk[:, :k].sum(axis=1)  # (n,)
    r = np.where(kk > 0, total / np.maximum(kk, 1), 0.0)
    kth = top[np.arange(top.shape[0]), np.maximum(kk - 1, 0)]
    nxt = top[:, k]
    inside = probe_in & (kk[None, :] > 0) & (s >= kth[None, :] - P.CSLS_TIE_SLACK)
    many = count[None, :] > k  # the (k+1)-th replaces the probe
    left = np.maximum(kk - 1, 1)[None, :]
    r_many = r[None, :] - (s - nxt[None, :]) / k
    r_few = np.where(kk[None, :] > 1, (total[None, :] - s) / left, 0.0)
    return np.where(inside, np.where(many, r_many, r_few), r[None, :]).astype(np.float32)


def gallery_only(loo: hubness.LeaveOneOutOffsets) -> Adjust:
    """``cos - r_g / 2``: the CSLS ranking without the probe term."""

    def adjust(rows: npt.NDArray[np.int64], s: F32) -> F32:
        return s - np.float32(0.5) * loo.gallery_offsets(s)

    return adjust


def masked_csls(
    e: F32,
    k: int,
    loo: hubness.LeaveOneOutOffsets,
    key: npt.NDArray[np.int64],
    relation: str,
) -> Adjust:
    """CSLS whose ``r_g`` counts only the records j that ``key[j] <relation> key[g]`` admits:
    ``!=`` other subjects (key = label), ``<`` enrolled before g (key = enrolment turn)."""

    def admits(g: npt.NDArray[np.int64], j: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        if relation == "!=":
            return np.asarray(key[j] != key[g])
        return np.asarray(key[j] < key[g])

    every = np.arange(e.shape[0])
    top, count = top_with_mask(e, k, lambda rows: admits(rows[:, None], every[None, :]))

    def adjust(rows: npt.NDArray[np.int64], s: F32) -> F32:
        probe_in = admits(every[None, :], rows[:, None])  # (b, n): q among g's
        rg = masked_offsets(top, count, k, s, probe_in)
        return s - np.float32(0.5) * (loo.full[rows, None] + rg)

    return adjust


def znorm(e: F32) -> Adjust:
    """``(cos - mu_g) / sigma_g`` over g's cohort: the gallery less g itself and the probe."""
    n = e.shape[0]
    sums = np.zeros(n)
    sq = np.zeros(n)
    for start in range(0, n, P.SCORE_BLOCK_ROWS):
        rows = np.arange(start, min(n, start + P.SCORE_BLOCK_ROWS))
        s64 = (e[rows] @ e.T).astype(np.float64)
        s64[np.arange(rows.size), rows] = 0.0
        sums[rows], sq[rows] = s64.sum(axis=1), (s64**2).sum(axis=1)

    def adjust(rows: npt.NDArray[np.int64], s: F32) -> F32:
        m = n - 2
        mu = (sums[None, :] - s) / m
        var = (sq[None, :] - s.astype(np.float64) ** 2) / m - mu**2
        return ((s - mu) / np.sqrt(np.maximum(var, 1e-12))).astype(np.float32)

    return adjust


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cache", type=Path)
    ap.add_argument("--k", type=int, nargs="+", default=[5, 10, 20, 50])
    ap.add_argument("--seed", type=int, default=1, help="enrolment order of csls-at-enrolment")
    ap.add_argument(
        "--part",
        default="1/1",
        help="I/N: only the I-th of N contiguous parts of the sorted identities (the gallery "
        "is then that part alone; a consistency check on disjoint people)",
    )
    ap.add_argument("--variants", nargs="+", default=None, help="only these score names")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rec = eval_cache.load(args.cache)
    part, parts = (int(v) for v in args.part.split("/"))
    names = np.unique(rec.identities)
    chosen = np.array_split(names, parts)[part - 1]
    ok = rec.enrolled & np.isin(rec.identities, chosen)
    e = np.ascontiguousarray(rec.embeddings[ok], dtype=np.float32)
    _names, inv = np.unique(rec.identities[ok], return_inverse=True)
    labels = inv.astype(np.int64)
    n = e.shape[0]
    out: dict[str, Any] = {"cache": str(args.cache), "part": args.part, "enrolled": n}

    def want(name: str) -> bool:
        return args.variants is None or name.split(" ")[0] in args.variants

    def plain(rows: npt.NDArray[np.int64], s: F32) -> F32:
        return s

    plain_sets = scored_sets(e, labels, plain, {})
    thr = {
        f"far_{f:.1%}".replace(".0%", "%"): evaluation.threshold_at_fmr(plain_sets["impostor"], f)
        for f in P.REPORT_FMRS
    }  # cosine thresholds of the plain run: the hit decision stays on the cosine
    out["cosine"] = figures(scored_sets(e, labels, plain, thr))
    order = np.random.default_rng(args.seed).permutation(n)  # order[i]: i's turn to enrol
    for k in args.k:
        if want("csls"):
            out[f"csls k={k}"] = figures(
                dataset_eval.score_sets(e, labels, csls_k=k, csls_pairs=True)
            )
        loo = hubness.LeaveOneOutOffsets(e, k)
        if want("gallery-only"):
            out[f"gallery-only k={k}"] = figures(scored_sets(e, labels, gallery_only(loo), thr))
        if want("csls-other-subjects"):
            out[f"csls-other-subjects k={k}"] = figures(
                scored_sets(e, labels, masked_csls(e, k, loo, labels, "!="), thr)
            )
        if want("csls-at-enrolment"):
            out[f"csls-at-enrolment k={k}"] = figures(
                scored_sets(e, labels, masked_csls(e, k, loo, order, "<"), {})
            )
    if want("znorm"):
        out["znorm"] = figures(scored_sets(e, labels, znorm(e), {}))
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return
    print(f"{args.cache}: {n} enrolled")
    for name, f in out.items():
        if isinstance(f, dict):
            print(
                f"{name:28s} rank-1 {f['rank1']:.4%} ({f['misses']} misses)  EER {f['eer']:.3%}"
                f"  TAR@1% {f['tar_at_far_1%']:.3%}  TAR@0.1% {f['tar_at_far_0.1%']:.3%}"
            )
            for at, o in f.get("open_set", {}).items():
                print(
                    f"{'':28s} cosine {at} ({o['threshold']:.5f}): DIR {o['dir']:.3%}"
                    f"  FPIR {o['fpir']:.3%} of {f['non_mated_probes']}"
                )


if __name__ == "__main__":
    main()
