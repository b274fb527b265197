"""Decision thresholds by false match rate, for every search the node makes (local officers'
searches and peers' queries alike), from measured tables only.

* Fingerprint: the matcher's table (:data:`matcher.fingerprint.match.thresholds.TABLE`, measured
  on the FVC2002 DB1–4 cross-finger impostor scores). A target stricter than the table's
  strictest row takes that row: the node never claims an FMR it has not measured, and the
  decision reports the FMR of the row actually used.
* Face: cosine similarity of the dlib ResNet embeddings, from the face evaluation on LFW
  deep-funneled A–M (1,165 people, 6,552 images, all 21 million impostor pairs; ``bdx eval
  face``, flip-averaged embeddings of 68-point aligned chips, format
  ``dlib-resnet-v1-flip-lm68``): FAR 1 % at 0.910 (measured 0.90994), FAR 0.1 % at 0.928
  (0.92808), the same rows as with 5-point chips. Same rule below the table.

With several fingers in one probe, each finger is held to ``fmr / fingers`` (Bonferroni), so the
probe as a whole keeps the target.
"""

from __future__ import annotations

import numpy as np

from matcher.fingerprint.match.thresholds import TABLE, threshold_for_fmr

#: (FMR, cosine threshold) rows, loosest first.
FACE_THRESHOLDS: tuple[tuple[float, float], ...] = ((1e-2, 0.910), (1e-3, 0.928))


def _row(table: tuple[tuple[float, float], ...], target_fmr: float) -> tuple[float, float]:
    """The loosest row whose FMR is at most ``target_fmr``; the strictest row below the table."""
    fitting = [row for row in table if row[0] <= target_fmr]
    return max(fitting) if fitting else min(table)


def face_threshold(target_fmr: float) -> tuple[float, float]:
    """``(cosine threshold, measured FMR of that row)`` for ``target_fmr``."""
    fmr, threshold = _row(FACE_THRESHOLDS, target_fmr)
    return threshold, fmr


def face_fmr(score: float) -> float:
    """Estimated FMR of a face score: the strictest measured row it reaches (1.0 below all)."""
    reached = [fmr for fmr, threshold in FACE_THRESHOLDS if score >= threshold]
    return min(reached) if reached else 1.0


def fingerprint_threshold(target_fmr: float) -> tuple[float, float]:
    """``(score threshold, measured FMR)`` of the matcher for ``target_fmr`` (clamped to the
    measured table)."""
    fmrs = [f for f, _ in TABLE]
    fmr = float(min(max(target_fmr, min(fmrs)), max(fmrs)))
    return threshold_for_fmr(fmr), fmr


def fingerprint_fmr(score: float) -> float:
    """Estimated FMR of one finger's score, interpolated in log(FMR) in the measured table;
    above its strictest threshold the table's smallest FMR (no extrapolation)."""
    rows = sorted(TABLE, key=lambda r: r[1])
    thresholds = np.array([t for _, t in rows])
    log_fmrs = np.log([f for f, _ in rows])
    if score < thresholds[0]:
        return 1.0
    return float(np.exp(np.interp(score, thresholds, log_fmrs)))
