"""The fingerprint matcher on generated minutiae sets (no images, no real biometric data)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matcher.errors import TemplateFormatError
from matcher.fingerprint.match import (
    PackedTemplates,
    SearchTemplate,
    explain,
    pack,
    prepare,
    score,
    score_many,
)
from matcher.fingerprint.match import params as P
from matcher.fingerprint.match.consolidation import top_rows
from matcher.fingerprint.match.kernel import consolidate
from matcher.fingerprint.template import FingerprintTemplate

W, H = 320, 400


def _points(rng: np.random.Generator, n: int, spacing: float = 14.0) -> np.ndarray:
    pts: list[np.ndarray] = []
    while len(pts) < n:
        p = rng.uniform([25, 25], [W - 25, H - 25])
        if all(np.hypot(*(p - q)) >= spacing for q in pts):
            pts.append(p)
    return np.array(pts).reshape(-1, 2)


def _template(xy: np.ndarray, angle: np.ndarray) -> FingerprintTemplate:
    keep = (xy[:, 0] >= 0) & (xy[:, 1] >= 0) & (xy[:, 0] < W) & (xy[:, 1] < H)
    xy, angle = xy[keep], np.mod(angle[keep], 2 * np.pi).astype(np.float32)
    angle[angle >= np.float32(2 * np.pi)] = 0.0
    n = xy.shape[0]
    return FingerprintTemplate(
        x=xy[:, 0],
        y=xy[:, 1],
        angle=angle,
        kind=np.ones(n, np.uint8),
        quality=np.full(n, 60, np.uint8),
        width=W,
        height=H,
    )


def finger(seed: int, n: int = 45) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return _points(rng, n), rng.uniform(0, 2 * np.pi, n)


def impression(
    xy: np.ndarray,
    angle: np.ndarray,
    seed: int,
    *,
    rotation: float = 0.35,
    shift: tuple[float, float] = (12.0, -18.0),
    jitter: float = 2.5,
    angle_jitter: float = 0.08,
    drop: float = 0.2,
    spurious: int = 5,
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate (counter-clockwise as seen, ISO angles rise by ``rotation``), shift, jitter,
    drop a fraction of minutiae and add spurious ones."""
    rng = np.random.default_rng(seed)
    c = np.array([W / 2, H / 2])
    cs, sn = math.cos(rotation), math.sin(rotation)
    rot = np.array([[cs, sn], [-sn, cs]])  # y points down
    out = (xy - c) @ rot.T + c + np.array(shift) + rng.normal(0, jitter, xy.shape)
    ang = angle + rotation + rng.normal(0, angle_jitter, angle.shape)
    keep = rng.random(len(out)) >= drop
    out, ang = out[keep], ang[keep]
    if spurious:
        out = np.vstack([out, _points(rng, spurious)])
        ang = np.concatenate([ang, rng.uniform(0, 2 * np.pi, spurious)])
    return out, ang


def _pair(seed: int) -> tuple[FingerprintTemplate, FingerprintTemplate]:
    xy, ang = finger(seed)
    return _template(xy, ang), _template(*impression(xy, ang, seed + 1000))


def test_genuine_scores_far_above_impostors() -> None:
    genuine, impostor = [], []
    for seed in range(6):
        a, b = _pair(seed)
        other = _template(*finger(seed + 500))
        genuine.append(score(a, b))
        impostor.append(score(a, other))
    assert min(genuine) > 0.25
    assert max(impostor) < 0.08
    assert min(genuine) > 3 * max(impostor)


def test_self_score_is_high_and_in_range() -> None:
    a, _ = _pair(1)
    s = score(a, a)
    assert 0.8 <= s <= 1.0


