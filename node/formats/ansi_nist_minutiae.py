"""Type-9 minutiae records of ANSI/NIST-ITL transactions as :class:`FingerprintTemplate`.

Two standard blocks are read, each into one template in the convention of
:mod:`matcher.fingerprint.template` (pixels, origin top-left, ISO directions), as
:mod:`matcher.fingerprint.iso19794_2` decodes ISO records:

INCITS 378 ("M1") block, fields 9.126–9.150 (ANSI/NIST-ITL 1-2011)
    9.128/9.129 image width/height (HLL/VLL) in pixels; 9.130 scale units (1 px per inch,
    2 px per cm) of 9.131 the horizontal pixel scale (the resolution); 9.134 finger position
    (FGP); 9.135 finger quality (FQD, subfields of quality 0–100, vendor, algorithm: the first
    quality is the template's image quality; 254/255, "not computed"/"failed", become 0);
    9.136 number of minutiae (NOM); 9.137 minutiae (FMD), a subfield per minutia of six items:
    index, x and y in pixels from the top-left corner, angle in units of 2° (0–179,
    counter-clockwise from the x axis, as ISO/IEC 19794-2), type (0 other, 1 ridge ending,
    2 bifurcation: the template's codes), quality (1–100, 0 none). Read as they are, like an
    ISO record: pixels at the stated resolution. 9.126/9.127 (CBEFF, capture equipment),
    9.133 (view), 9.138–9.141 (ridge counts, cores, deltas) have no place in a template.
Legacy NIST block, fields 9.005–9.012 (ANSI/NIST-ITL 1-2007, still valid in 2011 data)
    9.006 finger position (FGP); 9.010 number of minutiae (NMN); 9.012 minutiae and ridge
    counts (MRC), a subfield per minutia: index, ``XXXXYYYYTTT`` (x and y in units of 0.01 mm
    from the *lower*-left corner, angle in whole degrees, counter-clockwise), quality (0
    manually encoded, 1 not given, 2 best to 63 worst), type (A ridge ending, B bifurcation,
    C compound, D undetermined), then ridge counts ``index,count`` (not kept). NIST's angle
    points the opposite way to ISO/INCITS 378 (out of the ridge ending or bifurcation valley;
    NBIS ``fmr2an2k`` writes ``(2 * m1_angle + 180) % 360``), so 180° is added back. The record
    states no image: a Type-4/14 image of the same IDC in the transaction gives the pixel grid
    (its size and resolution; y = height - 1 - Y, as ``fmr2an2k`` writes it; a minutia less
    than one unit past the edge, as a rounding writer leaves it, is put on it); without one the
    template is at 500 ppi on the minutiae's bounding frame (the unknown vertical offset is a
    translation, which the matcher ignores). Qualities map onto 1–100 (2 -> 100, 63 -> 1);
    0 and 1 become 0 ("not reported"). C and D become "other".

Finger positions 0–10 are the ISO codes; other codes (multi-finger, palm) become 0 (unknown).
Field 9.004 (FMT, "S" legacy / "U" other) is not trusted: blocks are found by their fields.
Other field ranges are vendor feature sets (FBI/IAFIS 9.013–9.030, Cogent 9.031–9.055,
Motorola 9.056–9.070, MorphoTrak 9.071–9.099, NEC 9.100–9.125, Identix 9.151–9.175, others
9.176–9.225) or the extended feature set (EFS, 9.300–9.399): never guessed at; a record holding
only those yields a note naming them. Malformed minutiae raise ``bad_record``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

from matcher.errors import TemplateFormatError
from matcher.fingerprint.iso19794_2 import ppcm_to_ppi
from matcher.fingerprint.template import BIFURCATION, ENDING, OTHER, FingerprintTemplate
from node.formats.ansi_nist_fields import MM_PER_INCH, error, first_item, number, subfields


class F(IntEnum):
    """The Type-9 fields read here (ANSI/NIST-ITL 1-2011 Table 29; legacy: 1-2007)."""

    IDC = 2
    FGP_LEGACY = 6
    NMN = 10
    MRC = 12
    HLL = 128
    VLL = 129
    SLC = 130
    THPS = 131
    FGP = 134
    FQD = 135
    NOM = 136
    FMD = 137


#: Highest ISO finger position; NIST's higher codes (plain/multi-finger, palms) become 0.
MAX_ISO_POSITION = 10
#: Resolution of a legacy template without an image of the same IDC (the template convention).
DEFAULT_PPI = 500
#: Legacy coordinates are in 0.01 mm.
LEGACY_UNITS_PER_MM = 100
#: NIST's legacy angles point out of the minutia, INCITS 378/ISO into it.
NIST_ANGLE_OFFSET = 180
DEGREES = 360
#: M1 angles are in units of 2° (0..179).
M1_ANGLE_UNIT = 2
M1_MAX_ANGLE = DEGREES // M1_ANGLE_UNIT - 1
M1_KINDS = {0: OTHER, 1: ENDING, 2: BIFURCATION}
M1_MAX_QUALITY = 100
M1_ITEMS = 6
#: Largest value of any 9.137 item: coordinates are pixels of an image whose sides have at
#: most 5 digits (9.128/9.129); angles and qualities are smaller. Larger is a broken record
#: (an item beyond int64 was an OverflowError that ended a whole bulk load).
M1_MAX_ITEM = 99_999
#: M1 scale units (9.130): pixels per inch or per centimetre.
SCALE_PPI, SCALE_PPCM = 1, 2
LEGACY_KINDS = {b"A": ENDING, b"B": BIFURCATION, b"C": OTHER, b"D": OTHER}
#: Legacy qualities: 0 manual, 1 none, then 2 (best) .. 63 (worst).
LEGACY_BEST, LEGACY_WORST = 2, 63
#: ``XXXXYYYYTTT``: x and y in 0.01 mm, theta in degrees.
LEGACY_XYT_DIGITS = 11
LEGACY_X, LEGACY_Y, LEGACY_THETA = slice(0, 4), slice(4, 8), slice(8, 11)
LEGACY_MIN_ITEMS = 4  # index, XYT, quality, type; ridge counts follow
OTHER_BLOCKS = (
    (range(13, 31), "FBI/IAFIS"),
    (range(31, 56), "Cogent"),
    (range(56, 71), "Motorola"),
    (range(71, 100), "MorphoTrak"),
    (range(100, 126), "NEC"),
    (range(151, 176), "Identix"),
    (range(176, 226), "other vendors"),
    (range(300, 400), "extended feature set"),
)


@dataclass(frozen=True)
class Frame:
    """The pixel grid of the image a Type-9 record describes (a Type-4/14 of its IDC)."""

    width: int
    height: int
    ppi: int


@dataclass(frozen=True)
class Type9:
    """What one Type-9 record yields: a template per standard block it holds (INCITS 378
    first), or a note saying why it yields none."""

    idc: int
    templates: list[FingerprintTemplate]
    note: str | None = None


def iso_position(code: int) -> int:
    return code if code <= MAX_ISO_POSITION else 0


def _field(fields: dict[int, bytes], field: F, default: bytes = b"") -> int:
    """A field's first item as a number (``bad_record`` naming the field otherwise)."""
    return number(first_item(fields.get(field, default)), f"9.{field:03d} {field.name}")


