"""Quality measures and checks on synthetic landmarks and reports (no model needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from matcher.errors import QualityError
from matcher.face import params as P
from matcher.face.landmarks import Landmarks
from matcher.face.quality import QualityReport, assess, pose_angles

IOD = 60.0


def face(nose_dx: float = 0.0, nose_dy: float = P.NOSE_DROP * IOD, roll: float = 0.0) -> Landmarks:
    """5 points of a face with eye centres at (70, 100) and (130, 100), rotated by ``roll``."""
    pts = np.array(
        [[140, 100], [120, 100], [60, 100], [80, 100], [100 + nose_dx, 100 + nose_dy]],
        dtype=np.float64,
    )
    c, s = math.cos(roll), math.sin(roll)
    centre = np.array([100.0, 100.0])
    pts = (pts - centre) @ np.array([[c, s], [-s, c]]) + centre
    return Landmarks(points=pts.astype(np.float32), shape=None)


def test_frontal_face_has_no_pose() -> None:
    yaw, pitch = pose_angles(face())
    assert abs(yaw) < 0.5 and abs(pitch) < 0.5
    assert face().interocular == pytest.approx(IOD)


def test_in_plane_roll_is_not_pose() -> None:
    yaw, pitch = pose_angles(face(roll=0.5))
    assert abs(yaw) < 0.5 and abs(pitch) < 0.5


@pytest.mark.parametrize("degrees", [-40.0, -20.0, 20.0, 40.0])
def test_yaw_follows_the_nose(degrees: float) -> None:
    dx = P.NOSE_DEPTH * IOD * math.tan(math.radians(degrees))
    dy = P.NOSE_DROP * IOD / math.cos(math.radians(degrees))
    yaw, pitch = pose_angles(face(nose_dx=dx, nose_dy=dy))
    assert yaw == pytest.approx(degrees, abs=0.5) and abs(pitch) < 1.0


def test_pitch_up_and_down() -> None:
    assert pose_angles(face(nose_dy=0.0))[1] < -P.MAX_PITCH_DEG  # nose on the eye line
    assert 5 < pose_angles(face(nose_dy=0.9 * IOD))[1] < 38.5  # nose far below: tilted down


def test_degenerate_eyes() -> None:
    pts = np.zeros((5, 2), np.float32)
    assert pose_angles(Landmarks(points=pts, shape=None)) == (90.0, 90.0)


def report(**changes: float) -> QualityReport:
    good = {
        "interocular": 60.0,
        "yaw": 0.0,
        "pitch": 0.0,
        "sharpness": 100.0,
        "mean_level": 120.0,
        "dark_fraction": 0.0,
        "bright_fraction": 0.0,
    }
    good.update(changes)
    return QualityReport(**good)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"interocular": 12.0}, "face_too_small"),
        ({"yaw": 60.0}, "strong_pose"),
        ({"pitch": -50.0}, "strong_pose"),
        ({"mean_level": 20.0}, "underexposed"),
        ({"dark_fraction": 0.7}, "underexposed"),
        ({"mean_level": 240.0}, "overexposed"),
        ({"bright_fraction": 0.6}, "overexposed"),
        ({"sharpness": 3.0}, "blurred"),
        ({"in_frame": 0.7}, "face_out_of_frame"),
    ],
)
def test_each_check_has_its_reason(changes: dict[str, float], reason: str) -> None:
    r = report(**changes)
    with pytest.raises(QualityError) as err:
        r.check()
    assert err.value.reason == reason


def test_failures_are_listed_in_checking_order() -> None:
    r = report(interocular=5.0, yaw=80.0, mean_level=10.0, sharpness=1.0, in_frame=0.5)
    assert [x for x, _ in r.failures()] == [
        "face_too_small",
        "strong_pose",
        "face_out_of_frame",
        "underexposed",
        "blurred",
    ]
    assert report().failures() == []


def test_score_ranks_chips() -> None:
    rng = np.random.default_rng(0)
    textured = rng.integers(60, 200, (150, 150, 3), dtype=np.uint8)
    flat = np.full((150, 150, 3), 128, np.uint8)
    dark = (textured // 6).astype(np.uint8)
    sharp = assess(face(), textured, 2.0)
    assert sharp.score > 90 and sharp.failures() == []
    assert all(P.MIN_FACTOR <= f <= 1.0 for f in sharp.factors.values())
    assert [x for x, _ in assess(face(), flat, 2.0).failures()] == ["blurred"]
    assert "underexposed" in [x for x, _ in assess(face(), dark, 2.0).failures()]
    declared = assess(face(), textured, None)
    assert declared.factors["detection"] == P.DECLARED_FACE_DETECTION_FACTOR
    assert declared.score < sharp.score
    assert 0 <= assess(face(nose_dy=0.0), flat, -1.0).score < 30  # three factors at the floor


def test_measures_read_only_the_chip_inside_the_image() -> None:
    """A flat (blurred) face whose chip runs past the image border: dlib's black fill must not
    read as a sharp edge or as dark pixels, and the share inside is the framing measure."""
    chip = np.full((150, 150, 3), 128, np.uint8)
    chip[:, 100:] = 0  # beyond the image's right border
    inside = np.ones((150, 150), bool)
    inside[:, 100:] = False
    unmasked = assess(face(), chip, 2.0)
    assert unmasked.sharpness > P.GOOD_SHARPNESS and unmasked.dark_fraction > 0.1
    got = assess(face(), chip, 2.0, inside)
    assert got.sharpness == 0.0 and got.dark_fraction == 0.0 and got.mean_level == 128.0
    lo, hi = (round(v * 150) for v in P.CHIP_CORE)
    assert got.in_frame == pytest.approx((100 - lo) / (hi - lo))
    assert [x for x, _ in got.failures()] == ["face_out_of_frame", "blurred"]
    assert got.factors["framing"] == P.MIN_FACTOR
    nowhere = assess(face(), chip, 2.0, np.zeros((150, 150), bool))
    assert nowhere.in_frame == 0.0 and nowhere.sharpness == 0.0
