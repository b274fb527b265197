"""Values of ANSI/NIST-ITL tagged fields (traditional encoding) and the reader's error.

A field value is a list of subfields separated by RS (0x1E), each a list of information items
separated by US (0x1F). Every module of the reader raises :class:`AnsiNistError`, whose
``reason`` says what went wrong (see :mod:`node.formats.ansi_nist`).
"""

from __future__ import annotations

from enum import IntEnum

from matcher.errors import TemplateFormatError

FS, GS, RS, US = b"\x1c", b"\x1d", b"\x1e", b"\x1f"
MM_PER_INCH = 25.4
#: Fields every tagged record has in the same place: its IDC, and its image (types 10-17).
IDC, IMAGE_DATA = 2, 999


class T1(IntEnum):
    """Type-1 fields read: the records listed (CNT), native scanning resolution (NSR)."""

    CNT = 3
    NSR = 11


class T14(IntEnum):
    """Type-14 fields read: width, height, scale units and horizontal pixel scale,
    compression algorithm, finger position."""

    HLL = 6
    VLL = 7
    SLC = 8
    HPS = 9
    CGA = 11
    FGP = 13


class AnsiNistError(TemplateFormatError):
    """A transaction this reader cannot use."""


def error(message: str, reason: str) -> AnsiNistError:
    return AnsiNistError(message, reason=reason)


def subfields(value: bytes) -> list[list[bytes]]:
    """The information items of each subfield of a field value."""
    return [subfield.split(US) for subfield in value.split(RS)]


def first_item(value: bytes) -> bytes:
    return value.split(RS, 1)[0].split(US, 1)[0]


def number(value: bytes, what: str) -> int:
    """A non-negative decimal integer item; ``bad_record`` naming ``what`` otherwise."""
    text = value.strip(b" ")
    if not text.isdigit():
        raise error(f"{what} is not a non-negative integer ({value[:20]!r})", "bad_record")
    return int(text)


def ppmm_to_ppi(value: bytes | None) -> int | None:
    """A resolution in pixels per millimetre (Type-1 ``19.69``) in whole ppi; None when absent
    or zero (a transaction without images writes ``00.00``)."""
    if value is None:
        return None
    try:
        ppmm = float(first_item(value))
    except ValueError as exc:
        raise error(f"resolution {value[:20]!r} is not a number", "bad_record") from exc
    return round(ppmm * MM_PER_INCH) if ppmm > 0 else None
