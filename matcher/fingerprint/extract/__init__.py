"""Fingerprint minutiae extraction (SourceAFIS-style: one stage per module).

Read in order: :mod:`.params` (every tunable), :mod:`.resample`, :mod:`.normalize`,
:mod:`.orientation`, :mod:`.segmentation`, :mod:`.frequency`, :mod:`.enhancement`,
:mod:`.binarization`, :mod:`.thinning`, :mod:`.minutiae`, :mod:`.filtering`, :mod:`.quality`,
:mod:`.pipeline`.
"""

from __future__ import annotations

import os

import numpy as np

from matcher.fingerprint.extract import params
from matcher.fingerprint.extract.pipeline import Stages, run
from matcher.fingerprint.template import FingerprintTemplate
from matcher.imageio import load_grayscale

__all__ = ["Stages", "extract", "extract_file", "params", "run"]


def extract(
    image: np.ndarray, *, ppi: float = 500.0, finger_position: int = 0
) -> FingerprintTemplate:
    """Minutiae template of a (H, W) uint8 grayscale image with dark ridges scanned at ``ppi``.

    Raises ``ImageError`` for unusable arrays and ``QualityError`` (``no_ridge_area``,
    ``too_few_minutiae``) when no trustworthy template can be made.
    """
    return run(image, ppi=ppi, finger_position=finger_position).template


def extract_file(
    source: bytes | str | os.PathLike[str], *, ppi: float | None = None, finger_position: int = 0
) -> FingerprintTemplate:
    """Decode an image file (bytes or path) and extract it.

    The resolution is ``ppi`` if given, else the file's metadata, else 500 ppi.
    """
    decoded = load_grayscale(source)
    res = ppi if ppi is not None else decoded.ppi if decoded.ppi is not None else 500.0
    return extract(decoded.pixels, ppi=res, finger_position=finger_position)
