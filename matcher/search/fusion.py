"""Multi-finger subject search: per-finger scores fused into one subject score.

A probe carries one or more fingers (each with its ISO position); each is searched against the
gallery records of the same position (see :mod:`matcher.search.fingerprint`). Rules, selected
by name (:data:`RULES`):

* ``"fmr"`` (default): each finger's raw score ``s`` becomes ``z = -log10 FMR̂(s)``, where
  FMR̂ is the probe's *empirical* false-match rate: (1 + the number of gallery records scoring
  above ``s``) / (n + 1) against that finger. Nearly all of a large gallery are non-mates, so
  this is the probe-specific impostor tail, a cohort normalisation needing no calibration
  set. A subject's z per finger is the best over its records at that position; the fused
  score is the sum of z over probe fingers, i.e. Fisher's method on per-finger p-values (the
  log-likelihood-ratio sum when the genuine density is flat in the tail). Its FMR follows
  from χ² with 2f degrees of freedom: :func:`fused_fmr`. FMR̂ cannot go below 1/(n+1) for n
  compared records, so small galleries cannot reach small target FMRs. A raw score of 0 (no
  correspondence at all) gets z = 0, whatever its rank.
* ``"sum"``: sum of raw per-finger best scores. ``"max"``: the best single finger.

Arrays: ``scores`` (f, size) float32 per probe finger and global id, -inf = not compared;
``codes`` (size,) int64 subject index of each global id; fused (n_subjects,) float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from matcher.errors import MatcherError
from matcher.fingerprint.template import FingerprintTemplate
from matcher.gallery import Gallery
from matcher.search import params
from matcher.search.fingerprint import fingerprint_scores

RULES = ("fmr", "sum", "max")


def empirical_z(scores: np.ndarray) -> np.ndarray:
    """(size,) scores -> (size,) ``z = log10((n + 1) / (1 + #{scores > s}))`` over the n
    compared scores; 0 where not compared and where ``s <= 0``. The top score gets
    ``log10(n + 1)``. Counting only strictly greater scores makes a subject's best z monotone
    in each of its own scores (with ``>=`` a tie could lower it). A score of 0 means nothing
    corresponded (e.g. a probe with too few minutiae ties every record at 0): it carries no
    evidence, so it gets z = 0 rather than the top rank shared by the whole gallery."""
    out = np.zeros(scores.shape[0], dtype=np.float64)
    live = np.isfinite(scores)
    s = scores[live]
    n = s.shape[0]
    if n:
        ranked = np.sort(s)
        greater = n - np.searchsorted(ranked, s, side="right")
        out[live] = np.where(s > 0, np.log10((n + 1) / (1 + greater)), 0.0)
    return out


def fuse(scores: np.ndarray, codes: np.ndarray, n_subjects: int, rule: str = "fmr") -> np.ndarray:
    """Subject scores (n_subjects,) from per-finger scores (f, size); see the module doc."""
    if rule not in RULES:
        raise MatcherError(f"unknown fusion rule {rule!r}; use one of {RULES}", reason="bad_rule")
    per_finger = np.zeros((scores.shape[0], n_subjects), dtype=np.float64)
    for f, row in enumerate(scores):  # one pass per probe finger (at most 10), not per record
        values = empirical_z(row) if rule == "fmr" else np.where(np.isfinite(row), row, 0.0)
        live = np.isfinite(row)
        np.maximum.at(per_finger[f], codes[live], values[live])
    if rule == "max":
        return per_finger.max(axis=0, initial=0.0)
    return per_finger.sum(axis=0)


def fused_fmr(z_sum: np.ndarray | float, fingers: int) -> np.ndarray:
    """Estimated FMR of a fused ``"fmr"`` score: P(χ²(2f) >= 2 ln(10) z_sum) (Fisher)."""
    x = np.asarray(z_sum, dtype=np.float64) * math.log(10.0)  # = chi2 / 2
    term = np.ones_like(x)
    total = np.ones_like(x)
    for i in range(1, fingers):
        term = term * x / i
        total = total + term
    return np.asarray(np.minimum(1.0, np.exp(-x) * total))


@dataclass(frozen=True)
class SubjectCandidate:
    subject: str
    score: float
    fmr: float | None  # for rule "fmr": the fused score's estimated FMR


@dataclass(frozen=True)
class SubjectResult:
    """Subjects best first; ``hit`` when the best one's fused FMR is at most ``target_fmr``."""

    candidates: tuple[SubjectCandidate, ...]
    target_fmr: float | None = None

    @property
    def hit(self) -> bool | None:
        if self.target_fmr is None:
            return None
        best = self.candidates[0] if self.candidates else None
        return best is not None and best.fmr is not None and best.fmr <= self.target_fmr


def search_subjects(
    gallery: Gallery,
    probes: Sequence[FingerprintTemplate],
    *,
    k: int = params.DEFAULT_K,
    rule: str = "fmr",
    target_fmr: float | None = None,
    threads: int = params.THREADS,
) -> SubjectResult:
    """Top-``k`` subjects for a multi-finger probe (each finger at its own position)."""
    if not probes:
        raise MatcherError("a subject probe needs at least one finger", reason="no_fingers")
    if rule not in RULES:
        raise MatcherError(f"unknown fusion rule {rule!r}; use one of {RULES}", reason="bad_rule")
    if target_fmr is not None and rule != "fmr":
        raise MatcherError("a target FMR needs the 'fmr' rule", reason="bad_rule")
    codes, names = gallery.subject_codes()
    scores = np.stack([fingerprint_scores(gallery, p, threads=threads) for p in probes])
    fused = fuse(scores, codes, names.shape[0], rule)
    order = np.lexsort((np.arange(fused.shape[0]), -fused))[:k]
    order = order[fused[order] > 0]
    fmr = fused_fmr(fused[order], len(probes)) if rule == "fmr" else None
    cands = tuple(
        SubjectCandidate(names[i].decode(), float(fused[i]), None if fmr is None else float(fmr[j]))
        for j, i in enumerate(order.tolist())
    )
    return SubjectResult(cands, target_fmr)
