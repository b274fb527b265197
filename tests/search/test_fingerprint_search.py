from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matcher.errors import TemplateFormatError
from matcher.fingerprint import match
from matcher.fingerprint.template import FingerprintTemplate
from matcher.gallery import Gallery
from matcher.search.fingerprint import (
    fingerprint_records,
    fingerprint_schema,
    fingerprint_scores,
    search_fingerprint,
)
from matcher.synthetic.templates import synthetic_templates
from tests.fingerprint.support import cut_to

W, H = 300, 400


def _template(seed: int, n: int, position: int = 0) -> FingerprintTemplate:
    rng = np.random.default_rng(seed)
    return FingerprintTemplate(
        x=rng.uniform(0, W - 1, n),
        y=rng.uniform(0, H - 1, n),
        angle=rng.uniform(0, 2 * np.pi - 1e-3, n),
        kind=rng.integers(1, 3, n),
        quality=rng.integers(0, 101, n),
        width=W,
        height=H,
        finger_position=position,
    )


def _perturbed(t: FingerprintTemplate, seed: int) -> FingerprintTemplate:
    rng = np.random.default_rng(seed)
    n = t.count
    return FingerprintTemplate(
        x=np.clip(t.x + rng.normal(0, 2, n), 0, W - 1),
        y=np.clip(t.y + rng.normal(0, 2, n), 0, H - 1),
        angle=np.mod(t.angle + rng.normal(0, 0.05, n), 2 * np.pi - 1e-3),
        kind=t.kind,
        quality=t.quality,
        width=W,
        height=H,
        finger_position=t.finger_position,
    )


@settings(max_examples=12, deadline=None)
@given(
    counts=st.lists(st.integers(0, 60), min_size=1, max_size=7),
    probe_count=st.integers(0, 60),
    block_rows=st.integers(1, 5),
    threads=st.integers(1, 2),
    seed=st.integers(0, 2**16),
)
def test_one_to_many_equals_one_to_one(
    counts: list[int], probe_count: int, block_rows: int, threads: int, seed: int
) -> None:
    # Prepared here: the search refuses templates with fewer than MIN_TEMPLATE_MINUTIAE
    # distinct minutiae, and the kernel's edge cases (0, 1, 2 minutiae) are what this checks.
    gallery_t = [_template(seed + i, n) for i, n in enumerate(counts)]
    gallery_p = [match.prepare(t) for t in gallery_t]
    probe = _template(seed + 100, probe_count)
    probe_p = match.prepare(probe)
    with tempfile.TemporaryDirectory() as d, Gallery.create(d, fingerprint_schema()) as g:
        half = len(gallery_t) // 2  # two appends: ragged row lengths across segments
        for lo, hi in ((0, half), (half, len(gallery_t))):
            if hi > lo:
                refs = [f"r{i}" for i in range(lo, hi)]
                g.append(fingerprint_records(refs, refs, gallery_p[lo:hi]))
        scores = fingerprint_scores(g, probe_p, threads=threads, block_rows=block_rows)
        ids = g.locate([f"r{i}" for i in range(len(gallery_t))])
        want = np.array([match.score(probe, t) for t in gallery_t], dtype=np.float32)
        np.testing.assert_array_equal(scores[ids], want)
        res = search_fingerprint(g, probe_p, k=3, threads=threads, block_rows=block_rows)
        got = [(c.reference, c.score) for c in res.candidates]
        order = np.lexsort((np.arange(len(want)), -want))[:3]
        assert [r for r, _ in got] == [f"r{i}" for i in order]
        assert [s for _, s in got] == [float(want[i]) for i in order]


@pytest.fixture(scope="module")
def synth() -> list[list[FingerprintTemplate]]:
    return synthetic_templates(40, 2, seed=7)


