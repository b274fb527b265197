"""Typed errors of the gallery store (all are :class:`matcher.errors.MatcherError`)."""

from __future__ import annotations

from matcher.errors import GalleryError, TemplateFormatError


class GalleryCorruptError(GalleryError):
    """The manifest or a segment file failed its checksum, does not parse, is missing or
    cannot be read (no permission, an I/O error), or a gallery's folder holds what no gallery
    would (exit code 7: the node's storage, not the input, is at fault)."""

    exit_code = 7
    default_reason = "gallery_corrupt"


class GalleryLockedError(GalleryError):
    """Another process holds the gallery's writer lock (exit code 7: busy storage)."""

    exit_code = 7
    default_reason = "gallery_locked"


class UnknownReferenceError(GalleryError):
    """No live record has this reference."""

    default_reason = "unknown_reference"


class DuplicateReferenceError(GalleryError):
    """A record with this reference already exists (or the batch repeats it)."""

    default_reason = "duplicate_reference"


class IncompatibleFormatError(TemplateFormatError):
    """The template format or version differs from the gallery's; it is never compared."""

    default_reason = "incompatible_format"


__all__ = [
    "DuplicateReferenceError",
    "GalleryCorruptError",
    "GalleryError",
    "GalleryLockedError",
    "IncompatibleFormatError",
    "TemplateFormatError",
    "UnknownReferenceError",
]
