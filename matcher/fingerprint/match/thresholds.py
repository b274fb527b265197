"""Operating thresholds: pick a score threshold by the false match rate it gives.

The table below was measured by ``benchmarks/fingerprint_eval.py --thresholds`` and
``benchmarks/impostor_tail.py`` (see ``benchmarks/README.md``, "Fingerprint matching" and
"Impostor tail and FPIR"): the cross-finger impostor scores of the FVC2002 DB1–DB4 B sets
(4 x 2,880 = 11,520 comparisons of different fingers, with this extractor and this matcher
version, re-measured 2026-12-05 with the orientation-field term fused into the score
(``params.FIELD_*``; the templates carry their fields), besides the alignment check
(``params.ALIGN_*``, one-to-one), and the extractor's BORDER_MARGIN = 6,
BREAK_MAX_DISTANCE = 14), pooled.

* Rows from 0.1 to 3e-4 are measured: each is the smallest threshold whose FMR on those scores
  does not exceed the row's FMR (at 3e-4, 3 scores lie above it).
* Rows from 1e-4 to 3e-6 lie beyond what 11,520 scores can count, and a 1:N search needs them
  (a search of N records holds each comparison to about FPIR / N). They are extrapolated from
  the tail: a generalised Pareto distribution fitted (maximum likelihood) to the top 2 % of
  the same scores (peaks over threshold, Pickands 1975; Davison and Smith 1990), and each row
  is the 99th percentile of the fitted threshold over 200 bootstrap resamples of the fingers
  (each set's fingers drawn with replacement: the images of a finger, and the pairs an image
  is in, are not independent), an upper bound, so that the row errs strict. The level was
  chosen by a check where the truth can be counted (``benchmarks/impostor_tail.py``): fitted
  the same way to 40 draws shaped like FVC (4 sets of 10 synthetic fingers with 8 impressions
  each), the 99th-percentile bound lay at or above the threshold counted on 1,999,000 synthetic
  impostor pairs in 92-95 % of draws at 1e-4 to 3e-6 (the 95th percentile's: 80-90 %; the
  point fit, unbiased, about half). 1e-6 is left out: no check could count it. The bound is
  wide, up to 5 times the point fit at 3e-6, because 40 real fingers say little about a tail
  (the fitted shape's bootstrap 90 % range is -0.2 to 0.3); more real impostor data is what
  would narrow it.
* Stricter FMRs are refused rather than extrapolated further.

The table belongs to the matcher :data:`~matcher.fingerprint.match.types.VERSION` it was
measured with: any change of descriptors or scoring must re-run both benchmarks and replace it.
Templates without an orientation field (ISO records from other sources, galleries upgraded from
before the field) score without the term, i.e. at most (1 + ALIGN_WEIGHT) / (1 + ALIGN_WEIGHT +
FIELD_WEIGHT) of the score the minutiae alone gave before: their FMR at these thresholds is
lower than the table's (conservative), their FNMR higher.
"""

from __future__ import annotations

import numpy as np

from matcher.errors import MatcherError
from matcher.fingerprint.match.types import FORMAT, VERSION

#: (FMR, threshold) rows, FMR falling. Measured with FORMAT/VERSION below.
MEASURED_WITH = (FORMAT, VERSION)
TABLE: tuple[tuple[float, float], ...] = (
    (0.1, 0.006487),
    (0.03, 0.009344),
    (0.01, 0.011637),
    (0.003, 0.014244),
    (0.001, 0.016789),
    (0.0003, 0.020505),
    # Extrapolated: 99th-percentile bootstrap bound of a generalised Pareto tail fit (docstring).
    (0.0001, 0.045423),
    (3e-05, 0.075469),
    (1e-05, 0.118645),
    (3e-06, 0.197153),
)


class ThresholdError(MatcherError):
    """The requested FMR lies outside the table (counted and tail-bound rows)."""

    default_reason = "fmr_out_of_range"


def threshold_for_fmr(fmr: float) -> float:
    """Score threshold (match when ``score >= threshold``) for a target false match rate.

    Between table rows the threshold is interpolated linearly in log(FMR) (conservative
    enough at these spacings: FMR falls monotonically with the threshold). Raises
    :class:`ThresholdError` for an FMR outside ``[TABLE[-1][0], TABLE[0][0]]``.
    """
    fmrs = np.array([f for f, _ in TABLE])
    thresholds = np.array([t for _, t in TABLE])
    if not (isinstance(fmr, float | int) and np.isfinite(fmr)):
        raise ThresholdError(f"FMR must be a number, got {fmr!r}", reason="bad_fmr")
    if not fmrs[-1] <= fmr <= fmrs[0]:
        raise ThresholdError(f"FMR {fmr:g} outside the measured range [{fmrs[-1]:g}, {fmrs[0]:g}]")
    # np.interp needs rising x: use -log(FMR).
    return float(np.interp(-np.log(fmr), -np.log(fmrs), thresholds))