def read_type9(fields: dict[int, bytes], frames: dict[int, Frame]) -> Type9:
    """The minutiae of one Type-9 record (fields by number); ``frames`` are the images of the
    transaction by IDC. Raises :class:`AnsiNistError` (``bad_record``) for malformed data."""
    idc = _field(fields, F.IDC)
    found = []
    if F.NOM in fields or F.FMD in fields:
        found.append(_m1(fields, f"type-9 IDC {idc}, INCITS 378 block"))
    if F.NMN in fields or F.MRC in fields:
        found.append(_legacy(fields, frames.get(idc), f"type-9 IDC {idc}, legacy block"))
    templates = [t for t in found if t.count]
    if templates:
        return Type9(idc, templates)
    if found:
        return Type9(idc, [], f"type-9 IDC {idc} lists no minutiae; not read")
    others = sorted({name for n in fields for block, name in OTHER_BLOCKS if n in block})
    held = ", ".join(others) if others else "no minutiae fields"
    return Type9(idc, [], f"type-9 IDC {idc} holds no standard minutiae ({held}); not read")


def _make(where: str, **values: Any) -> FingerprintTemplate:
    try:
        return FingerprintTemplate(**values)
    except TemplateFormatError as exc:
        raise error(f"{where}: {exc.message}", "bad_record") from exc


def _rows(fields: dict[int, bytes], count_field: F, data_field: F) -> list[list[bytes]]:
    count = _field(fields, count_field)
    rows = subfields(fields[data_field]) if data_field in fields else []
    if len(rows) != count:
        raise error(
            f"9.{count_field:03d} says {count} minutiae, 9.{data_field:03d} holds {len(rows)}",
            "bad_record",
        )
    return rows


