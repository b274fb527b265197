"""Search-side structures: one prepared template, and a packed block of them.

Shapes: ``m`` minutiae of one template, ``nb`` templates in a block, ``M`` the block's padded
row length, ``d`` the descriptor length (``params`` cells x sections, 128 by default).

These are plain numpy arrays on purpose: the gallery stores the arrays of a
:class:`PackedTemplates` in memory-mapped segment files and hands them back block by block to
:func:`matcher.fingerprint.match.kernel.score_many`. ``FORMAT``/``VERSION`` name the layout and
the descriptor definition; anything that changes a descriptor value bumps ``VERSION``, and
blocks of another format or version are refused.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from matcher.errors import TemplateFormatError
from matcher.fingerprint.match import params

FORMAT = "bdx-mcc-lssr"
VERSION = 1

#: Columns of the geometry arrays: x (px, right), y (px, *up*: minus the image row, so that
#: the ISO angle θ is an ordinary counter-clockwise angle), cos θ, sin θ (the kernel needs only
#: these, and plain arithmetic on them is bit-reproducible where trigonometry may not be).
GEOMETRY_COLUMNS = ("x", "y_up", "cos", "sin")
#: Orientation code of a background block (``matcher.fingerprint.template.FIELD_BACKGROUND``),
#: also the padding of packed fields.
FIELD_PAD = 255


@dataclass(frozen=True, eq=False)
class SearchTemplate:
    """One template prepared for comparison (built by :func:`prepare`; not persisted as such).

    * ``descriptors`` (m, d) float32: cylinder cell values, integers 0..QUANT_LEVELS (invalid
      cylinders are all zero).
    * ``inv_norm`` (m,) float32: 1 / Euclidean norm of each descriptor, 0 for invalid ones.
    * ``geometry`` (m, 4) float32: see :data:`GEOMETRY_COLUMNS`.
    * ``field`` (rows, cols) uint8 or None: the template's orientation field
      (``FingerprintTemplate.orientation``: degrees 0..179, 255 background); None when the
      template has none (the orientation term is then 0).
    """

    descriptors: npt.NDArray[np.float32]
    inv_norm: npt.NDArray[np.float32]
    geometry: npt.NDArray[np.float32]
    format: str = FORMAT
    version: int = VERSION
    field: npt.NDArray[np.uint8] | None = None

    @property
    def count(self) -> int:
        return int(self.descriptors.shape[0])


@dataclass(frozen=True, eq=False)
class PackedTemplates:
    """A block of ``nb`` prepared templates padded to a common row length ``M``.

    * ``descriptors`` (nb, M, d) float32, or uint8 as galleries store them (the same integer
      cell values; :mod:`matcher.fingerprint.match.products`), padded rows zero.
    * ``inv_norm`` (nb, M) float32, padded rows zero.
    * ``geometry`` (nb, M, 4) float32, padded rows zero.
    * ``counts`` (nb,) int32: real minutiae of each template (rows ``>= counts[b]`` are padding).
    * ``field`` (nb, rows, cols) uint8 or None: orientation fields padded with
      :data:`FIELD_PAD` (255, background) to the block's largest; a template without a field
      is all background; None = no template of the block has one.

    Scores never depend on ``M``, on the field padding or on the other templates of the block.
    """

    descriptors: npt.NDArray[np.float32] | npt.NDArray[np.uint8]
    inv_norm: npt.NDArray[np.float32]
    geometry: npt.NDArray[np.float32]
    counts: npt.NDArray[np.int32]
    format: str = FORMAT
    version: int = VERSION
    field: npt.NDArray[np.uint8] | None = None

    def __post_init__(self) -> None:
        check_packed(self)

    def __len__(self) -> int:
        return int(self.counts.shape[0])


@functools.cache
def descriptor_length() -> int:
    """d: in-circle cells of the NS x NS grid times ND sections."""
    return int(cell_offsets().shape[0]) * params.ND


@functools.cache
def cell_offsets() -> npt.NDArray[np.float64]:
    """(C, 2) centres of the in-circle cells in a minutia's frame (px, x along its direction)."""
    side = 2.0 * params.RADIUS / params.NS
    c = (np.arange(params.NS) - (params.NS - 1) / 2.0) * side
    gx, gy = np.meshgrid(c, c, indexing="ij")
    keep = np.hypot(gx, gy) <= params.RADIUS
    return np.stack([gx[keep], gy[keep]], axis=1)