@pytest.mark.parametrize(
    ("rotation", "shift"), [(0.0, (40.0, 0.0)), (1.2, (0.0, 0.0)), (-1.4, (-30.0, 25.0))]
)
def test_rotation_and_translation_invariance(rotation: float, shift: tuple[float, float]) -> None:
    """Invariant for rotations within MAX_DIRECTION_DIFF (±90°: any plausible placement)."""
    xy, ang = finger(7, n=70)
    central = np.hypot(xy[:, 0] - W / 2, xy[:, 1] - H / 2) < 110  # stays inside when moved
    xy, ang = xy[central], ang[central]
    a = _template(xy, ang)
    moved = impression(
        xy,
        ang,
        0,
        rotation=rotation,
        shift=shift,
        jitter=0.0,
        angle_jitter=0.0,
        drop=0.0,
        spurious=0,
    )
    b = _template(*moved)
    assert b.count == a.count >= 20
    assert score(a, b) == pytest.approx(score(a, a), abs=0.1)


def test_rotation_beyond_the_direction_limit_does_not_match() -> None:
    """MCC's δθ: a finger turned by more than 90° is not paired (documented in params)."""
    xy, ang = finger(7, n=40)
    turned = impression(
        xy, ang, 0, rotation=2.8, jitter=0.0, angle_jitter=0.0, drop=0.0, spurious=0
    )
    assert score(_template(xy, ang), _template(*turned)) < 0.05


def test_scores_lie_in_unit_interval_and_are_nearly_symmetric() -> None:
    a, b = _pair(3)
    ab, ba = score(a, b), score(b, a)
    assert 0.0 <= ab <= 1.0 and 0.0 <= ba <= 1.0
    assert ab == pytest.approx(ba, abs=0.15)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    block=st.integers(1, 9),
    position=st.integers(0, 8),
    extra_rows=st.integers(0, 40),
)
def test_one_to_one_equals_batch_whatever_the_block(
    seed: int, block: int, position: int, extra_rows: int
) -> None:
    a, b = _pair(seed)
    others = [prepare(_template(*finger(seed + 1 + k, n=20 + 7 * k))) for k in range(block)]
    position %= block + 1
    members = [*others[:position], prepare(b), *others[position:]]
    longest = max(t.count for t in members)
    packed = pack(members, row_length=max(longest, P.N_RELAX) + extra_rows)
    batch = score_many(prepare(a), packed)
    assert batch.dtype == np.float32 and batch.shape == (block + 1,)
    assert batch[position] == np.float32(score(a, b))
    # Each member scores the same alone as in the block.
    alone = [score_many(prepare(a), pack([t]))[0] for t in members]
    assert np.array_equal(batch, np.array(alone, np.float32))


def test_probe_grid_is_built_once_and_changes_no_score() -> None:
    a, b = _pair(6)
    probe, block = prepare(a), pack([prepare(b), prepare(a)])
    first = score_many(probe, block)
    grid = probe.__dict__["_alignment_grid"]
    assert np.array_equal(score_many(probe, block), first)
    assert probe.__dict__["_alignment_grid"] is grid
    assert np.array_equal(score_many(prepare(a), block), first)


def test_sub_block_split_does_not_change_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    a, _ = _pair(8)
    members = [prepare(_template(*finger(40 + k, n=15 + 6 * k))) for k in range(7)]
    block = pack(members)
    whole = consolidate(prepare(a), block).score
    monkeypatch.setattr(P, "CHUNK_TEMPLATES", 2)
    assert np.array_equal(score_many(prepare(a), block), whole)


