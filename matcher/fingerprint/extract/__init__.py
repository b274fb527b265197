"""Fingerprint minutiae extraction (SourceAFIS-style: one stage per module).

Read in order: :mod:`.params` (every tunable), :mod:`.resample`, :mod:`.normalize`,
:mod:`.orientation`, :mod:`.segmentation`, :mod:`.frequency`, :mod:`.enhancement`,
:mod:`.binarization`, :mod:`.thinning`, :mod:`.minutiae`, :mod:`.filtering`, :mod:`.quality`,
:mod:`.pipeline`.
"""

from __future__ import annotations

import math
import os

import numpy as np

from matcher.fingerprint.extract import params
from matcher.fingerprint.extract.pipeline import Stages, run
from matcher.fingerprint.template import FingerprintTemplate
from matcher.imageio import MAX_SIDE, SideLimit, load_grayscale

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

    The resolution is ``ppi`` if given, else the file's metadata, else 500 ppi. An image larger
    than a single finger at that resolution is ``too_large`` from its header, before decoding.
    """
    decoded = load_grayscale(source, side_limit=_side_limit(ppi))
    res = _resolution(ppi, decoded.ppi)
    return extract(decoded.pixels, ppi=res, finger_position=finger_position)


def _resolution(ppi: float | None, file_ppi: float | None) -> float:
    return ppi if ppi is not None else file_ppi if file_ppi is not None else params.TARGET_PPI


def _side_limit(ppi: float | None) -> SideLimit:
    """The largest input side that :func:`.resample.to_working_resolution` accepts (its
    ``params.MAX_SIDE`` at 500 ppi, scaled by ppi/500, with its rounding)."""

    def limit(file_ppi: float | None) -> int:
        res = _resolution(ppi, file_ppi)
        if not (math.isfinite(res) and params.MIN_PPI <= res <= params.MAX_PPI):
            return MAX_SIDE  # refused as bad_resolution after decoding, as before
        scale = params.TARGET_PPI / res
        side = math.floor((params.MAX_SIDE + 1) / scale)
        while side > 0 and round(side * scale) > params.MAX_SIDE:
            side -= 1
        return side

    return limit
