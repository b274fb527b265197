"""What a gallery holds: its modality, template format/version and named fixed-shape arrays.

A gallery is one modality and one template format/version. Each record is an opaque unique
``reference``, a ``subject`` reference, a finger ``position`` (ISO codes 0..10, or
:data:`~matcher.gallery.params.FACE_POSITION` for faces) and one row of every field array.

A field has a dtype and a per-record shape. A dimension given as ``-1`` is *ragged across
segments*: fixed inside one segment (e.g. minutiae padded to that batch's maximum) but free to
differ between segments; compaction pads it with the field's ``pad`` value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from matcher.gallery import params
from matcher.gallery.errors import (
    DuplicateReferenceError,
    IncompatibleFormatError,
    TemplateFormatError,
)

MODALITIES = ("fingerprint", "face")


@dataclass(frozen=True)
class FieldSpec:
    """One named array of a record: dtype (numpy name), per-record shape, padding value."""

    dtype: str
    shape: tuple[int, ...] = ()
    pad: float = 0

    def __post_init__(self) -> None:
        np.dtype(self.dtype)  # raises TypeError on an unknown dtype
        if any(d < -1 or d == 0 for d in self.shape):
            raise TemplateFormatError(f"bad field shape {self.shape}", reason="bad_schema")

    def matches(self, shape: tuple[int, ...]) -> bool:
        """True when a per-record ``shape`` fits this spec (``-1`` dims take any size)."""
        return len(shape) == len(self.shape) and all(
            s == d or d == -1 for s, d in zip(shape, self.shape, strict=True)
        )

    def to_json(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": list(self.shape), "pad": self.pad}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> FieldSpec:
        return cls(str(obj["dtype"]), tuple(int(d) for d in obj["shape"]), float(obj["pad"]))


@dataclass(frozen=True)
class GallerySchema:
    """Modality, template format and version, and the record's named arrays."""

    modality: str
    format: str
    format_version: int
    fields: Mapping[str, FieldSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise TemplateFormatError(f"unknown modality {self.modality!r}", reason="bad_schema")
        for name in self.fields:
            if not name.isidentifier():
                raise TemplateFormatError(f"bad field name {name!r}", reason="bad_schema")

    def check_format(self, fmt: str, version: int) -> None:
        """Raise :class:`IncompatibleFormatError` unless ``fmt``/``version`` are this gallery's."""
        if (fmt, version) != (self.format, self.format_version):
            raise IncompatibleFormatError(
                f"template format {fmt} v{version} cannot enter a gallery of "
                f"{self.format} v{self.format_version}"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "modality": self.modality,
            "format": self.format,
            "format_version": self.format_version,
            "fields": {k: v.to_json() for k, v in sorted(self.fields.items())},
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> GallerySchema:
        return cls(
            str(obj["modality"]),
            str(obj["format"]),
            int(obj["format_version"]),
            {str(k): FieldSpec.from_json(v) for k, v in obj["fields"].items()},
        )


def encode_references(values: object, what: str) -> np.ndarray:
    """UTF-8 encode references to a fixed-width ``S`` array (n,); refuse empty or too long."""
    items = list(values)  # type: ignore[call-overload]
    if not all(isinstance(v, str) for v in items):
        raise TemplateFormatError(f"{what}: references must be strings", reason="bad_reference")
    raw = [v.encode("utf-8") for v in items]
    if any(len(r) == 0 or len(r) > params.MAX_REFERENCE_BYTES for r in raw):
        raise TemplateFormatError(
            f"{what}: references must be 1..{params.MAX_REFERENCE_BYTES} UTF-8 bytes",
            reason="bad_reference",
        )
    if any(r.endswith(b"\0") for r in raw):
        raise TemplateFormatError(f"{what}: trailing NUL in a reference", reason="bad_reference")
    width = max((len(r) for r in raw), default=1)
    return np.array(raw, dtype=f"S{width}")


@dataclass(frozen=True, eq=False)
class RecordBatch:
    """Records to append: references (n,), subjects (n,), positions (n,), field arrays (n, ...).

    Construction validates everything against nothing but itself; :meth:`checked` validates
    against a gallery schema. ``format``/``format_version`` are those of the templates.
    """

    references: np.ndarray
    subjects: np.ndarray
    positions: np.ndarray
    arrays: Mapping[str, np.ndarray]
    format: str
    format_version: int

    @classmethod
    def build(
        cls,
        references: list[str],
        subjects: list[str],
        positions: object,
        arrays: Mapping[str, object],
        *,
        format: str,
        format_version: int,
    ) -> RecordBatch:
        refs = encode_references(references, "reference")
        subs = encode_references(subjects, "subject")
        n = refs.shape[0]
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        if subs.shape[0] != n or pos.shape[0] != n:
            raise TemplateFormatError("references, subjects, positions differ in length")
        if len(np.unique(refs)) != n:
            raise DuplicateReferenceError("the batch repeats a reference")
        arrs = {k: np.asarray(v) for k, v in arrays.items()}
        for name, arr in arrs.items():
            if arr.ndim == 0 or arr.shape[0] != n:
                raise TemplateFormatError(f"field {name}: expected {n} rows, got {arr.shape}")
        return cls(refs, subs, pos.astype(np.int8), arrs, format, int(format_version))

    def __len__(self) -> int:
        return int(self.references.shape[0])

    def checked(self, schema: GallerySchema) -> dict[str, np.ndarray]:
        """The field arrays cast to the schema's dtypes; typed errors on any mismatch."""
        schema.check_format(self.format, self.format_version)
        if set(self.arrays) != set(schema.fields):
            raise TemplateFormatError(
                f"fields {sorted(self.arrays)} differ from the gallery's {sorted(schema.fields)}",
                reason="bad_fields",
            )
        pos = self.positions
        if schema.modality == "face":
            if np.any(pos != params.FACE_POSITION):
                raise TemplateFormatError("face records take position FACE_POSITION")
        elif np.any((pos < 0) | (pos > params.MAX_FINGER_POSITION)):
            raise TemplateFormatError("finger positions must be ISO codes 0..10")
        out = {}
        for name, spec in schema.fields.items():
            arr = self.arrays[name]
            if not spec.matches(arr.shape[1:]):
                raise TemplateFormatError(
                    f"field {name}: per-record shape {arr.shape[1:]} is not {spec.shape}",
                    reason="bad_fields",
                )
            if not np.can_cast(arr.dtype, spec.dtype, casting="same_kind"):
                raise TemplateFormatError(
                    f"field {name}: dtype {arr.dtype} is not {spec.dtype}", reason="bad_fields"
                )
            out[name] = np.ascontiguousarray(arr, dtype=spec.dtype)
        return out
