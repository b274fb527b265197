"""Shared fixtures of the face tests: the public-domain astronaut portrait, models loaded once."""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
import pytest
import skimage.data
from PIL import Image

from matcher.face import models
from matcher.face.pipeline import FaceExtraction, extract_from_pixels


def encode(arr: np.ndarray, fmt: str = "PNG", mode: str | None = None, **save: object) -> bytes:
    """Encode pixels with Pillow (``mode`` converts first, e.g. CMYK, P)."""
    img = Image.fromarray(arr)
    if mode is not None:
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


@pytest.fixture(scope="session")
def astronaut() -> npt.NDArray[np.uint8]:
    """skimage's astronaut (Eileen Collins, NASA, public domain): uint8 (512, 512, 3)."""
    models.warm_up("hog")
    return np.ascontiguousarray(skimage.data.astronaut())


@pytest.fixture(scope="session")
def upright(astronaut: npt.NDArray[np.uint8]) -> FaceExtraction:
    """The reference extraction of the unmodified portrait."""
    return extract_from_pixels(astronaut)
