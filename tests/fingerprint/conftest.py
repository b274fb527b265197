"""Fingerprint-like test images with known structure (no real biometric data).

Ridges follow a phase field: a plane wave of known period and direction plus "spiral" phase
singularities, each of which creates exactly one minutia at a known position (the phase
model of Larkin and Fletcher). Outside an elliptical contact region the image is blank paper.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

SIZE = 320
PERIOD = 9.0
#: Planted minutiae: (x, y, spiral sign). Spaced well beyond the pair filters' distances.
PLANTED = [
    (110, 100, 1),
    (200, 95, -1),
    (95, 170, -1),
    (160, 160, 1),
    (230, 175, 1),
    (120, 235, 1),
    (205, 240, -1),
    (160, 110, -1),
]


def ridge_image(
    *,
    planted: list[tuple[int, int, int]] | None = None,
    period: float = PERIOD,
    angle: float = 0.3,
    size: int = SIZE,
    seed: int = 0,
) -> npt.NDArray[np.uint8]:
    """(size, size) uint8: dark ridges of ``period`` at image angle ``angle`` (ridge direction),
    with the given spiral singularities, inside an ellipse on white, plus mild noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    normal = angle + np.pi / 2
    phase = 2 * np.pi / period * (xx * np.cos(normal) + yy * np.sin(normal))
    for px, py, s in planted if planted is not None else PLANTED:
        phase += s * np.arctan2(yy - py, xx - px)
    img = 128 + 90 * np.cos(phase)
    c = size / 2
    inside = ((xx - c) / (0.45 * size)) ** 2 + ((yy - c) / (0.47 * size)) ** 2 <= 1
    img = np.where(inside, img, 245.0)
    rng = np.random.default_rng(seed)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def finger_image() -> npt.NDArray[np.uint8]:
    return ridge_image()