def check_packed(p: PackedTemplates) -> None:
    """Raise :class:`TemplateFormatError` unless the block's arrays are consistent."""
    if p.format != FORMAT or p.version != VERSION:
        raise TemplateFormatError(
            f"packed block is {p.format} v{p.version}; this matcher reads {FORMAT} v{VERSION}",
            reason="incompatible_template_version",
        )
    d = descriptor_length()
    if p.descriptors.ndim != 3 or p.descriptors.shape[2] != d:
        raise TemplateFormatError(f"descriptors must be (nb, M, {d}), got {p.descriptors.shape}")
    nb, m = p.descriptors.shape[:2]
    if m < params.N_RELAX:
        raise TemplateFormatError(
            f"row length {m} is below N_RELAX = {params.N_RELAX}", reason="bad_row_length"
        )
    shapes = {
        "inv_norm": (p.inv_norm, (nb, m)),
        "geometry": (p.geometry, (nb, m, 4)),
        "counts": (p.counts, (nb,)),
    }
    for name, (arr, shape) in shapes.items():
        if arr.shape != shape:
            raise TemplateFormatError(f"{name} must have shape {shape}, got {arr.shape}")
    if p.descriptors.dtype not in (np.float32, np.uint8):
        raise TemplateFormatError(f"descriptors must be float32 or uint8: {p.descriptors.dtype}")
    if p.inv_norm.dtype != np.float32:
        raise TemplateFormatError(f"inv_norm must be float32, got {p.inv_norm.dtype}")
    if p.geometry.dtype != np.float32 or p.counts.dtype != np.int32:
        raise TemplateFormatError("geometry must be float32 and counts int32")
    if nb and (p.counts.min() < 0 or p.counts.max() > m):
        raise TemplateFormatError("counts out of range for the block's row length")
    if p.field is not None and (
        p.field.ndim != 3 or p.field.shape[0] != nb or p.field.dtype != np.uint8
    ):
        raise TemplateFormatError(f"field must be uint8 (nb, rows, cols), got {p.field.shape}")


def check_search_template(t: SearchTemplate) -> None:
    if not isinstance(t, SearchTemplate):
        raise TemplateFormatError(f"expected a SearchTemplate, got {type(t).__name__}")
    if t.format != FORMAT or t.version != VERSION:
        raise TemplateFormatError(
            f"template is {t.format} v{t.version}; this matcher reads {FORMAT} v{VERSION}",
            reason="incompatible_template_version",
        )
    m = t.descriptors.shape[0]
    if t.descriptors.shape != (m, descriptor_length()) or t.descriptors.dtype != np.float32:
        raise TemplateFormatError(f"descriptors must be float32 (m, {descriptor_length()})")
    if t.inv_norm.shape != (m,) or t.geometry.shape != (m, 4):
        raise TemplateFormatError("inv_norm/geometry do not match the descriptors")
    if t.field is not None and (t.field.ndim != 2 or t.field.dtype != np.uint8):
        raise TemplateFormatError("field must be a uint8 (rows, cols) array")


def pack(templates: Sequence[SearchTemplate], row_length: int | None = None) -> PackedTemplates:
    """Pad ``templates`` into one block (arrays documented in :class:`PackedTemplates`).

    ``row_length`` (M) defaults to the largest count rounded up to PAD_MULTIPLE, and is never
    below N_RELAX (the kernel selects that many rows per template).
    """
    for t in templates:
        check_search_template(t)
    nb = len(templates)
    longest = max((t.count for t in templates), default=0)
    m = max(longest, params.N_RELAX)
    m = -(-m // params.PAD_MULTIPLE) * params.PAD_MULTIPLE
    if row_length is not None:
        if row_length < max(longest, params.N_RELAX):
            raise TemplateFormatError(
                f"row_length {row_length} is below {max(longest, params.N_RELAX)}",
                reason="bad_row_length",
            )
        m = row_length
    d = descriptor_length()
    desc = np.zeros((nb, m, d), np.float32)
    inv = np.zeros((nb, m), np.float32)
    geo = np.zeros((nb, m, 4), np.float32)
    counts = np.zeros(nb, np.int32)
    for b, t in enumerate(templates):
        n = t.count
        desc[b, :n] = t.descriptors
        inv[b, :n] = t.inv_norm
        geo[b, :n] = t.geometry
        counts[b] = n
    return PackedTemplates(desc, inv, geo, counts, field=pack_fields([t.field for t in templates]))


def pack_fields(fields: Sequence[npt.NDArray[np.uint8] | None]) -> npt.NDArray[np.uint8] | None:
    """(nb, rows, cols) uint8: the fields padded with FIELD_PAD to the largest (a missing one
    all FIELD_PAD); None when none is given."""
    present = [f for f in fields if f is not None]
    if not present:
        return None
    rows = max(max(f.shape[0] for f in present), 1)
    cols = max(max(f.shape[1] for f in present), 1)
    out = np.full((len(fields), rows, cols), FIELD_PAD, np.uint8)
    for b, f in enumerate(fields):
        if f is not None:
            out[b, : f.shape[0], : f.shape[1]] = f
    return out
