"""Master fingerprint: the noise-free, undistorted ridge pattern of one finger, with its truth."""

from __future__ import annotations

import operator
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from matcher.synthetic import params as P
from matcher.synthetic.density import period_map
from matcher.synthetic.errors import SyntheticParameterError
from matcher.synthetic.layout import Layout, draw_layouts
from matcher.synthetic.noise import smooth_field
from matcher.synthetic.orientation import orientation
from matcher.synthetic.ridges import grow_ridges

F32 = npt.NDArray[np.float32]
#: Polyline vertices per crease (enough for a smooth arc).
CREASE_POINTS = 16
#: Smallest canvas side that holds a recognisable pattern (a few ridge periods around a core).
MIN_SIDE = 64


@dataclass(frozen=True, eq=False)
class MasterFingerprint:
    """One synthetic finger.

    ``ridges`` (H, W) float32 in [-1, 1], positive on ridges, over the whole canvas;
    ``image`` (H, W) uint8, dark ridges on white, masked to the finger; ``orientation`` (H, W)
    float32 ground-truth ridge orientation in [0, π) (image coordinates, y down); ``period``
    (H, W) float32 ridge period in px; ``mask`` (H, W) bool finger silhouette; ``cores`` and
    ``deltas`` (n, 2) float64 (x, y); ``layout`` the drawn parameters (batch of one).
    """

    seed: int
    fingerprint_class: str
    ridges: F32
    image: npt.NDArray[np.uint8]
    orientation: F32
    period: F32
    mask: npt.NDArray[np.bool_]
    cores: npt.NDArray[np.float64]
    deltas: npt.NDArray[np.float64]
    layout: Layout

    @property
    def shape(self) -> tuple[int, int]:
        h, w = self.ridges.shape
        return int(h), int(w)


def check_seed(seed: object) -> int:
    """A seed must be a non-negative int (numpy's SeedSequence refuses negatives)."""
    try:
        value = operator.index(seed)  # type: ignore[arg-type]
    except TypeError:
        raise SyntheticParameterError(
            f"seed must be an integer, got {type(seed).__name__}", reason="bad_seed"
        ) from None
    if value < 0:
        raise SyntheticParameterError(f"seed must be >= 0, got {value}", reason="bad_seed")
    return value


def add_creases(ridges: F32, layout: Layout, rng: np.random.Generator) -> F32:
    """Draw flexion creases/scars (white lines across ridges) into ``ridges`` (H, W)."""
    n = int(rng.poisson(P.CREASE_MEAN))
    if n == 0:
        return ridges
    h, w = ridges.shape
    canvas = np.zeros((h, w), np.float32)
    tilt = float(layout.flow.tilt[0])
    cx, cy = layout.flow.centre[0]
    a, b = layout.semi[0]
    for _ in range(n):  # a handful of lines per finger, each drawn by OpenCV
        u = rng.uniform(-P.CREASE_REGION_X, P.CREASE_REGION_X) * a
        v = rng.uniform(*P.CREASE_REGION_Y) * b
        angle = tilt + rng.uniform(-P.CREASE_TILT, P.CREASE_TILT)
        half = rng.uniform(*P.CREASE_LENGTH) / 2.0
        x = cx + u * np.cos(tilt) - v * np.sin(tilt)
        y = cy + u * np.sin(tilt) + v * np.cos(tilt)
        t = np.linspace(-1.0, 1.0, CREASE_POINTS)
        bend = rng.uniform(-P.CREASE_BEND, P.CREASE_BEND) * half * (1.0 - t * t)
        px = x + t * half * np.cos(angle) - bend * np.sin(angle)
        py = y + t * half * np.sin(angle) + bend * np.cos(angle)
        points = np.round(np.stack([px, py], axis=1) * 16).astype(np.int32)
        thickness = max(1, round(rng.uniform(*P.CREASE_WIDTH)))
        cv2.polylines(canvas, [points], False, 1.0, thickness, cv2.LINE_AA, shift=4)
    weight = np.clip(canvas, 0.0, 1.0)
    return (ridges * (1.0 - weight) - weight).astype(np.float32)


def make_master(
    seed: int,
    *,
    fingerprint_class: str | None = None,
    shape: tuple[int, int] = P.MASTER_SHAPE,
    iterations: int = P.GROWTH_ITERATIONS,
    correction: bool = True,
) -> MasterFingerprint:
    """Generate the master fingerprint of finger ``seed``; same arguments ⇒ identical output.

    ``fingerprint_class`` fixes the class (one of :data:`params.CLASSES`), otherwise it is
    drawn with natural frequencies. ``correction`` applies the Vizcaya–Gerhardt style warp of
    the Sherlock–Monro field (default; ``False`` gives the plain zero-pole model). ``shape``
    (H, W) and ``iterations`` exist for fast tests.
    """
    seed = check_seed(seed)
    h, w = (int(v) for v in shape)
    if h < MIN_SIDE or w < MIN_SIDE:
        raise SyntheticParameterError(
            f"master shape {h}x{w} too small (min {MIN_SIDE})", reason="bad_shape"
        )
    if iterations < 1:
        raise SyntheticParameterError("iterations must be >= 1", reason="bad_iterations")
    layout_ss, density_ss, ridge_ss, crease_ss, flow_ss = np.random.SeedSequence(seed).spawn(5)
    layout = draw_layouts(
        np.random.default_rng(layout_ss), 1, (h, w), fingerprint_class, correction
    )
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    theta = orientation(layout.flow, xs[None], ys[None])[0]
    if correction and P.FLOW_NOISE > 0:  # the finger's own small flow irregularities
        wobble = smooth_field(np.random.default_rng(flow_ss), (h, w), P.FLOW_NOISE_LENGTH)
        theta = np.mod(theta + P.FLOW_NOISE * wobble, np.pi)
    theta = theta.astype(np.float32)
    period = period_map(layout, np.random.default_rng(density_ss), (h, w))
    level = layout.level(xs[None], ys[None])[0]
    active = level < P.GROWTH_ACTIVE_LEVEL
    ridges = grow_ridges(theta, period, np.random.default_rng(ridge_ss), iterations, active)
    mask = level < 1.0
    ridges = add_creases(ridges, layout, np.random.default_rng(crease_ss))
    image = np.where(mask, np.rint(127.5 * (1.0 - ridges)), 255.0).astype(np.uint8)
    sign = layout.flow.sign[0]
    points = layout.flow.points[0]
    return MasterFingerprint(
        seed=seed,
        fingerprint_class=P.CLASSES[int(layout.classes[0])],
        ridges=ridges,
        image=image,
        orientation=theta,
        period=period,
        mask=mask,
        cores=points[sign < 0].copy(),
        deltas=points[sign > 0].copy(),
        layout=layout,
    )
