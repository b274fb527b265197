from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matcher.errors import MatcherError
from matcher.evaluation import fnmr_at_fmr
from matcher.gallery import Gallery
from matcher.search.fingerprint import fingerprint_records, fingerprint_schema
from matcher.search.fusion import empirical_z, fuse, fused_fmr, search_subjects
from matcher.synthetic.templates import synthetic_templates

scores_st = st.lists(st.floats(0, 1, width=32), min_size=2, max_size=30)


@settings(max_examples=40, deadline=None)
@given(a=scores_st, b=scores_st, rule=st.sampled_from(["fmr", "sum", "max"]), data=st.data())
def test_raising_one_score_never_lowers_its_subject(
    a: list[float], b: list[float], rule: str, data: st.DataObject
) -> None:
    n = min(len(a), len(b))
    scores = np.array([a[:n], b[:n]], dtype=np.float32)
    codes = np.arange(n) // 2
    i = data.draw(st.integers(0, n - 1))
    f = data.draw(st.integers(0, 1))
    before = fuse(scores, codes, codes.max() + 1, rule)
    raised = scores.copy()
    raised[f, i] = np.float32(1.0)
    after = fuse(raised, codes, codes.max() + 1, rule)
    assert after[codes[i]] >= before[codes[i]]
    one = fuse(scores[:1], codes, codes.max() + 1, rule)
    assert np.all(before >= one)  # a second finger never lowers a subject's score


def test_empirical_z_and_fused_fmr() -> None:
    s = np.array([0.1, 0.5, -np.inf, 0.3, 0.5], dtype=np.float32)
    z = empirical_z(s)
    np.testing.assert_allclose(z, np.log10(5 / np.array([4, 1, 5, 3, 1])) * (s > -1))
    assert z[2] == 0
    np.testing.assert_allclose(fused_fmr(np.array([0.0, 2.0]), 1), [1.0, 0.01])
    x = 3.0 * np.log(10)  # chi2(4) survival at 2x is e^-x (1 + x)
    np.testing.assert_allclose(fused_fmr(3.0, 2), np.exp(-x) * (1 + x))
    with pytest.raises(MatcherError):
        fuse(s[None], np.zeros(5, np.int64), 1, "median")


def test_zero_scores_carry_no_evidence(tmp_path: Path) -> None:
    """A probe that corresponds to nothing (every score 0, all tied) is no hit at any target,
    not the gallery's top rank shared by every record."""
    z = empirical_z(np.zeros(300, np.float32))
    assert not z.any()
    assert not fuse(np.zeros((2, 300), np.float32), np.arange(300), 300, "fmr").any()
    fingers = synthetic_templates(40, 1, seed=4)
    with Gallery.create(tmp_path, fingerprint_schema()) as g:
        refs = [f"f{i}" for i in range(40)]
        g.append(fingerprint_records(refs, refs, [f[0] for f in fingers], [1] * 40))
        empty = _at(_isolated(fingers[0][0]), 1)
        res = search_subjects(g, [empty, empty], k=3, target_fmr=0.5)
        assert res.candidates == () and res.hit is False


def test_two_fingers_lower_fnmr_at_fixed_fmr() -> None:
    """Score-level synthetic data: per-finger genuine and impostor scores overlap (single-finger
    FNMR at FMR 1% is large); fusing two fingers cuts it by a wide margin."""
    rng = np.random.default_rng(0)
    subjects, probes = 1000, 300
    codes = np.repeat(np.arange(subjects), 1)
    genuine_fused, impostor_fused = {1: [], 2: []}, {1: [], 2: []}
    for p in range(probes):
        scores = rng.exponential(0.05, size=(2, subjects)).astype(np.float32)  # impostors
        scores[:, p] = rng.normal(0.2, 0.08, size=2).clip(0, 1)  # mate (subject p)
        for f in (1, 2):
            fused = fuse(scores[:f], codes, subjects, "fmr")
            genuine_fused[f].append(fused[p])
            impostor_fused[f].extend(np.delete(fused, p)[:50])
    one = fnmr_at_fmr(genuine_fused[1], impostor_fused[1], 0.01)
    two = fnmr_at_fmr(genuine_fused[2], impostor_fused[2], 0.01)
    assert one > 0.15 and two < one / 2, (one, two)


def test_search_subjects_on_synthetic_fingers(tmp_path: Path) -> None:
    fingers = synthetic_templates(24, 2, seed=3)  # subject i owns fingers 2i (pos 1), 2i+1 (2)
    with Gallery.create(tmp_path, fingerprint_schema()) as g:
        refs = [f"f{i}" for i in range(24)]
        subs = [f"s{i // 2}" for i in range(24)]
        g.append(
            fingerprint_records(refs, subs, [f[0] for f in fingers], [1 + i % 2 for i in range(24)])
        )
        probe = [_at(fingers[10][1], 1), _at(fingers[11][1], 2)]
        # 12 records per position: the empirical FMR of one finger cannot go below 1/13, so
        # the best a two-finger subject can get is the Fisher FMR of z = 2 log10(13).
        res = search_subjects(g, probe, k=3, target_fmr=0.05)
        assert res.candidates[0].subject == "s5" and res.hit is True
        assert res.candidates[0].fmr == pytest.approx(float(fused_fmr(2 * np.log10(13), 2)))
        assert search_subjects(g, probe, k=3, target_fmr=0.01).hit is False
        raw = search_subjects(g, probe, k=3, rule="sum")
        assert raw.candidates[0].subject == "s5" and raw.hit is None
        with pytest.raises(MatcherError):
            search_subjects(g, [], k=3)
        with pytest.raises(MatcherError):
            search_subjects(g, probe, rule="sum", target_fmr=0.01)
        with pytest.raises(MatcherError):
            search_subjects(g, probe, rule="nope")


def _at(t, position: int):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    return replace(t, finger_position=position)


def _isolated(t):  # type: ignore[no-untyped-def]
    """A valid probe whose minutiae lie too far apart to have neighbours: every cylinder is
    invalid, so it scores 0 against everything (six of them, the fewest a search takes)."""
    from dataclasses import replace

    n = 6
    step = (min(t.width, t.height) - 1) / 2
    x = np.array([0, step, 2 * step, 0, step, 2 * step], np.float32)
    y = np.array([0, 0, 0, 2 * step, 2 * step, 2 * step], np.float32)
    return replace(t, x=x, y=y, angle=t.angle[:n], kind=t.kind[:n], quality=t.quality[:n])
