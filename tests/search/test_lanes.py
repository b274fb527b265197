"""VNNI pre-selection (matcher.search.lanes): the float path's scores, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matcher.fingerprint.template import FingerprintTemplate
from matcher.gallery import Gallery
from matcher.search import fingerprint as fp_search
from matcher.search import lanes, params, preselect
from matcher.search.fingerprint import fingerprint_records, fingerprint_schema, search_fingerprint
from matcher.synthetic.templates import synthetic_templates

needs_vnni = pytest.mark.skipif(
    not lanes.available(), reason="this CPU lacks AVX-512 VNNI; search uses the float path"
)
R = lanes.ROW_VALUES
G = params.PRESELECT_GALLERY_ROWS


def test_lane_layout_puts_sixteen_templates_side_by_side() -> None:
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 256, (19, 3, R)).astype(np.uint8)
    grid = lanes.to_lanes(rows)
    assert grid.shape == (2, 3, lanes.WORDS, lanes.LANES) and grid.dtype == np.int32
    # Word k of row m of template 16t+l is grid[t, m, k, l]; templates past n are zero.
    as_bytes = grid.transpose(0, 3, 1, 2).reshape(32, 3, lanes.WORDS).copy().view(np.uint8)
    assert np.array_equal(as_bytes[:19], rows) and not as_bytes[19:].any()
    cols = rng.integers(0, 128, (R, 5)).astype(np.float32)
    words = lanes.probe_words(cols)
    assert words.shape == (lanes.NQ, lanes.WORDS)
    back = words.view(np.int8).reshape(lanes.NQ, R)
    assert np.array_equal(back[:5].T, cols) and not back[5:].any()


def test_shapes_the_kernel_is_not_built_for_are_refused() -> None:
    with pytest.raises(ValueError, match="stored rows"):
        lanes.to_lanes(np.zeros((2, 3, R + 4), np.uint8))
    with pytest.raises(ValueError, match="probe columns"):
        lanes.probe_words(np.zeros((R, lanes.NQ + 1), np.float32))
    with pytest.raises(ValueError, match="signed bytes"):  # 255 would wrap to -1
        lanes.probe_words(np.full((R, 3), preselect.QUANT, np.float32))
    with pytest.raises(ValueError, match="lane layout"):
        lanes.lane_scores(np.zeros((1, 2, lanes.WORDS, 8), np.int32), np.zeros((lanes.NQ, 16)))
    with pytest.raises(ValueError, match="probe words"):
        lanes.lane_scores(
            np.zeros((1, 2, lanes.WORDS, lanes.LANES), np.int32),
            np.zeros((lanes.NQ, lanes.WORDS), np.int64),
        )


@needs_vnni
@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    m=st.integers(1, G),
    mp=st.integers(0, lanes.NQ),
    empty=st.floats(0.0, 0.9),
    seed=st.integers(0, 2**16),
)
def test_lane_scores_equal_the_float_path(n: int, m: int, mp: int, empty: float, seed: int) -> None:
    """Any group count, stored rows (some all zero, as padding), and probes of 0..NQ columns
    (fewer than the pairs summed included), values up to the quantisation limits."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, preselect.QUANT + 1, (n, m, R)).astype(np.uint8)
    rows[rng.random((n, m)) < empty] = 0
    cols = rng.integers(0, preselect.PROBE_QUANT + 1, (R, mp)).astype(np.float32)
    got = lanes.lane_scores(lanes.to_lanes(rows), lanes.probe_words(cols))
    want = preselect.FULL.scores(rows, cols)
    assert np.array_equal(got[:n].astype(np.float32) * preselect.SCALE, want)
    assert not got[n:].any()  # the padding templates score 0


@pytest.fixture(scope="module")
def fingers() -> list[list[FingerprintTemplate]]:
    return synthetic_templates(70, 2, seed=5)


@needs_vnni
@pytest.mark.parametrize("block_rows", [params.FINGERPRINT_BLOCK_ROWS, 32, 20])
def test_search_finds_the_same_with_and_without_lanes(
    tmp_path: Path, fingers: list, block_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three segments (45, 1 and 24 records: groups cut short), deletions, finger positions
    (a known-position probe wants a third of some blocks: float path there), blocks that do
    not start at a group boundary (20 rows): every candidate and score as on the float path."""
    refs = [f"f{i:02d}" for i in range(len(fingers))]
    positions = [1 + i % 3 for i in range(len(fingers))]
    with Gallery.create(tmp_path, fingerprint_schema()) as g:
        for lo, hi in ((0, 45), (45, 46), (46, 70)):
            g.append(
                fingerprint_records(
                    refs[lo:hi], refs[lo:hi], [f[0] for f in fingers[lo:hi]], positions[lo:hi]
                )
            )
        g.delete(["f05", "f50"])
        queries = [(f[1], pos) for f, pos in zip(fingers[:12], [0, 1, 2, 3] * 3, strict=True)]

        def run() -> list:
            return [
                search_fingerprint(
                    g, probe, k=5, position=pos, penetration=0.1, block_rows=block_rows
                ).candidates
                for probe, pos in queries
            ]

        with_lanes = run()
        assert all(fp_search.LANES_KEY in s.derived for s in g._segments), (
            "the lane layout was not used"
        )
        monkeypatch.setattr(lanes, "available", lambda: False)
        assert run() == with_lanes
    # The mates a probe's position lets it see are found (not deleted: f05).
    visible = [i for i, (_, pos) in enumerate(queries) if pos in (0, positions[i]) and i != 5]
    assert len(visible) == 6
    assert sum(with_lanes[i][0].reference == refs[i] for i in visible) >= 5


@needs_vnni
def test_lane_layout_is_built_once_per_segment_and_kept_across_refresh(
    tmp_path: Path, fingers: list
) -> None:
    refs = [f"f{i:02d}" for i in range(len(fingers))]
    with Gallery.create(tmp_path / "g", fingerprint_schema()) as g:
        g.append(fingerprint_records(refs[:40], refs[:40], [f[0] for f in fingers[:40]]))
        search_fingerprint(g, fingers[0][1], penetration=0.1)
        first = g._segments[0].derived[fp_search.LANES_KEY]
        g.append(fingerprint_records(refs[40:], refs[40:], [f[0] for f in fingers[40:]]))
        assert g._segments[0].derived[fp_search.LANES_KEY] is first  # handed on
        assert fp_search.LANES_KEY not in g._segments[1].derived  # built at the next search
        search_fingerprint(g, fingers[0][1], penetration=0.1)
        assert g._segments[0].derived[fp_search.LANES_KEY] is first
        assert fp_search.LANES_KEY in g._segments[1].derived
