"""Operating thresholds: pick a score threshold by the false match rate it gives.

The table below was measured by ``benchmarks/fingerprint_eval.py --thresholds`` (see
``benchmarks/README.md``, "Fingerprint matching"): the cross-finger impostor scores of the
FVC2002 DB1–DB4 B sets (4 x 2,880 = 11,520 comparisons of different fingers, with this
extractor and this matcher version, re-measured 2026-12-05 with the orientation-field term
fused into the score (``params.FIELD_*``; the templates carry their fields), besides the
alignment check (``params.ALIGN_*``, one-to-one), and the extractor's BORDER_MARGIN = 6,
BREAK_MAX_DISTANCE = 14), pooled; each row is the smallest
threshold whose FMR on those scores does not exceed the row's FMR. 11,520 impostor scores
support FMRs down to about 3e-4 (3 scores above the threshold); lower FMRs are refused rather
than extrapolated. The table belongs to the matcher
:data:`~matcher.fingerprint.match.types.VERSION` it was measured with: any change of
descriptors or scoring must re-run the benchmark and replace it. Templates without an
orientation field (ISO records from other sources, galleries upgraded from before the field)
score without the term, i.e. at most (1 + ALIGN_WEIGHT) / (1 + ALIGN_WEIGHT + FIELD_WEIGHT)
of the score the minutiae alone gave before: their FMR at these thresholds is lower than the
table's (conservative), their FNMR higher.
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
)


class ThresholdError(MatcherError):
    """The requested FMR lies outside what the measured table supports."""

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
