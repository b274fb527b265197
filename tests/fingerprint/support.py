"""Template helpers shared by the fingerprint and search tests."""

from __future__ import annotations

import numpy as np

from matcher.fingerprint.template import FingerprintTemplate


def cut_to(
    t: FingerprintTemplate, w: int, h: int, orientation: np.ndarray | None
) -> FingerprintTemplate:
    """``t`` as if its image were only ``w`` x ``h`` (minutiae outside dropped), with the
    orientation field ``orientation`` ((h // 16, w // 16) uint8 codes, or None)."""
    keep = (t.x < w) & (t.y < h)
    return FingerprintTemplate(
        x=t.x[keep],
        y=t.y[keep],
        angle=t.angle[keep],
        kind=t.kind[keep],
        quality=t.quality[keep],
        width=w,
        height=h,
        finger_position=t.finger_position,
        orientation=orientation,
    )
