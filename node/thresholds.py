"""Decision thresholds by false match rate, for every search the node makes (local officers'
searches and peers' queries alike), from the measured tables.

* Fingerprint: the matcher's table (:data:`matcher.fingerprint.match.thresholds.TABLE`):
  counted on the FVC2002 DB1–4 cross-finger impostor scores down to 3e-4, and below that to
  3e-6 an upper bound of a fitted tail (see that module). A target stricter than the table's
  strictest row takes that row: the node claims no FMR beyond its table, and the decision
  reports the FMR of the row actually used.
* Face: cosine similarity of the dlib ResNet embeddings, from the face evaluation on LFW
  deep-funneled A–M (1,165 people, 6,552 images, all 21 million impostor pairs; ``bdx eval
  face``, flip-averaged embeddings of 68-point aligned chips, format
  ``dlib-resnet-v1-flip-lm68``), each row the counted threshold rounded up: FAR 1e-2 at 0.9100
  (counted 0.90994), 3e-3 at 0.9202 (0.92014), 1e-3 at 0.9281 (0.92808), 3e-4 at 0.9360
  (0.93595), 1e-4 at 0.9428 (0.94274), 3e-5 at 0.9502 (0.95017), 1e-5 at 0.9583 (0.95822),
  3e-6 at 0.9672 (0.96718), 1e-6 at 0.9720 (0.97198; 21 impostor pairs lie above it, all
  one mislabelled image, Joe_Lieberman_0004, against Colin Powell's: kept, which only makes
  the row stricter).
  ``benchmarks/README.md``, "Impostor tail and FPIR". Same rule below the table.

With several fingers in one probe, each finger is held to ``fmr / fingers`` (Bonferroni), so the
probe as a whole keeps the target.

A 1:N search compares a stranger's probe with every record of the gallery, so its chance of a
false hit, the false-positive identification rate (ISO/IEC 19795-1), grows with the gallery:
``FPIR = 1 - (1 - FMR)^comparisons``. Searches therefore hold each subject to the stricter of
the FMR target and :func:`fmr_for_fpir` of the FPIR target over the gallery's records, each of
a probe's fingers to that over the fingers (:func:`fingerprint_search_threshold`,
:func:`face_search_threshold`), and report :func:`expected_fpir` at the threshold they used
over every comparison made (higher than the target only where the target lies beyond the
tables).
"""

from __future__ import annotations

import math

import numpy as np

from matcher.fingerprint.match.thresholds import TABLE, threshold_for_fmr

#: (FMR, cosine threshold) rows, loosest first.
FACE_THRESHOLDS: tuple[tuple[float, float], ...] = (
    (1e-2, 0.9100),
    (3e-3, 0.9202),
    (1e-3, 0.9281),
    (3e-4, 0.9360),
    (1e-4, 0.9428),
    (3e-5, 0.9502),
    (1e-5, 0.9583),
    (3e-6, 0.9672),
    (1e-6, 0.9720),
)


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


def fmr_for_fpir(fpir: float, comparisons: int) -> float:
    """The per-comparison FMR at which ``comparisons`` impostor comparisons give a stranger's
    search the false-positive identification rate ``fpir``: 1 - (1 - fpir)^(1 / comparisons)
    (independent comparisons; ``fpir`` itself for one comparison or none)."""
    if comparisons <= 1:
        return fpir
    return min(fpir, -math.expm1(math.log1p(-fpir) / comparisons))


def expected_fpir(fmr: float, comparisons: int) -> float:
    """FPIR of a search making ``comparisons`` impostor comparisons, each at ``fmr``."""
    return -math.expm1(max(0, comparisons) * math.log1p(-min(fmr, 1.0 - 1e-16)))


def search_fmr(fmr: float, fpir: float, comparisons: int) -> float:
    """Per-comparison FMR target of a 1:N search: the stricter of ``fmr`` and the FMR that
    holds ``comparisons`` comparisons to ``fpir`` (:func:`fmr_for_fpir`)."""
    return min(fmr, fmr_for_fpir(fpir, comparisons))


def fingerprint_search_threshold(
    fmr: float, fpir: float, fingers: int, records: int
) -> tuple[float, float, float]:
    """``(score threshold, its FMR per finger, estimated FPIR)`` of a search of ``fingers``
    fingers against ``records`` records. A subject is held to :func:`search_fmr` over the
    records (a subject's FMR is its best finger's times the fingers), each finger to that over
    the fingers (Bonferroni), so the fused decision of a fingers-only search agrees; the FPIR is
    estimated over every finger comparison, at the FMR the table gave."""
    threshold, used = fingerprint_threshold(search_fmr(fmr, fpir, records) / max(1, fingers))
    return threshold, used, expected_fpir(used, fingers * records)


def face_search_threshold(fmr: float, fpir: float, records: int) -> tuple[float, float, float]:
    """``(cosine threshold, its FMR, estimated FPIR)`` of a face search of ``records``."""
    threshold, used = face_threshold(search_fmr(fmr, fpir, records))
    return threshold, used, expected_fpir(used, records)