def test_mate_is_rank_one_and_threshold_decides(tmp_path: Path, synth: list) -> None:
    with Gallery.create(tmp_path, fingerprint_schema()) as g:
        refs = [f"f{i}" for i in range(len(synth))]
        g.append(
            fingerprint_records(refs, [f"s{i}" for i in range(len(synth))], [t[0] for t in synth])
        )
        hits = 0
        for i in range(0, 40, 8):
            res = search_fingerprint(g, synth[i][1], k=5, threshold=0.1, block_rows=7)
            hits += res.candidates[0].reference == f"f{i}"
            assert len(res.candidates) == 5
        assert hits >= 4
        g.delete(["f0"])
        res = search_fingerprint(g, synth[0][1], k=100)
        assert "f0" not in [c.reference for c in res.candidates] and len(res.candidates) == 39


def test_finger_position_filter(tmp_path: Path) -> None:
    base = [_template(i, 30, position=(i % 3) + 1) for i in range(6)]
    with Gallery.create(tmp_path, fingerprint_schema()) as g:
        g.append(fingerprint_records([f"r{i}" for i in range(6)], ["s"] * 6, base))
        probe = _perturbed(base[4], 1)  # position 2
        res = search_fingerprint(g, probe, k=10)
        assert {c.position for c in res.candidates} == {2}
        assert res.candidates[0].reference == "r4"
        assert len(search_fingerprint(g, probe, k=10, position=0).candidates) == 6
        with pytest.raises(TemplateFormatError):
            search_fingerprint(g, probe, position=11)


def test_empty_gallery_and_wrong_format(tmp_path: Path) -> None:
    with Gallery.create(tmp_path, fingerprint_schema()) as g:
        res = search_fingerprint(g, _template(1, 20), threshold=0.2)
        assert res.candidates == () and res.hit is False
        assert fingerprint_scores(g, _template(1, 20)).shape == (0,)
        g.append(fingerprint_records([], [], []))
        other = FingerprintTemplate(
            x=[1.0],
            y=[1.0],
            angle=[0.0],
            kind=[1],
            quality=[50],
            width=W,
            height=H,
            format="other",
            format_version=1,
        )
        with pytest.raises(TemplateFormatError) as err:
            search_fingerprint(g, other)
        assert err.value.reason == "incompatible_format"
        with pytest.raises(TemplateFormatError):
            fingerprint_records(["x"], ["s"], [other])


def test_two_stage(tmp_path: Path, synth: list) -> None:
    with Gallery.create(tmp_path, fingerprint_schema()) as g:
        refs = [f"f{i}" for i in range(len(synth))]
        g.append(fingerprint_records(refs[:25], refs[:25], [t[0] for t in synth[:25]]))
        g.append(fingerprint_records(refs[25:], refs[25:], [t[0] for t in synth[25:]]))
        g.delete(["f3"])
        probe = synth[30][1]
        full = search_fingerprint(g, probe, k=5, block_rows=4)
        same = search_fingerprint(g, probe, k=5, block_rows=4, penetration=1.0, threads=2)
        assert same.candidates == full.candidates
        narrow = search_fingerprint(g, probe, k=5, penetration=0.01)
        assert len(narrow.candidates) == 5  # at least k are scored exactly
        assert narrow.candidates[0].reference == "f30"
        for scored in narrow.candidates:
            assert scored.score == pytest.approx(
                match.score(probe, synth[int(scored.reference[1:])][0])
            )
        for bad in (0.0, 1.5):
            with pytest.raises(TemplateFormatError) as err:
                search_fingerprint(g, probe, penetration=bad)
            assert err.value.reason == "bad_penetration"
    with Gallery.create(tmp_path / "empty", fingerprint_schema()) as e:
        assert search_fingerprint(e, probe, penetration=0.5).candidates == ()


