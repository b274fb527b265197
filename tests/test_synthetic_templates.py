"""The template fast path: valid templates with the intended statistics, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from matcher.fingerprint.template import BIFURCATION, ENDING, FingerprintTemplate
from matcher.synthetic import SyntheticParameterError, synthetic_templates
from matcher.synthetic import params as P


@pytest.fixture(scope="module")
def gallery() -> list[list[FingerprintTemplate]]:
    return synthetic_templates(60, 3, seed=7)


def test_shape_of_the_result_and_valid_templates(gallery: list[list[FingerprintTemplate]]) -> None:
    assert len(gallery) == 60 and all(len(f) == 3 for f in gallery)
    h, w = P.IMPRESSION_SHAPE
    for t in (t for f in gallery for t in f):
        assert isinstance(t, FingerprintTemplate)
        assert (t.width, t.height, t.resolution_ppi) == (w, h, 500)
        assert set(np.unique(t.kind)) <= {ENDING, BIFURCATION}


def test_minutiae_counts_like_an_fvc_impression(gallery: list[list[FingerprintTemplate]]) -> None:
    counts = np.array([len(t) for f in gallery for t in f])
    assert 35 <= counts.mean() <= 60
    assert counts.min() >= 5 and counts.max() <= 120


def test_types_are_balanced(gallery: list[list[FingerprintTemplate]]) -> None:
    kinds = np.concatenate([t.kind for f in gallery for t in f])
    assert abs(np.mean(kinds == BIFURCATION) - 0.5) < 0.06


def test_minutiae_are_spaced_about_two_ridge_periods(
    gallery: list[list[FingerprintTemplate]],
) -> None:
    nearest = []
    for t in (f[0] for f in gallery):
        d = np.hypot(t.x[:, None] - t.x[None], t.y[:, None] - t.y[None])
        np.fill_diagonal(d, np.inf)
        nearest.append(d.min(axis=1))
    nn = np.concatenate(nearest)
    # Jitter and spurious minutiae make a few pairs closer; the bulk respects the spacing.
    assert np.median(nn) > P.TEMPLATE_MIN_SPACING * P.PERIOD_MEAN
    assert np.mean(nn < P.PERIOD_MEAN) < 0.1


def test_neighbouring_directions_follow_a_smooth_flow(
    gallery: list[list[FingerprintTemplate]],
) -> None:
    diffs = []
    for t in (f[0] for f in gallery):
        d = np.hypot(t.x[:, None] - t.x[None], t.y[:, None] - t.y[None])
        np.fill_diagonal(d, np.inf)
        j = d.argmin(axis=1)
        a = np.mod(t.angle - t.angle[j], np.pi)  # orientation, sense ignored
        diffs.append(np.minimum(a, np.pi - a))
    # Uniformly random orientations would give a mean of 45°.
    assert np.degrees(np.mean(np.concatenate(diffs))) < 25


def _best_alignment(a: FingerprintTemplate, b: FingerprintTemplate) -> int:
    """Most minutiae of ``a`` that land on a minutia of ``b`` (within 12 px and 20°) under the
    rigid transform that maps one of ``a``'s first 12 minutiae onto some minutia of ``b``."""
    # ISO angles are counter-clockwise with y up, so image-coordinate rotations are negated.
    anchors = min(len(a), 12)
    rot = (a.angle[:anchors, None] - b.angle[None, :]).reshape(-1, 1, 1)  # (anchors·nb, 1, 1)
    c, s = np.cos(rot), np.sin(rot)
    ai, bj = np.divmod(np.arange(anchors * len(b)), len(b))
    ax, ay = a.x[None, :, None] - a.x[ai, None, None], a.y[None, :, None] - a.y[ai, None, None]
    px = c * ax - s * ay + b.x[bj, None, None]
    py = s * ax + c * ay + b.y[bj, None, None]
    near = np.hypot(px - b.x[None, None, :], py - b.y[None, None, :]) < 12
    turn = np.mod(a.angle[None, :, None] - rot - b.angle[None, None, :], 2 * np.pi)
    agree = np.minimum(turn, 2 * np.pi - turn) < np.radians(20)
    return int((near & agree).any(axis=2).sum(axis=1).max())


def test_impressions_of_a_finger_share_minutiae(gallery: list[list[FingerprintTemplate]]) -> None:
    genuine = [_best_alignment(f[0], f[1]) for f in gallery[:10]]
    impostor = [_best_alignment(gallery[i][0], gallery[i + 1][1]) for i in range(10)]
    assert np.median(genuine) >= 2.5 * np.median(impostor)
    assert np.percentile(genuine, 25) > max(impostor)


def test_deterministic_and_independent_of_the_gallery_size(
    gallery: list[list[FingerprintTemplate]],
) -> None:
    small = synthetic_templates(5, 3, seed=7)
    assert all(small[f][i] == gallery[f][i] for f in range(5) for i in range(3))
    other = synthetic_templates(5, 3, seed=8)
    assert not any(other[f][0] == gallery[f][0] for f in range(5))


def test_zero_fingers_gives_an_empty_gallery() -> None:
    assert synthetic_templates(0, 3) == []
    assert synthetic_templates(2, 0) == [[], []]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ((-1, 2, 0), "bad_count"),
        ((2, -1, 0), "bad_count"),
        ((2.5, 2, 0), "bad_count"),
        ((2, 2, -4), "bad_seed"),
    ],
)
def test_bad_arguments_raise(args: tuple[object, object, object], reason: str) -> None:
    with pytest.raises(SyntheticParameterError) as info:
        synthetic_templates(*args)  # type: ignore[arg-type]
    assert info.value.reason == reason


def test_too_small_image_raises() -> None:
    with pytest.raises(SyntheticParameterError, match="64x64"):
        synthetic_templates(1, 1, shape=(32, 32))
