"""Accuracy figures in ISO/IEC 19795-1 terms, computed from comparison scores.

Scores are similarities: higher means more alike, and a comparison is a *match* when its score
is ``>= threshold``. Shapes: ``genuine`` (ng,), ``impostor`` (ni,), both float arrays.

* FMR(t): fraction of impostor scores ``>= t`` (false match rate).
* FNMR(t): fraction of genuine scores ``< t`` (false non-match rate).
* EER: the rate where the two curves cross. As in the FVC reports, it is the mean of FMR and
  FNMR at the threshold where they are closest (computed over every distinct score).
* FNMR at FMR = x: the lowest FNMR over thresholds whose FMR does not exceed ``x``.
* Rank-1 identification rate: fraction of probes whose best-scoring gallery entry has the
  probe's identity (closed set).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.floating]


@dataclass(frozen=True)
class ErrorRates:
    """FMR and FNMR at each candidate threshold (all arrays of shape (nt,), thresholds rising)."""

    thresholds: npt.NDArray[np.float64]
    fmr: npt.NDArray[np.float64]
    fnmr: npt.NDArray[np.float64]


def _check(genuine: FloatArray, impostor: FloatArray) -> tuple[np.ndarray, np.ndarray]:
    g = np.asarray(genuine, dtype=np.float64).ravel()
    i = np.asarray(impostor, dtype=np.float64).ravel()
    if g.size == 0 or i.size == 0:
        raise ValueError("need at least one genuine and one impostor score")
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(i))):
        raise ValueError("scores must be finite")
    return g, i


def error_rates(genuine: FloatArray, impostor: FloatArray) -> ErrorRates:
    """FMR/FNMR at every distinct score used as threshold, plus one above the maximum."""
    g, i = _check(genuine, impostor)
    thresholds = np.unique(np.concatenate([g, i]))
    thresholds = np.append(thresholds, np.nextafter(thresholds[-1], np.inf))
    g_sorted = np.sort(g)
    i_sorted = np.sort(i)
    fnmr = np.searchsorted(g_sorted, thresholds, side="left") / g.size
    fmr = 1.0 - np.searchsorted(i_sorted, thresholds, side="left") / i.size
    return ErrorRates(thresholds=thresholds, fmr=fmr, fnmr=fnmr)


def eer(genuine: FloatArray, impostor: FloatArray) -> float:
    """Equal error rate in [0, 1]."""
    r = error_rates(genuine, impostor)
    k = int(np.argmin(np.abs(r.fmr - r.fnmr)))
    return float((r.fmr[k] + r.fnmr[k]) / 2.0)


def fnmr_at_fmr(genuine: FloatArray, impostor: FloatArray, target_fmr: float) -> float:
    """Lowest FNMR over thresholds whose FMR is at most ``target_fmr``."""
    r = error_rates(genuine, impostor)
    ok = r.fmr <= target_fmr
    return float(r.fnmr[ok].min())


def threshold_at_fmr(impostor: FloatArray, target_fmr: float) -> float:
    """Smallest threshold whose FMR on ``impostor`` does not exceed ``target_fmr``."""
    i = np.sort(np.asarray(impostor, dtype=np.float64).ravel())
    if i.size == 0:
        raise ValueError("need impostor scores")
    if not 0.0 <= target_fmr <= 1.0:
        raise ValueError("target FMR must lie in [0, 1]")
    allowed = int(np.floor(target_fmr * i.size + 1e-9))  # impostors allowed at or above t
    if allowed >= i.size:
        return float(i[0])
    return float(np.nextafter(i[i.size - 1 - allowed], np.inf))


def rank1(scores: FloatArray, probe_ids: npt.ArrayLike, gallery_ids: npt.ArrayLike) -> float:
    """Closed-set rank-1 identification rate.

    ``scores`` has shape (nq, nb): probe q against gallery entry b. ``probe_ids`` (nq,) and
    ``gallery_ids`` (nb,) are identity labels. Ties count against the probe unless every
    tied entry has the probe's identity.
    """
    s = np.asarray(scores, dtype=np.float64)
    p = np.asarray(probe_ids)
    g = np.asarray(gallery_ids)
    if s.ndim != 2 or s.shape != (p.size, g.size):
        raise ValueError(f"scores shape {s.shape} does not match ({p.size}, {g.size})")
    best = s.max(axis=1, keepdims=True)
    tied = s == best
    correct = g[None, :] == p[:, None]
    ok = np.all(~tied | correct, axis=1)
    return float(ok.mean())