def test_explain_is_consistent_with_score_and_finds_true_pairs() -> None:
    xy, ang = finger(11)
    a = _template(xy, ang)
    moved, _ = impression(xy, ang, 5, jitter=0.0, drop=0.0, spurious=0)
    b = _template(*impression(xy, ang, 5, jitter=0.0, drop=0.0, spurious=0))
    e = explain(a, b)
    assert e.score == pytest.approx(score(a, b), abs=0.0)
    assert e.pairs.shape[1] == 2
    assert 0 < e.pairs.shape[0] <= e.n_pairs
    assert np.all(e.selected <= e.usable)
    # Pairs are true correspondences: a's minutia, moved, lands on b's.
    expected = moved[e.pairs[:, 0]]
    found = np.stack([b.x[e.pairs[:, 1]], b.y[e.pairs[:, 1]]], axis=1)
    assert np.mean(np.hypot(*(expected - found).T) < 1.0) >= 0.9
    sel = e.selected
    assert e.lssr_score == pytest.approx(float(e.relaxed[sel].sum()) / e.n_pairs, rel=1e-6)
    share = e.aligned / max(e.overlap, P.ALIGN_MIN_OVERLAP)
    w, wf = P.ALIGN_WEIGHT, P.FIELD_WEIGHT
    assert e.field_blocks == 0 and e.field_term == 0.0  # no orientation fields: term 0
    assert e.score == pytest.approx((e.lssr_score + w * share**2) / (1 + w + wf), rel=1e-6)
    # Every minutia of b lies in a's area and lands on its counterpart.
    assert e.aligned == e.overlap == b.count
    assert np.all(e.efficiency[sel] >= 0)


def test_explain_maps_indices_back_to_the_templates() -> None:
    small = _template(*finger(12, n=6))
    e = explain(small, small)
    assert e.b_index.shape == (P.N_RELAX,)
    assert set(e.b_index[6:].tolist()) == {-1} and not e.usable[e.b_index < 0].any()
    assert e.score == score(small, small)
    empty = _template(np.zeros((0, 2)), np.zeros(0))
    assert explain(empty, small).score == 0.0 and set(explain(small, empty).b_index) == {-1}


def test_empty_and_tiny_templates_score_zero() -> None:
    empty = _template(np.zeros((0, 2)), np.zeros(0))
    one = _template(np.array([[100.0, 100.0]]), np.array([1.0]))
    a, _ = _pair(2)
    for x, y in [(empty, a), (a, empty), (empty, empty), (one, a), (a, one), (one, one)]:
        assert score(x, y) == 0.0
    assert prepare(empty).count == 0
    assert score_many(prepare(a), pack([])).shape == (0,)


def test_too_many_minutiae_are_cut_to_the_best_quality() -> None:
    rng = np.random.default_rng(0)
    n = P.MAX_MINUTIAE + 20
    t = FingerprintTemplate(
        x=rng.uniform(0, W - 1, n).astype(np.float32),
        y=rng.uniform(0, H - 1, n).astype(np.float32),
        angle=rng.uniform(0, 6.28, n).astype(np.float32),
        kind=np.ones(n, np.uint8),
        quality=rng.integers(1, 100, n).astype(np.uint8),
        width=W,
        height=H,
    )
    assert prepare(t).count == P.MAX_MINUTIAE


def _top_rows(values: np.ndarray, r: int) -> list[int]:
    out = np.empty(r, np.int64)
    top_rows(np.asarray(values, np.float32), r, out, np.empty(r, np.float32))
    return out.tolist()


def test_top_rows_breaks_ties_by_index() -> None:
    assert _top_rows(np.array([0.5, 0.9, 0.5, 0.5, -1.0]), 3) == [0, 1, 2]
    assert _top_rows(np.ones(5), 3) == [0, 1, 2]
    assert _top_rows(np.array([-1.0, 0.2, 0.7, 0.2, 0.9, 0.2]), 3) == [1, 2, 4]


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(-3, 3), min_size=16, max_size=70),
    r=st.integers(1, 16),
)
def test_top_rows_equals_a_stable_sort(values: list[int], r: int) -> None:
    v = np.array(values, np.float32) / 2
    expected = sorted(np.argsort(-v, kind="stable")[:r].tolist())
    assert _top_rows(v, r) == expected


def test_consolidation_arrays_have_documented_shapes() -> None:
    a, b = _pair(4)
    c = consolidate(prepare(a), pack([prepare(b), prepare(a)]))
    assert c.local.shape == c.relaxed.shape == (2, P.N_RELAX)
    assert c.score.shape == (2,) and c.score.dtype == np.float32