def test_decision_at_target_fmr(tmp_path: Path, synth: list) -> None:
    from matcher.errors import MatcherError

    with Gallery.create(tmp_path, fingerprint_schema()) as g:
        refs = [f"f{i}" for i in range(10)]
        g.append(fingerprint_records(refs, refs, [t[0] for t in synth[:10]]))
        res = search_fingerprint(g, synth[4][1], k=3, fmr=0.001)
        assert res.threshold == match.threshold_for_fmr(0.001)
        assert res.hit is (res.candidates[0].score >= res.threshold)
        with pytest.raises(MatcherError) as both:
            search_fingerprint(g, synth[4][1], fmr=0.001, threshold=0.2)
        assert both.value.reason == "bad_threshold"
        with pytest.raises(MatcherError) as out_of_range:
            search_fingerprint(g, synth[4][1], fmr=1e-9)
        assert out_of_range.value.reason == "fmr_out_of_range"


def _with_field(t: FingerprintTemplate, seed: int, w: int, h: int) -> FingerprintTemplate:
    """``t`` cut to a ``w`` x ``h`` image, with a random orientation field (some background)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 180, (h // 16, w // 16))
    return cut_to(t, w, h, np.where(rng.random(codes.shape) < 0.2, 255, codes).astype(np.uint8))


def test_orientation_fields_travel_with_gallery_records(tmp_path: Path, synth: list) -> None:
    """Records with fields of different shapes (ragged across segments), and without one:
    exhaustive and two-stage search score exactly like 1:1."""
    first = [_with_field(f[0], i, 388, 374) for i, f in enumerate(synth[:20])]
    second = [_with_field(f[0], i, 300, 400) for i, f in enumerate(synth[20:35], 20)]
    bare = [f[0] for f in synth[35:]]
    templates = first + second + bare
    refs = [f"f{i}" for i in range(len(templates))]
    probes = [_with_field(synth[3][1], 99, 388, 374), synth[25][1]]
    with Gallery.create(tmp_path, fingerprint_schema()) as g:
        for lo, hi in ((0, 20), (20, 35), (35, len(templates))):
            g.append(fingerprint_records(refs[lo:hi], refs[lo:hi], templates[lo:hi]))
        shapes = {b.arrays["orientation"].shape[1:] for b in g.blocks(len(g))}
        assert shapes == {(23, 24), (25, 18), (1, 1)}
        ids = g.locate(refs)
        for probe in probes:
            want = np.array([match.score(probe, t) for t in templates], np.float32)
            np.testing.assert_array_equal(fingerprint_scores(g, probe, block_rows=7)[ids], want)
            got = search_fingerprint(g, probe, k=6, penetration=1.0, block_rows=7).candidates
            order = np.lexsort((np.arange(len(want)), -want))[:6]
            assert [c.reference for c in got] == [refs[i] for i in order]
            assert [c.score for c in got] == [float(want[i]) for i in order]


def test_too_few_distinct_minutiae_are_counted_among_those_kept() -> None:
    """128 minutiae of high quality on one point and 6 distinct ones of low quality: the
    search keeps the best 128 (all on one point), so the template can match nothing; it was
    accepted because the 6 it drops were counted."""
    from dataclasses import replace

    from matcher.errors import QualityError
    from matcher.fingerprint.match import params as match_params
    from matcher.search.fingerprint import prepare_checked

    t = _template(1, 6)
    n = match_params.MAX_MINUTIAE
    piled = replace(
        t,
        x=np.concatenate([np.full(n, 50, np.float32), t.x]),
        y=np.concatenate([np.full(n, 50, np.float32), t.y]),
        angle=np.concatenate([np.zeros(n, np.float32), t.angle]),
        kind=np.concatenate([np.ones(n, np.uint8), t.kind]),
        quality=np.concatenate([np.full(n, 90, np.uint8), np.full(6, 10, np.uint8)]),
    )
    with pytest.raises(QualityError) as err:
        prepare_checked(piled)
    assert err.value.reason == "too_few_minutiae"
    prepare_checked(t)  # the six distinct ones alone are enough
