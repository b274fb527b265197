"""Values of ANSI/NIST-ITL tagged fields (traditional encoding) and the reader's error.

A field value is a list of subfields separated by RS (0x1E), each a list of information items
separated by US (0x1F). Every module of the reader raises :class:`AnsiNistError`, whose
``reason`` says what went wrong (see :mod:`node.formats.ansi_nist`).
"""

from __future__ import annotations

import math
from enum import IntEnum

from matcher.errors import TemplateFormatError

FS, GS, RS, US = b"\x1c", b"\x1d", b"\x1e", b"\x1f"
MM_PER_INCH = 25.4
#: Fields every tagged record has in the same place: its IDC, and its image (types 10-17).
IDC, IMAGE_DATA = 2, 999
#: Digits of the largest number field read (leading zeros aside): no count, size, resolution
#: or code of the standard needs more, and a longer one is damaged or hostile (it would not fit
#: the readers' integer arrays, and past 4300 digits Python refuses to parse it).
MAX_NUMBER_DIGITS = 9
#: Resolutions read (ppi, 1.011 NSR or 14.008/14.009): outside them a field is damaged or hostile
#: (the extractor takes 100-5000 ppi, templates at most 10 000; PNG cannot state 2**32).
PPI_RANGE = (100, 10_000)


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
    """A non-negative decimal integer item of at most ``MAX_NUMBER_DIGITS`` digits;
    ``bad_record`` naming ``what`` (never quoting the value) otherwise."""
    text = value.strip(b" ")
    if not text.isdigit():
        raise error(f"{what} is not a non-negative integer", "bad_record")
    if len(text.lstrip(b"0")) > MAX_NUMBER_DIGITS:
        raise error(f"{what} has more than {MAX_NUMBER_DIGITS} digits", "bad_record")
    return int(text)


def checked_ppi(ppi: float, what: str) -> int:
    """``ppi`` in whole ppi; ``bad_record`` naming ``what`` unless finite and in ``PPI_RANGE``."""
    low, high = PPI_RANGE
    if not (math.isfinite(ppi) and low <= round(ppi) <= high):
        raise error(f"{what}: resolution outside {low}..{high} ppi", "bad_record")
    return round(ppi)


def ppmm_to_ppi(value: bytes | None) -> int | None:
    """The Type-1 native scanning resolution (1.011 NSR, pixels per millimetre: ``19.69``) in
    whole ppi; None when absent or zero (a transaction without images writes ``00.00``)."""
    if value is None:
        return None
    try:
        ppmm = float(first_item(value))
    except ValueError as exc:
        raise error("1.011 NSR is not a number", "bad_record") from exc
    return None if ppmm == 0 else checked_ppi(ppmm * MM_PER_INCH, "1.011 NSR")
