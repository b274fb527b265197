"""Durable gallery store: memory-mapped, crash-consistent segments of fixed-shape templates.

See :mod:`matcher.gallery.store` for the on-disk protocol.
"""

from matcher.gallery.errors import (
    DuplicateReferenceError,
    GalleryCorruptError,
    GalleryLockedError,
    IncompatibleFormatError,
    UnknownReferenceError,
)
from matcher.gallery.params import FACE_POSITION
from matcher.gallery.schema import FieldSpec, GallerySchema, RecordBatch
from matcher.gallery.store import Block, Gallery, GalleryStats, Record

__all__ = [
    "FACE_POSITION",
    "Block",
    "DuplicateReferenceError",
    "FieldSpec",
    "Gallery",
    "GalleryCorruptError",
    "GalleryLockedError",
    "GallerySchema",
    "GalleryStats",
    "IncompatibleFormatError",
    "Record",
    "RecordBatch",
    "UnknownReferenceError",
]
