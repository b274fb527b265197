"""The persisted fingerprint template: a validated, immutable set of minutiae.

Conventions (shared by every stage, the ISO codec and the matcher):

* Coordinates are pixels of the image at ``resolution_ppi``, origin at the top-left corner,
  ``x`` to the right, ``y`` down; float32 arrays of shape (n,). The extractor's templates are
  at 500 ppi (it resamples first); a decoded record keeps its own resolution, and the matcher
  scales it to 500 ppi when it prepares its search template.
* ``angle`` is the minutia direction in radians in ``[0, 2π)``, measured counter-clockwise from
  the positive x axis as ISO/IEC 19794-2 defines it (so with ``y`` pointing down, a direction
  ``θ`` points towards ``(cos θ, -sin θ)`` in image coordinates). An ending points from its
  end back along the ridge it terminates; a bifurcation points from the fork along the valley
  between its two arms (the dual of an ending), as in ISO/IEC 19794-2.
* ``kind``: uint8, :data:`ENDING` = 1, :data:`BIFURCATION` = 2, :data:`OTHER` = 0 (ISO codes).
* ``quality``: uint8 0–100 per minutia (ISO: 0 = not reported, 1 lowest, 100 highest).
* ``image_quality``: 0–100, the extractor's overall score (see
  ``matcher.fingerprint.extract.quality``).
* ``orientation`` (optional, ``None`` when absent): the coarse ridge orientation field, a
  (rows, cols) uint8 array of one code per :data:`FIELD_BLOCK` x :data:`FIELD_BLOCK` px block
  of the 500 ppi image, block ``(r, c)`` covering image rows ``16 r .. 16 r + 15`` and columns
  ``16 c .. 16 c + 15`` (origin at the top-left corner, like the minutiae); ``rows = height //
  16``, ``cols = width // 16`` (a partial block at the right or bottom edge is not stored).
  Codes 0..179 are the ridge orientation in whole degrees, counter-clockwise from the positive
  x axis as the minutia angles (so with ``y`` down a code ``a`` runs along ``(cos a, -sin a)``),
  modulo 180; :data:`FIELD_BACKGROUND` = 255 marks a block outside the fingerprint's foreground
  (codes 180..254 are invalid). Templates from other sources (ISO records without the
  vendor-defined block, see ``iso19794_2``) have none, and the matcher's orientation term is
  then 0.

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
#: Side (px at 500 ppi) of the orientation field's blocks: about 2 ridge periods, the usual
#: block of orientation estimation; at 1 byte per block a FVC2002 image takes ~0.6 KB.
FIELD_BLOCK = 16
#: Orientation code of a block outside the foreground; 0..179 are angles in degrees.
FIELD_BACKGROUND = 255
FIELD_ANGLES = 180

FloatArray = npt.NDArray[np.float32]
ByteArray = npt.NDArray[np.uint8]


def _as_array(values: object, dtype: type[np.generic], name: str, n: int | None) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError):  # numpy's message quotes the value: name the field only
        raise TemplateFormatError(f"{name}: not numeric") from None
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
    orientation: ByteArray | None = None

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
        if self.orientation is not None:
            object.__setattr__(self, "orientation", self._checked_field(self.orientation))

    def _checked_field(self, values: object) -> ByteArray:
        arr = np.asarray(values)
        if arr.dtype != np.uint8:
            raise TemplateFormatError(f"orientation: expected uint8 codes, got {arr.dtype}")
        shape = field_shape(self.width, self.height)
        if arr.shape != shape:
            raise TemplateFormatError(
                f"orientation: expected {shape} blocks of {FIELD_BLOCK} px for a "
                f"{self.width}x{self.height} image, got {arr.shape}"
            )
        if arr.size and np.any((arr >= FIELD_ANGLES) & (arr != FIELD_BACKGROUND)):
            raise TemplateFormatError(
                f"orientation: codes must be 0..{FIELD_ANGLES - 1} or {FIELD_BACKGROUND}"
            )
        arr = np.ascontiguousarray(arr)
        arr.setflags(write=False)
        return arr

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
        if not all(np.array_equal(getattr(self, a), getattr(other, a)) for a in arrays):
            return False
        if self.orientation is None or other.orientation is None:
            return self.orientation is None and other.orientation is None
        return np.array_equal(self.orientation, other.orientation)

    __hash__ = None  # type: ignore[assignment]


def field_shape(width: int, height: int) -> tuple[int, int]:
    """(rows, cols) of the orientation field of a ``width`` x ``height`` image."""
    return height // FIELD_BLOCK, width // FIELD_BLOCK


def field_codes(
    theta: npt.NDArray[np.floating], mask: npt.NDArray[np.bool_], min_foreground: float
) -> ByteArray:
    """The orientation field of a (H, W) image: ``theta`` the ridge orientation in *image*
    angles (radians from +x towards +y, y down, modulo π) per pixel, ``mask`` the foreground.
    Each block's orientation is the mean of its foreground pixels' doubled-angle vectors; a
    block with less than ``min_foreground`` of its pixels in the foreground is background."""
    h, w = mask.shape
    rows, cols = field_shape(w, h)
    b = FIELD_BLOCK
    doubled = np.float32(2.0) * np.asarray(theta[: rows * b, : cols * b], np.float32)
    m = mask[: rows * b, : cols * b].astype(np.float32)

    def block_sums(v: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        return np.asarray(v.reshape(rows, b, cols, b).sum((1, 3), dtype=np.float64))

    # float32 trigonometry (8x faster than float64 here; the codes are whole degrees).
    c = block_sums(np.cos(doubled) * m)
    s = block_sums(np.sin(doubled) * m)
    share = block_sums(m) / (b * b)
    # Image angle (y down) -> counter-clockwise angle (y up): negate; then degrees mod 180.
    degrees = np.rint(np.degrees(-0.5 * np.arctan2(s, c))).astype(np.int64) % FIELD_ANGLES
    codes = np.where(share >= min_foreground, degrees, FIELD_BACKGROUND)
    return codes.astype(np.uint8)