def _m1(fields: dict[int, bytes], where: str) -> FingerprintTemplate:
    width, height = _field(fields, F.HLL), _field(fields, F.VLL)
    units, scale = _field(fields, F.SLC), _field(fields, F.THPS)
    if units not in (SCALE_PPI, SCALE_PPCM) or scale == 0:
        raise error(f"9.130/9.131 resolution {scale} in units {units} is not usable", "bad_record")
    rows = _rows(fields, F.NOM, F.FMD)
    values = np.zeros((len(rows), M1_ITEMS), np.int64)
    for i, row in enumerate(rows):
        if len(row) != M1_ITEMS:
            raise error(f"9.137 minutia {i + 1} has {len(row)} items, not {M1_ITEMS}", "bad_record")
        items = [number(item, f"9.137 minutia {i + 1}") for item in row]
        _check(max(items) <= M1_MAX_ITEM, f"9.137 minutia {i + 1} has an item above {M1_MAX_ITEM}")
        values[i] = items
    _, x, y, angle, kind, quality = values.T
    _check(bool(np.all(angle <= M1_MAX_ANGLE)), "9.137 angle above 179 (units of 2°)")
    _check(bool(np.all(np.isin(kind, list(M1_KINDS)))), "9.137 minutia type not 0, 1 or 2")
    _check(bool(np.all(quality <= M1_MAX_QUALITY)), "9.137 minutia quality above 100")
    _check(
        bool(np.all((x < width) & (y < height))),
        f"9.137 minutia outside the {width}x{height} image",
    )
    finger_quality = _field(fields, F.FQD, b"0")
    return _make(
        where,
        x=x.astype(np.float32),
        y=y.astype(np.float32),
        angle=np.radians(angle * M1_ANGLE_UNIT).astype(np.float32),
        kind=kind.astype(np.uint8),
        quality=quality.astype(np.uint8),
        width=width,
        height=height,
        resolution_ppi=scale if units == SCALE_PPI else ppcm_to_ppi(scale),
        image_quality=finger_quality if finger_quality <= M1_MAX_QUALITY else 0,
        finger_position=iso_position(_field(fields, F.FGP, b"0")),
    )


def _legacy(fields: dict[int, bytes], frame: Frame | None, where: str) -> FingerprintTemplate:
    rows = _rows(fields, F.NMN, F.MRC)
    xyt = np.zeros((len(rows), 3), np.int64)
    kind, quality = np.zeros(len(rows), np.uint8), np.zeros(len(rows), np.uint8)
    for i, row in enumerate(rows):
        xyt[i], quality[i], kind[i] = _legacy_minutia(row, i + 1)
    ppi = frame.ppi if frame else DEFAULT_PPI
    pixels_per_unit = ppi / (MM_PER_INCH * LEGACY_UNITS_PER_MM)
    x, y_up = xyt[:, 0] * pixels_per_unit, xyt[:, 1] * pixels_per_unit
    if frame:
        width, height = frame.width, frame.height
    else:  # the minutiae's bounding frame: y >= 0 needs ceil, x < width floor + 1
        width = math.floor(x.max()) + 1 if len(x) else 1
        height = math.ceil(y_up.max()) + 1 if len(y_up) else 1
    # A writer that rounds (rather than truncates) can land up to one unit past the image's
    # last row or column: within that, a minutia is on the edge; beyond it, outside.
    y = height - 1 - y_up
    inside = (x < width + pixels_per_unit) & (y > -pixels_per_unit)
    _check(bool(np.all(inside)), f"9.012 minutia outside the {width}x{height} image")
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    x32[x32 >= width], y32[y32 < 0] = width - 1, 0
    angle = (xyt[:, 2] + NIST_ANGLE_OFFSET) % DEGREES
    return _make(
        where,
        x=x32,
        y=y32,
        angle=np.radians(angle).astype(np.float32),
        kind=kind,
        quality=quality,
        width=width,
        height=height,
        resolution_ppi=ppi,
        finger_position=iso_position(_field(fields, F.FGP_LEGACY, b"0")),
    )


def _legacy_minutia(row: Sequence[bytes], index: int) -> tuple[list[int], int, int]:
    """([X, Y, theta], quality 0..100, kind) of one 9.012 subfield."""
    where = f"9.012 minutia {index}"
    if len(row) < LEGACY_MIN_ITEMS:
        raise error(f"{where} has {len(row)} items, not at least {LEGACY_MIN_ITEMS}", "bad_record")
    number(row[0], f"{where} index")
    code = row[1].strip()
    if len(code) != LEGACY_XYT_DIGITS or not code.isdigit():
        raise error(f"{where}: the position is not XXXXYYYYTTT", "bad_record")
    theta = int(code[LEGACY_THETA])
    _check(theta < DEGREES, f"{where}: angle {theta} is not below 360")
    nist_quality = number(row[2], f"{where} quality")
    _check(nist_quality <= LEGACY_WORST, f"{where}: quality {nist_quality} is above 63")
    kind = LEGACY_KINDS.get(row[3].strip())
    if kind is None:
        raise error(f"{where}: the type is not A, B, C or D", "bad_record")
    for pair in row[LEGACY_MIN_ITEMS:]:
        neighbour, comma, count = pair.partition(b",")
        _check(
            neighbour.isdigit() and comma == b"," and count.isdigit(), f"{where}: bad ridge count"
        )
    return [int(code[LEGACY_X]), int(code[LEGACY_Y]), theta], _legacy_quality(nist_quality), kind


def _legacy_quality(value: int) -> int:
    """2 (best) .. 63 (worst) onto 100 .. 1; 0 (manual) and 1 (none) onto 0 (not reported)."""
    if value < LEGACY_BEST:
        return 0
    span = LEGACY_WORST - LEGACY_BEST
    return 1 + round((LEGACY_WORST - value) * (M1_MAX_QUALITY - 1) / span)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise error(message, "bad_record")
