"""False-minutia rules and quality scores, on hand-built minutiae."""

from __future__ import annotations

import math

import numpy as np

from matcher.fingerprint.extract import params as P
from matcher.fingerprint.extract.filtering import border_distance, keep_mask
from matcher.fingerprint.extract.minutiae import Minutiae
from matcher.fingerprint.extract.quality import image_quality, minutia_quality
from matcher.fingerprint.template import BIFURCATION, ENDING

SIZE = 200


def _m(rows: list[tuple[int, int, float, int]]) -> Minutiae:
    x, y, a, k = zip(*rows, strict=True)
    return Minutiae(
        np.array(x, np.int32), np.array(y, np.int32), np.array(a, np.float32), np.array(k, np.uint8)
    )


def _keep(rows: list[tuple[int, int, float, int]]) -> list[bool]:
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[20:180, 20:180] = True
    coherence = np.full((SIZE, SIZE), 0.9, dtype=np.float32)
    coherence[100:, 150:] = 0.05
    return keep_mask(_m(rows), border_distance(mask), coherence).tolist()


def test_isolated_minutiae_survive() -> None:
    assert _keep([(60, 60, 0.0, ENDING), (120, 120, 1.0, BIFURCATION)]) == [True, True]


def test_border_and_incoherent_minutiae_are_dropped() -> None:
    near_edge = 20 + int(P.BORDER_MARGIN) - 2  # the mask starts at 20
    assert _keep(
        [(near_edge, 100, 0.0, ENDING), (160, 130, 0.0, ENDING), (100, 100, 0.0, ENDING)]
    ) == [False, False, True]


def test_close_pairs_are_dropped() -> None:
    d = int(P.PAIR_MIN_DISTANCE) - 2
    assert _keep([(80, 80, 0.0, BIFURCATION), (80 + d, 80, 2.0, ENDING)]) == [False, False]


def test_facing_endings_are_a_broken_ridge() -> None:
    # Ending at x=70 points left (ISO π) into its ridge; the one a gap to the right points
    # right (0): the gap between them is a break.
    x = 70 + int(P.BREAK_MAX_DISTANCE) - 2
    facing = [(70, 100, math.pi, ENDING), (x, 100, 0.0, ENDING)]
    assert _keep(facing) == [False, False]
    # Same places, pointing towards each other: two ridges that end apart, not a break.
    apart = [(70, 100, 0.0, ENDING), (x, 100, math.pi, ENDING)]
    assert _keep(apart) == [True, True]
    # Facing each other across a wider valley: two real endings.
    wide = [(70, 100, math.pi, ENDING), (70 + int(P.BREAK_MAX_DISTANCE) + 2, 100, 0.0, ENDING)]
    assert _keep(wide) == [True, True]


def test_minutiae_crowded_by_neighbours_are_dropped() -> None:
    # A 3 x 3 grid: the centre has 8 neighbours within the radius, edge middles 5, corners 3.
    s = int(P.PAIR_MIN_DISTANCE) + 1
    assert 5 <= P.CLUSTER_MAX_NEIGHBOURS < 8 and s * math.sqrt(2) < P.CLUSTER_RADIUS < 2 * s
    rows = [(100 + i * s, 100 + j * s) for j in (-1, 0, 1) for i in (-1, 0, 1)]
    expected = [True] * 9
    expected[4] = False
    assert _keep([(x, y, 0.0, ENDING) for x, y in rows]) == expected


def test_quality_scores() -> None:
    coherence = np.full((50, 50), 0.9, dtype=np.float32)
    coherence[:, 25:] = 0.3
    dist = np.full((50, 50), 40.0, dtype=np.float32)
    q = minutia_quality(np.array([10, 40], np.int32), np.array([10, 10], np.int32), coherence, dist)
    assert q.dtype == np.uint8 and q[0] == 100 and 1 <= q[1] < 50
    mask = np.zeros((400, 400), dtype=bool)
    assert image_quality(mask, coherence) == 0
    mask[:, :] = True
    full = np.full((400, 400), 0.9, dtype=np.float32)
    assert image_quality(mask, full) == 100
    assert image_quality(mask, full * 0.1) == 0
