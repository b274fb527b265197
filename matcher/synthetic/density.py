"""Ridge density: the local ridge period (px) over the master canvas."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from matcher.synthetic import params as P
from matcher.synthetic.layout import Layout
from matcher.synthetic.noise import smooth_field

F32 = npt.NDArray[np.float32]


def period_map(layout: Layout, rng: np.random.Generator, shape: tuple[int, int]) -> F32:
    """Period (H, W) float32 of finger 0 of ``layout``: its mean period, a smooth random
    variation, and slightly wider ridges towards the flexion crease (bottom of the pad)."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    tilt = float(layout.flow.tilt[0])
    cx, cy = layout.flow.centre[0]
    v = (-(xs - cx) * np.sin(tilt) + (ys - cy) * np.cos(tilt)) / layout.semi[0, 1]
    period = (
        layout.period[0]
        + P.PERIOD_VARIATION * smooth_field(rng, shape, P.PERIOD_SMOOTHING)
        + P.PERIOD_BOTTOM_EXTRA * np.clip(v, 0.0, 1.0) ** 2
    )
    return np.clip(period, *P.PERIOD_LIMITS).astype(np.float32)
