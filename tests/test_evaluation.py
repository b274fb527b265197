import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from matcher import evaluation as ev


def test_perfect_separation_has_zero_eer() -> None:
    assert ev.eer([0.9, 0.8, 0.95], [0.1, 0.2, 0.3]) == 0.0
    assert ev.fnmr_at_fmr([0.9, 0.8], [0.1, 0.2], 0.0) == 0.0


def test_total_overlap() -> None:
    g = [0.1, 0.2, 0.3, 0.4]
    i = [0.5, 0.6, 0.7, 0.8]
    assert ev.eer(g, i) >= 0.5
    assert ev.fnmr_at_fmr(g, i, 0.0) == 1.0


def test_known_eer() -> None:
    # one impostor above one genuine out of four each: EER 25 %.
    g = [0.5, 0.7, 0.8, 0.9]
    i = [0.1, 0.2, 0.3, 0.6]
    assert ev.eer(g, i) == pytest.approx(0.25)


def test_threshold_at_fmr_bounds_the_rate() -> None:
    rng = np.random.default_rng(1)
    imp = rng.normal(size=1000)
    for target in (0.0, 0.001, 0.01, 0.1, 0.5):
        t = ev.threshold_at_fmr(imp, target)
        assert np.mean(imp >= t) <= target


@given(
    st.lists(st.floats(-10, 10), min_size=1, max_size=40),
    st.lists(st.floats(-10, 10), min_size=1, max_size=40),
)
def test_rates_are_probabilities(g: list[float], i: list[float]) -> None:
    r = ev.error_rates(g, i)
    assert np.all((r.fmr >= 0) & (r.fmr <= 1) & (r.fnmr >= 0) & (r.fnmr <= 1))
    assert np.all(np.diff(r.fmr) <= 0) and np.all(np.diff(r.fnmr) >= 0)
    assert 0.0 <= ev.eer(g, i) <= 1.0


def test_rank1() -> None:
    scores = np.array([[0.9, 0.1, 0.2], [0.3, 0.2, 0.8]])
    assert ev.rank1(scores, [0, 1], [0, 1, 2]) == 0.5
    with pytest.raises(ValueError):
        ev.rank1(scores, [0], [0, 1, 2])


def test_empty_scores_rejected() -> None:
    with pytest.raises(ValueError):
        ev.eer([], [0.1])