def test_bad_inputs_raise_typed_errors() -> None:
    a, b = _pair(5)
    pa, pb = prepare(a), prepare(b)
    good = pack([pb])
    with pytest.raises(TemplateFormatError):
        prepare("not a template")  # type: ignore[arg-type]
    with pytest.raises(TemplateFormatError):
        score_many("probe", good)  # type: ignore[arg-type]
    with pytest.raises(TemplateFormatError) as version:
        PackedTemplates(good.descriptors, good.inv_norm, good.geometry, good.counts, version=99)
    assert version.value.reason == "incompatible_template_version"
    with pytest.raises(TemplateFormatError):
        PackedTemplates(good.descriptors[:, :, :5], good.inv_norm, good.geometry, good.counts)
    with pytest.raises(TemplateFormatError):
        PackedTemplates(good.descriptors, good.inv_norm[:, :3], good.geometry, good.counts)
    with pytest.raises(TemplateFormatError):
        PackedTemplates(
            good.descriptors, good.inv_norm, good.geometry, good.counts.astype(np.int64)
        )
    with pytest.raises(TemplateFormatError):
        PackedTemplates(good.descriptors, good.inv_norm, good.geometry, good.counts + 1000)
    with pytest.raises(TemplateFormatError) as short:
        pack([pb], row_length=pb.count - 1)
    assert short.value.reason == "bad_row_length"
    with pytest.raises(TemplateFormatError):
        score_many(SearchTemplate(pa.descriptors, pa.inv_norm, pa.geometry, format="x"), good)
    with pytest.raises(TemplateFormatError):
        score_many(SearchTemplate(pa.descriptors[:, :7], pa.inv_norm, pa.geometry), good)


def _at_ppi(t: FingerprintTemplate, ppi: int) -> FingerprintTemplate:
    """``t`` (500 ppi) as a record of the same finger at ``ppi``, through the ISO codec."""
    from dataclasses import replace

    from matcher.fingerprint import iso19794_2

    f = ppi / 500
    scaled = replace(
        t,
        x=(t.x * f).astype(np.float32),
        y=(t.y * f).astype(np.float32),
        width=math.ceil(t.width * f) + 1,
        height=math.ceil(t.height * f) + 1,
        resolution_ppi=ppi,
        orientation=None,
    )
    return iso19794_2.decode(iso19794_2.encode(scaled))


@pytest.mark.parametrize("ppi", [1000, 250, 600])
def test_a_record_at_another_resolution_is_matched_at_500_ppi(ppi: int) -> None:
    """A 1000 ppi record of a mate scored at impostor level (coordinates twice as far apart:
    0.001 against 0.25 on FVC); scaled to 500 ppi when prepared it scores like the original."""
    a, b = _pair(0)
    same = score(a, b)
    assert same > 0.05
    assert score(a, _at_ppi(b, ppi)) == pytest.approx(same, rel=0.35)
    assert score(_at_ppi(a, ppi), b) == pytest.approx(same, rel=0.35)


@pytest.mark.parametrize("ppi", [200, 2000])
def test_an_implausible_resolution_is_refused(ppi: int) -> None:
    from dataclasses import replace

    a, _ = _pair(0)
    with pytest.raises(TemplateFormatError) as err:
        prepare(replace(a, resolution_ppi=ppi))
    assert err.value.reason == "bad_resolution"


def test_a_field_of_another_resolution_or_oversized_is_dropped() -> None:
    """A 1000 ppi field's blocks are not the matcher's; a field wider than the largest image
    the extractor accepts would inflate every record it is packed with."""
    from dataclasses import replace

    a, _ = _pair(0)
    field = np.zeros((a.height // 16, a.width // 16), np.uint8)
    assert prepare(replace(a, orientation=field)).field is not None
    assert prepare(replace(a, orientation=field, resolution_ppi=1000)).field is None
    blocks = P.MAX_FIELD_BLOCKS + 1
    wide = replace(
        a,
        width=16 * blocks,
        height=16,
        y=np.zeros_like(a.y),
        orientation=np.zeros((1, blocks), np.uint8),
    )
    assert prepare(wide).field is None
