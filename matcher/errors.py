"""Typed errors of the matcher package.

Every error carries a short machine-readable ``reason`` (stable, snake_case) and a human
message. The CLI turns them into a one-line message and the exit code of the class; the
HTTP service turns them into a 4xx body with the reason.
"""

from __future__ import annotations


class BdxError(Exception):
    """Root of every error bdx raises on purpose (user errors, bad input, refusals).

    It lives here because ``matcher`` is the bottom layer of the stack and this module imports
    nothing; ``certs``, ``policy`` and ``node`` derive their own bases from it. ``exit_code``
    is what the CLI exits with (see README, "Exit codes").
    """

    exit_code = 1
    default_reason = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or self.default_reason

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.reason


class MatcherError(BdxError):
    """Base of all matcher errors: bad input data (exit code 3)."""

    exit_code = 3
    default_reason = "matcher_error"


class ImageError(MatcherError):
    """The input is not a usable image (not an image, truncated, absurd size, bad mode)."""

    default_reason = "bad_image"


class QualityError(MatcherError):
    """The image is an image, but not good enough to make a template from."""

    default_reason = "low_quality"


class TemplateFormatError(MatcherError):
    """A template or record is malformed, or of a format/version this node does not compare."""

    default_reason = "bad_template"


class GalleryError(MatcherError):
    """The gallery store refused an operation (unknown reference, incompatible format, I/O)."""

    default_reason = "gallery_error"
