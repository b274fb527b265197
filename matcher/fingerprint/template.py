"""The persisted fingerprint template: a validated, immutable set of minutiae.

Conventions (shared by every stage, the ISO codec and the matcher):

* Coordinates are pixels of the image *at 500 ppi* (the extractor resamples first), origin at
  the top-left corner, ``x`` to the right, ``y`` down. Stored as float32 arrays of shape (n,).
* ``angle`` is the minutia direction in radians in ``[0, 2π)``, measured counter-clockwise from
  the positive x axis as ISO/IEC 19794-2 defines it (so with ``y`` pointing down, a direction
  ``θ`` points towards ``(cos θ, -sin θ)`` in image coordinates). An ending points from its
  end back along the ridge it terminates; a bifurcation points from the fork along the valley
  between its two arms (the dual of an ending), as in ISO/IEC 19794-2.
* ``kind``: uint8, :data:`ENDING` = 1, :data:`BIFURCATION` = 2, :data:`OTHER` = 0 (ISO codes).
* ``quality``: uint8 0–100 per minutia (ISO: 0 = not reported, 1 lowest, 100 highest).
* ``image_quality``: 0–100, the extractor's overall score (see ``matcher.fingerprint.quality``).

This type is what gets stored and exchanged. Search-side structures (descriptors, packed
arrays) are separate types built from it by the matcher.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from matcher.errors import TemplateFormatError

OTHER = 0
ENDING = 1
BIFURCATION = 2

#: Format/version tag of templates made by this code; search refuses to compare across tags.
FORMAT = "bdx-minutiae"
FORMAT_VERSION = 1
#: ISO/IEC 19794-2 stores coordinates in 14 bits.
MAX_COORDINATE = (1 << 14) - 1
MAX_MINUTIAE = 255

FloatArray = npt.NDArray[np.float32]
ByteArray = npt.NDArray[np.uint8]


def _as_array(values: object, dtype: type[np.generic], name: str, n: int | None) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise TemplateFormatError(f"{name}: not numeric ({exc})") from exc
    if arr.ndim != 1:
        raise TemplateFormatError(f"{name}: expected a 1-d array, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise TemplateFormatError(f"{name}: expected {n} values, got {arr.shape[0]}")
    arr = np.ascontiguousarray(arr)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class FingerprintTemplate:
    """Minutiae of one finger impression. Arrays have shape (n,); see the module docstring."""

    x: FloatArray
    y: FloatArray
    angle: FloatArray
    kind: ByteArray
    quality: ByteArray
    width: int
    height: int
    resolution_ppi: int = 500
    image_quality: int = 0
    finger_position: int = 0
    format: str = field(default=FORMAT)
    format_version: int = field(default=FORMAT_VERSION)

    def __post_init__(self) -> None:
        x = _as_array(self.x, np.float32, "x", None)
        n = x.shape[0]
        y = _as_array(self.y, np.float32, "y", n)
        angle = _as_array(self.angle, np.float32, "angle", n)
        kind = _as_array(self.kind, np.uint8, "kind", n)
        quality = _as_array(self.quality, np.uint8, "quality", n)
        for name, value in (("x", x), ("y", y), ("angle", angle)):
            if not np.all(np.isfinite(value)):
                raise TemplateFormatError(f"{name}: contains NaN or infinity")
        if n > MAX_MINUTIAE:
            raise TemplateFormatError(f"{n} minutiae; at most {MAX_MINUTIAE} are allowed")
        if not (0 < self.width <= MAX_COORDINATE and 0 < self.height <= MAX_COORDINATE):
            raise TemplateFormatError(f"image size {self.width}x{self.height} out of range")
        if n and (x.min() < 0 or y.min() < 0 or x.max() >= self.width or y.max() >= self.height):
            raise TemplateFormatError("a minutia lies outside the image")
        if n and (angle.min() < 0 or angle.max() >= 2 * np.pi):
            raise TemplateFormatError("angles must lie in [0, 2π)")
        if n and not np.all(np.isin(kind, (OTHER, ENDING, BIFURCATION))):
            raise TemplateFormatError("kind must be 0 (other), 1 (ending) or 2 (bifurcation)")
        if n and quality.max() > 100:
            raise TemplateFormatError("minutia quality must lie in 0..100")
        if not 0 <= self.image_quality <= 100:
            raise TemplateFormatError("image quality must lie in 0..100")
        if not 0 <= self.finger_position <= 10:
            raise TemplateFormatError("finger position must be an ISO finger code 0..10")
        if not 0 < self.resolution_ppi <= 10_000:
            raise TemplateFormatError(f"resolution {self.resolution_ppi} ppi out of range")
        for name, value in (("x", x), ("y", y), ("angle", angle), ("kind", kind)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "quality", quality)

    @property
    def count(self) -> int:
        return int(self.x.shape[0])

    def __len__(self) -> int:
        return self.count

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FingerprintTemplate):
            return NotImplemented
        scalars = (
            "width",
            "height",
            "resolution_ppi",
            "image_quality",
            "finger_position",
            "format",
            "format_version",
        )
        if any(getattr(self, s) != getattr(other, s) for s in scalars):
            return False
        arrays = ("x", "y", "angle", "kind", "quality")
        return all(np.array_equal(getattr(self, a), getattr(other, a)) for a in arrays)

    __hash__ = None  # type: ignore[assignment]
