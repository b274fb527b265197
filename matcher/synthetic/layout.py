"""A finger's global layout drawn from a seed: class, singular points, tilt, silhouette, period.

Batched over ``B`` fingers so that the template fast path draws a block of fingers with one set
of numpy calls; :func:`matcher.synthetic.master.make_master` uses ``B = 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from matcher.synthetic import params as P
from matcher.synthetic.errors import SyntheticParameterError
from matcher.synthetic.orientation import FlowModel

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Singular point slots per finger (a whorl has 2 cores + 2 deltas, the most of any class).
SLOTS = 4


@dataclass(frozen=True)
class Layout:
    """Global layout of ``B`` fingers. ``classes`` (B,) indexes :data:`params.CLASSES`;
    ``semi`` (B, 2) silhouette semi-axes (x, y); ``wobble_a``/``wobble_phase`` (B, H)
    boundary harmonics; ``period`` (B,) mean ridge period in px."""

    classes: I64
    flow: FlowModel
    semi: F64
    wobble_a: F64
    wobble_phase: F64
    period: F64

    @property
    def batch(self) -> int:
        return int(self.classes.shape[0])

    def level(self, x: npt.ArrayLike, y: npt.ArrayLike) -> F64:
        """Silhouette level at points (B, ...): < 1 inside the finger, 1 on its boundary.

        The shape is a superellipse (rounder on top, squarer below, after SFinGe's 4-part
        silhouette) whose radius wobbles with a few low harmonics.
        """
        xa = np.asarray(x, dtype=np.float64)
        ya = np.asarray(y, dtype=np.float64)
        extra = (1,) * (xa.ndim - 1)

        def pf(v: F64) -> F64:
            return v.reshape((-1, *extra))

        tilt = pf(self.flow.tilt)
        dx = xa - pf(self.flow.centre[:, 0])
        dy = ya - pf(self.flow.centre[:, 1])
        u = (dx * np.cos(tilt) + dy * np.sin(tilt)) / pf(self.semi[:, 0])
        v = (-dx * np.sin(tilt) + dy * np.cos(tilt)) / pf(self.semi[:, 1])
        power = np.where(v < 0, P.SILHOUETTE_POWER_TOP, P.SILHOUETTE_POWER_BOTTOM)
        radius = (np.abs(u) ** power + np.abs(v) ** power) ** (1.0 / power)
        psi = np.arctan2(v, u)
        boundary = np.ones_like(radius)
        for k in range(self.wobble_a.shape[1]):
            boundary += pf(self.wobble_a[:, k]) * np.cos(
                (k + 2) * psi + pf(self.wobble_phase[:, k])
            )
        level: F64 = radius / boundary
        return level


def class_index(name: str) -> int:
    """Index of a class name in :data:`params.CLASSES`; raises for unknown names."""
    try:
        return P.CLASSES.index(name)
    except ValueError:
        raise SyntheticParameterError(
            f"unknown fingerprint class {name!r}; expected one of {', '.join(P.CLASSES)}",
            reason="unknown_class",
        ) from None


def draw_layouts(
    rng: np.random.Generator,
    batch: int,
    shape: tuple[int, int] = P.MASTER_SHAPE,
    fingerprint_class: str | None = None,
    correction: bool = True,
) -> Layout:
    """Draw ``batch`` finger layouts centred on a canvas of ``shape`` (H, W).

    ``correction=False`` zeroes the Vizcaya–Gerhardt warp (the plain Sherlock–Monro field);
    the random draws are the same either way, so only the orientation field changes.
    """
    b = batch
    h, w = shape
    if fingerprint_class is None:
        classes = rng.choice(
            len(P.CLASSES), size=b, p=np.asarray(P.CLASS_PRIORS) / sum(P.CLASS_PRIORS)
        )
    else:
        classes = np.full(b, class_index(fingerprint_class))
    classes = classes.astype(np.int64)
    scale = min(h / P.MASTER_SHAPE[0], w / P.MASTER_SHAPE[1])
    semi = (
        np.stack(
            [rng.uniform(*P.SILHOUETTE_SEMI_X, b), rng.uniform(*P.SILHOUETTE_SEMI_Y, b)], axis=1
        )
        * scale
    )
    centre = np.stack([np.full(b, w / 2.0), np.full(b, h / 2.0)], axis=1)
    tilt = rng.uniform(-P.GLOBAL_ROTATION, P.GLOBAL_ROTATION, b)

    # Singular points in the finger frame (relative to the pad centre, before tilt).
    core = np.stack(
        [
            rng.uniform(*P.CORE_OFFSET_X, b) * semi[:, 0],
            rng.uniform(*P.CORE_OFFSET_Y, b) * semi[:, 1],
        ],
        axis=1,
    )
    local = np.zeros((b, SLOTS, 2))
    sign = np.zeros((b, SLOTS))
    side = np.where(classes == P.CLASSES.index("left_loop"), 1.0, -1.0)
    loop_delta = np.stack(
        [side * rng.uniform(*P.LOOP_DELTA_DX, b), rng.uniform(*P.LOOP_DELTA_DY, b)], axis=1
    )
    tented_delta = np.stack(
        [rng.uniform(*P.TENTED_DELTA_DX, b), rng.uniform(*P.TENTED_DELTA_DY, b)], axis=1
    )
    sep_angle = rng.uniform(0, np.pi, b)
    sep = rng.uniform(*P.WHORL_CORE_SEPARATION, b) / 2.0
    offset = np.stack([sep * np.cos(sep_angle), sep * np.sin(sep_angle)], axis=1)
    whorl_d1 = np.stack([-rng.uniform(*P.WHORL_DELTA_DX, b), rng.uniform(*P.WHORL_DELTA_DY, b)], 1)
    whorl_d2 = np.stack([rng.uniform(*P.WHORL_DELTA_DX, b), rng.uniform(*P.WHORL_DELTA_DY, b)], 1)

    is_loop = np.isin(classes, [P.CLASSES.index("left_loop"), P.CLASSES.index("right_loop")])
    is_tent = classes == P.CLASSES.index("tented_arch")
    is_whorl = classes == P.CLASSES.index("whorl")
    two = (is_loop | is_tent)[:, None]
    local[:, 0] = np.where(is_whorl[:, None], core + offset, np.where(two, core, 0.0))
    local[:, 1] = np.where(
        is_whorl[:, None],
        core - offset,
        np.where(is_loop[:, None], core + loop_delta, core + tented_delta),
    )
    local[:, 2] = np.where(is_whorl[:, None], core + whorl_d1, 0.0)
    local[:, 3] = np.where(is_whorl[:, None], core + whorl_d2, 0.0)
    sign[:, 0] = np.where(is_whorl | is_loop | is_tent, -1.0, 0.0)
    sign[:, 1] = np.where(is_whorl, -1.0, np.where(is_loop | is_tent, 1.0, 0.0))
    sign[:, 2] = np.where(is_whorl, 1.0, 0.0)
    sign[:, 3] = np.where(is_whorl, 1.0, 0.0)
    local *= scale if scale < 1 else 1.0

    c, s = np.cos(tilt)[:, None], np.sin(tilt)[:, None]
    points = np.empty_like(local)
    points[..., 0] = centre[:, None, 0] + local[..., 0] * c - local[..., 1] * s
    points[..., 1] = centre[:, None, 1] + local[..., 0] * s + local[..., 1] * c

    k = P.VG_HARMONICS
    harmonic = np.arange(1, k + 1)
    warp_a = rng.uniform(-1.0, 1.0, (b, SLOTS, k)) * P.VG_AMPLITUDE / harmonic
    if not correction:
        warp_a[:] = 0.0
    warp_phase = rng.uniform(0, 2 * np.pi, (b, SLOTS, k))
    is_arch = classes == P.CLASSES.index("arch")
    flow = FlowModel(
        points=points,
        sign=sign,
        warp_a=warp_a,
        warp_phase=warp_phase,
        tilt=tilt,
        arch_slope=np.where(is_arch, rng.uniform(*P.ARCH_RISE, b), 0.0),
        arch_width=rng.uniform(*P.ARCH_WIDTH, b),
        centre=centre,
    )
    hs = P.SILHOUETTE_HARMONICS
    period = np.clip(
        rng.normal(P.PERIOD_MEAN, P.PERIOD_SPREAD, b), P.PERIOD_LIMITS[0], P.PERIOD_LIMITS[1]
    )
    return Layout(
        classes=classes,
        flow=flow,
        semi=semi,
        wobble_a=rng.uniform(-1.0, 1.0, (b, hs))
        * P.SILHOUETTE_WOBBLE
        / np.sqrt(np.arange(1, hs + 1)),
        wobble_phase=rng.uniform(0, 2 * np.pi, (b, hs)),
        period=period,
    )
