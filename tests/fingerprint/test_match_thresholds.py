"""Operating thresholds chosen by false match rate."""

from __future__ import annotations

import pytest

from matcher.fingerprint.match import threshold_for_fmr
from matcher.fingerprint.match.thresholds import MEASURED_WITH, TABLE, ThresholdError
from matcher.fingerprint.match.types import FORMAT, VERSION


def test_table_rows_are_reproduced_and_monotone() -> None:
    for fmr, threshold in TABLE:
        assert threshold_for_fmr(fmr) == pytest.approx(threshold)
    got = [threshold_for_fmr(f) for f in (0.1, 0.05, 0.01, 0.002, 0.001, 0.0003, 2e-5, 3e-6)]
    assert got == sorted(got)
    assert all(0.0 < t < 1.0 for _, t in TABLE)


def test_table_belongs_to_this_matcher_version() -> None:
    assert MEASURED_WITH == (FORMAT, VERSION)


def test_table_reaches_the_fmrs_of_large_galleries() -> None:
    """A search of 3,000 records at FPIR 1 % needs about 3e-6 per comparison."""
    assert min(f for f, _ in TABLE) == 3e-6
    assert threshold_for_fmr(3e-6) > threshold_for_fmr(3e-4)


@pytest.mark.parametrize("fmr", [0.5, 2.9e-6, 0.0, -0.1, float("nan")])
def test_unsupported_fmr_is_refused(fmr: float) -> None:
    with pytest.raises(ThresholdError):
        threshold_for_fmr(fmr)


def test_non_numbers_are_refused() -> None:
    with pytest.raises(ThresholdError) as err:
        threshold_for_fmr("0.01")  # type: ignore[arg-type]
    assert err.value.reason == "bad_fmr"
