"""Quality of a located face: measures, a 0–100 score, and the refusal checks.

Measures (see :mod:`matcher.face.params` for every threshold and its reason):

* ``interocular``: distance between the eye centres in input pixels (face size).
* ``yaw``, ``pitch`` (degrees): head pose from the 5-point geometry (:func:`pose_angles`).
* ``in_frame``: the share of the face core of the aligned chip that lies inside the image (a
  face cut by the border has less).
* ``sharpness``: variance of the Laplacian of the grey face core of the aligned chip. The chip
  brings every face to the same scale, so the measure is independent of the input resolution.
* ``mean_level``, ``dark_fraction``, ``bright_fraction``: the grey-level histogram of the core.
  These three and the sharpness read only core pixels inside the image (clear of its border by
  ``FRAME_MARGIN_PX``): the black fill beyond it would read as dark and as a sharp edge.

Score: each check gives a factor in [MIN_FACTOR, 1] (1 = comfortably good; it ramps down to the
refusal threshold), plus the detector's confidence; the score is ``100 *`` their weighted
geometric mean, so one poor factor weighs more than in an average.

Refusals (:class:`~matcher.errors.QualityError` reasons), checked in this order:
``face_too_small``, ``strong_pose``, ``face_out_of_frame``, ``underexposed``, ``overexposed``,
``blurred`` (exposure before blur: a dark face also has little Laplacian energy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from matcher.errors import QualityError
from matcher.face import params as P
from matcher.face.landmarks import Landmarks


def pose_angles(landmarks: Landmarks) -> tuple[float, float]:
    """(yaw, pitch) in degrees from the eye centres and the nose base.

    Model: the nose base sits NOSE_DEPTH eye-distances in front of the eye line and NOSE_DROP
    below it. Turning the head by yaw ``θ`` moves it sideways by ``NOSE_DEPTH * tan θ`` projected
    eye-distances; tilting by pitch ``φ`` puts it ``NOSE_DROP cos φ + NOSE_DEPTH sin φ`` below the
    eye line. Positive yaw: nose towards the image's right; positive pitch: head tilted down.
    Accurate to ~10° (it ignores perspective and individual anatomy); used to refuse strong pose.
    """
    left, right = landmarks.eye_centres.astype(np.float64)
    nose = landmarks.points[4].astype(np.float64)
    axis = right - left
    iod = float(np.hypot(*axis))
    if iod <= 0.0:
        return 90.0, 90.0
    u = axis / iod
    down = np.array([-u[1], u[0]])
    rel = nose - (left + right) / 2.0
    dx, dy = float(rel @ u) / iod, float(rel @ down) / iod
    yaw = math.atan2(dx, P.NOSE_DEPTH)
    dy *= math.cos(yaw)  # the projected eye distance shrinks by cos(yaw)
    radius = math.hypot(P.NOSE_DROP, P.NOSE_DEPTH)
    alpha = math.atan2(P.NOSE_DEPTH, P.NOSE_DROP)
    pitch = alpha - math.acos(max(-1.0, min(1.0, dy / radius)))
    return math.degrees(yaw), math.degrees(pitch)


def _core(image: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """The face core (CHIP_CORE of each axis) of a chip-sized array."""
    lo, hi = P.CHIP_CORE
    n = image.shape[0]
    a, b = round(lo * n), round(hi * n)
    return np.ascontiguousarray(image[a:b, a:b])


def _sharpness(gray: npt.NDArray[np.uint8], usable: npt.NDArray[np.bool_]) -> float:
    """Variance of the Laplacian over the ``usable`` pixels (0 when there are none)."""
    lap = cv2.Laplacian(gray, cv2.CV_64F)[usable]
    return float(lap.var()) if lap.size else 0.0


def _ramp(value: float, bad: float, good: float) -> float:
    """0 at ``bad``, 1 at ``good`` (either order), linear between, clipped to [MIN_FACTOR, 1]."""
    t = (value - bad) / (good - bad) if good != bad else 1.0
    return max(P.MIN_FACTOR, min(1.0, t))


@dataclass(frozen=True)
class QualityReport:
    """Measures of one face, its factors in [MIN_FACTOR, 1] and the 0–100 score."""

    interocular: float
    yaw: float
    pitch: float
    sharpness: float
    mean_level: float
    dark_fraction: float
    bright_fraction: float
    in_frame: float = 1.0
    factors: dict[str, float] = field(default_factory=dict)
    score: int = 0

    def failures(self) -> list[tuple[str, str]]:
        """Every failed check as (reason, message), in checking order."""
        out: list[tuple[str, str]] = []
        if self.interocular < P.MIN_INTEREYE_PX:
            out.append(
                (
                    "face_too_small",
                    f"eyes {self.interocular:.1f} px apart; at least {P.MIN_INTEREYE_PX:g} "
                    "px needed",
                )
            )
        if abs(self.yaw) > P.MAX_YAW_DEG or abs(self.pitch) > P.MAX_PITCH_DEG:
            out.append(
                (
                    "strong_pose",
                    f"head pose yaw {self.yaw:.0f}°, pitch {self.pitch:.0f}° exceeds "
                    f"{P.MAX_YAW_DEG:g}°/{P.MAX_PITCH_DEG:g}°",
                )
            )
        if self.in_frame < P.MIN_IN_FRAME:
            out.append(
                (
                    "face_out_of_frame",
                    f"{1 - self.in_frame:.0%} of the face lies outside the image; at most "
                    f"{1 - P.MIN_IN_FRAME:.0%} may",
                )
            )
        if self.mean_level < P.MIN_MEAN_LEVEL or self.dark_fraction > P.MAX_CLIPPED_FRACTION:
            out.append(
                (
                    "underexposed",
                    f"face too dark (mean grey {self.mean_level:.0f}, "
                    f"{self.dark_fraction:.0%} black)",
                )
            )
        if self.mean_level > P.MAX_MEAN_LEVEL or self.bright_fraction > P.MAX_CLIPPED_FRACTION:
            out.append(
                (
                    "overexposed",
                    f"face too bright (mean grey {self.mean_level:.0f}, "
                    f"{self.bright_fraction:.0%} clipped)",
                )
            )
        if self.sharpness < P.MIN_SHARPNESS:
            out.append(
                (
                    "blurred",
                    f"face sharpness {self.sharpness:.1f} below {P.MIN_SHARPNESS:g}",
                )
            )
        return out

    def check(self) -> None:
        """Raise :class:`QualityError` for the first failed check; return nothing if all pass."""
        failed = self.failures()
        if failed:
            reason, message = failed[0]
            raise QualityError(message, reason=reason)


def assess(
    landmarks: Landmarks,
    chip: npt.NDArray[np.uint8],
    detection_score: float | None,
    in_frame: npt.NDArray[np.bool_] | None = None,
) -> QualityReport:
    """Measure a face. ``chip`` is the aligned uint8 (150, 150, 3) chip; ``detection_score`` is
    the detector's score, or None for a face the caller declared (whole-image fallback);
    ``in_frame`` is bool (150, 150), where the chip samples the image
    (:func:`matcher.face.align.chip_in_frame`; None: everywhere)."""
    if in_frame is None:
        in_frame = np.ones(chip.shape[:2], dtype=bool)
    inside = _core(in_frame)
    clear = cv2.erode(
        in_frame.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=P.FRAME_MARGIN_PX
    )
    usable = _core(clear).astype(bool)
    core = _core(cv2.cvtColor(np.ascontiguousarray(chip), cv2.COLOR_RGB2GRAY))
    sharpness = _sharpness(core, usable)
    seen = core[usable] if usable.any() else core
    mean = float(seen.mean())
    dark = float(np.mean(seen <= P.DARK_LEVEL))
    bright = float(np.mean(seen >= P.BRIGHT_LEVEL))
    framed = float(inside.mean())
    iod = landmarks.interocular
    yaw, pitch = pose_angles(landmarks)

    lo, hi = P.GOOD_MEAN_RANGE
    mean_factor = (
        _ramp(mean, P.MIN_MEAN_LEVEL, lo) if mean < lo else _ramp(mean, P.MAX_MEAN_LEVEL, hi)
    )
    clip_factor = _ramp(max(dark, bright), P.MAX_CLIPPED_FRACTION, 0.0)
    factors = {
        "size": _ramp(iod, P.MIN_INTEREYE_PX, P.GOOD_INTEREYE_PX),
        "sharpness": _ramp(
            math.log(max(sharpness, 1e-6)),
            math.log(P.MIN_SHARPNESS),
            math.log(P.GOOD_SHARPNESS),
        ),
        "exposure": min(mean_factor, clip_factor),
        "pose": min(
            _ramp(abs(yaw), P.MAX_YAW_DEG, P.GOOD_POSE_DEG),
            _ramp(abs(pitch), P.MAX_PITCH_DEG, P.GOOD_POSE_DEG),
        ),
        "framing": _ramp(framed, P.MIN_IN_FRAME, 1.0),
        "detection": (
            P.DECLARED_FACE_DETECTION_FACTOR
            if detection_score is None
            else _ramp(detection_score, P.BAD_DETECTION_SCORE, P.GOOD_DETECTION_SCORE)
        ),
    }
    weights = P.QUALITY_WEIGHTS
    total = sum(weights.values())
    log_mean = sum(weights[k] * math.log(f) for k, f in factors.items()) / total
    return QualityReport(
        interocular=iod,
        yaw=yaw,
        pitch=pitch,
        sharpness=sharpness,
        mean_level=mean,
        dark_fraction=dark,
        bright_fraction=bright,
        in_frame=framed,
        factors=factors,
        score=round(100.0 * math.exp(log_mean)),
    )
