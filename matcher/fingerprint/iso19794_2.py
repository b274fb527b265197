"""ISO/IEC 19794-2:2005 finger minutiae record format (FMR), byte-exact codec.

Layout (all integers big-endian)::

    record header (24 bytes)
      "FMR\\0" | " 20\\0" | record length (4) | capture equipment: 4-bit certification flags +
      12-bit equipment id (2) | image size X (2) | image size Y (2) | resolution X (2) |
      resolution Y (2), pixels per centimetre | number of finger views (1) | reserved (1) = 0
    per finger view
      finger position (1) | view number (4 bits) + impression type (4 bits) | finger quality (1)
      | number of minutiae (1)
      per minutia (6 bytes): type (2 bits: 01 ending, 10 bifurcation, 00 other) + x (14 bits)
      | reserved (2 bits) = 0 + y (14 bits) | angle (1 byte, units of 360/256 degrees,
      counter-clockwise) | quality (1 byte, 0..100)
      extended data block length (2) followed by that many bytes (0 when none): extended data
      areas, each type code (2) | area length (2, the data bytes that follow) | data

Vendor-defined extended data area :data:`FIELD_TYPE` = 0xBD01 (ISO reserves 0x0100–0xFFFF
for vendors) carries the template's coarse orientation field (``FingerprintTemplate.
orientation``, see ``template.py``)::

      format (1) = 1 | block side in px at 500 ppi (1) = 16 | rows (2) | columns (2)
      | rows x columns codes (1 byte each, row-major: 0..179 degrees, 255 background)

rows and columns must be the image's (height // 16, width // 16). :func:`encode` writes the
area only for templates that have a field (the extended data length is 0 otherwise, as
before), so records without it, from this code or any other, decode as before, with no field.
Other extended data areas are validated for framing as far as they can be and then dropped
(an area whose length runs past the block ends the walk: some writers count the 4 header bytes
in the length); a malformed field area is an error (reason ``bad_orientation_field``).

Quantisation: :func:`encode` rounds positions to whole pixels (clamped into the image),
angles to 1.40625° steps and the resolution to whole pixels per centimetre (500 ppi = 197 px/cm,
decoded back as round(197 × 2.54) = 500 ppi). So ``decode(encode(t))`` equals ``t`` after that
quantisation, and for every record this module writes, ``encode(decode(b)) == b`` exactly.
Fields a :class:`FingerprintTemplate` has no place for (capture equipment, view number,
impression type, a differing Y resolution, extended data other than the field) are validated
and then dropped by :func:`decode`; :func:`encode` writes them as zero / equal to X, except
the view number, which :func:`encode_views` counts per finger position (0, 1, ...), so that
each (finger position, view number) pair of a record is unique as the standard requires.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np

from matcher.errors import TemplateFormatError
from matcher.fingerprint.template import (
    BIFURCATION,
    ENDING,
    FIELD_ANGLES,
    FIELD_BACKGROUND,
    FIELD_BLOCK,
    MAX_COORDINATE,
    OTHER,
    FingerprintTemplate,
    field_shape,
)

MAGIC = b"FMR\x00"
VERSION = b" 20\x00"
CM_PER_INCH = 2.54
_HEADER = struct.Struct(">4s4sIHHHHHBB")
_VIEW = struct.Struct(">BBBB")
#: Views of one finger a record can number (the view number is 4 bits).
MAX_VIEWS_PER_FINGER = 16
_EXT = struct.Struct(">H")
MINUTIA_SIZE = 6
#: One angle unit of the record, in radians (360/256 degrees).
ANGLE_UNIT = 2 * math.pi / 256
_TYPE_TO_KIND = {0: OTHER, 1: ENDING, 2: BIFURCATION}
_KIND_TO_TYPE = {v: k for k, v in _TYPE_TO_KIND.items()}
#: 10,000 ppi, the template type's limit.
_MAX_PPCM = 3937
#: Vendor-defined extended data area type of the orientation field (vendor range 0x0100+).
FIELD_TYPE = 0xBD01
FIELD_FORMAT = 1
_AREA = struct.Struct(">HH")
_FIELD_HEAD = struct.Struct(">BBHH")


def _error(message: str, reason: str) -> TemplateFormatError:
    return TemplateFormatError(f"ISO/IEC 19794-2 record: {message}", reason=reason)


def ppi_to_ppcm(ppi: float) -> int:
    """Pixels per inch -> whole pixels per centimetre (500 -> 197)."""
    return round(ppi / CM_PER_INCH)


def ppcm_to_ppi(ppcm: int) -> int:
    """Pixels per centimetre -> whole pixels per inch (197 -> 500)."""
    return round(ppcm * CM_PER_INCH)


def _view_bytes(t: FingerprintTemplate, view_number: int) -> bytes:
    n = t.count
    x = np.clip(np.rint(t.x.astype(np.float64)), 0, t.width - 1).astype(np.uint16)
    y = np.clip(np.rint(t.y.astype(np.float64)), 0, t.height - 1).astype(np.uint16)
    a = np.rint(t.angle.astype(np.float64) / ANGLE_UNIT).astype(np.int64) % 256
    types = np.array([_KIND_TO_TYPE[int(k)] for k in t.kind], dtype=np.uint16)
    rec = np.zeros((n, MINUTIA_SIZE), dtype=np.uint8)
    w0 = (types << 14) | x
    rec[:, 0], rec[:, 1] = w0 >> 8, w0 & 0xFF
    rec[:, 2], rec[:, 3] = y >> 8, y & 0xFF
    rec[:, 4] = a
    rec[:, 5] = t.quality
    head = _VIEW.pack(t.finger_position, view_number << 4, t.image_quality, n)
    ext = b"" if t.orientation is None else _field_area(t.orientation)
    return head + rec.tobytes() + _EXT.pack(len(ext)) + ext


def _field_area(codes: np.ndarray) -> bytes:
    rows, cols = codes.shape
    data = _FIELD_HEAD.pack(FIELD_FORMAT, FIELD_BLOCK, rows, cols) + codes.tobytes()
    if _AREA.size + len(data) > 0xFFFF:
        raise _error(
            f"an orientation field of {rows}x{cols} blocks does not fit the extended data",
            "orientation_field_too_large",
        )
    return _AREA.pack(FIELD_TYPE, len(data)) + data


def _decode_field(ext: bytes, w: int, h: int) -> np.ndarray | None:
    """The orientation field of a view's extended data block, or None when it has none."""
    found = None
    pos = 0
    while len(ext) - pos >= _AREA.size:
        kind, length = _AREA.unpack_from(ext, pos)
        start, pos = pos + _AREA.size, pos + _AREA.size + length
        if kind != FIELD_TYPE:
            if pos > len(ext):
                break  # foreign framing (e.g. lengths counting the header): dropped anyway
            continue
        if found is not None:
            raise _error("two orientation field areas in one view", "bad_orientation_field")
        if pos > len(ext) or length < _FIELD_HEAD.size:
            raise _error(
                f"orientation field area of {length} bytes does not fit", "bad_orientation_field"
            )
        fmt, block, rows, cols = _FIELD_HEAD.unpack_from(ext, start)
        if fmt != FIELD_FORMAT or block != FIELD_BLOCK:
            raise _error(
                f"orientation field format {fmt} with {block} px blocks is not "
                f"{FIELD_FORMAT} with {FIELD_BLOCK} px",
                "bad_orientation_field",
            )
        if (rows, cols) != field_shape(w, h) or length != _FIELD_HEAD.size + rows * cols:
            raise _error(
                f"orientation field of {rows}x{cols} blocks in {length} bytes does not match "
                f"the {w}x{h} image",
                "bad_orientation_field",
            )
        codes = np.frombuffer(ext, np.uint8, rows * cols, start + _FIELD_HEAD.size)
        if np.any((codes >= FIELD_ANGLES) & (codes != FIELD_BACKGROUND)):
            raise _error("orientation code out of range", "bad_orientation_field")
        found = codes.reshape(rows, cols).copy()
    return found


def encode_views(templates: Sequence[FingerprintTemplate]) -> bytes:
    """One record holding several finger views (same image size and resolution)."""
    if not templates:
        raise _error("at least one finger view is needed", "no_finger_views")
    if len(templates) > 255:
        raise _error(f"{len(templates)} finger views; at most 255 fit", "too_many_views")
    first = templates[0]
    for t in templates[1:]:
        if (t.width, t.height, t.resolution_ppi) != (
            first.width,
            first.height,
            first.resolution_ppi,
        ):
            raise _error("finger views differ in image size or resolution", "inconsistent_views")
    ppcm = ppi_to_ppcm(first.resolution_ppi)
    if not 0 < ppcm <= 0xFFFF:
        raise _error(f"resolution {first.resolution_ppi} ppi cannot be stored", "bad_resolution")
    # Each (finger position, view number) pair is unique in a record: views of one finger are
    # numbered 0, 1, ... in order, and the 4-bit field holds 16 of them.
    numbers = [
        sum(u.finger_position == t.finger_position for u in templates[:i])
        for i, t in enumerate(templates)
    ]
    if max(numbers) >= MAX_VIEWS_PER_FINGER:
        raise _error(f"more than {MAX_VIEWS_PER_FINGER} views of one finger", "too_many_views")
    body = b"".join(_view_bytes(t, n) for t, n in zip(templates, numbers, strict=True))
    length = _HEADER.size + len(body)
    head = _HEADER.pack(
        MAGIC, VERSION, length, 0, first.width, first.height, ppcm, ppcm, len(templates), 0
    )
    return head + body


def encode(template: FingerprintTemplate) -> bytes:
    """The ISO/IEC 19794-2:2005 record (one finger view) of ``template``; quantises (see top)."""
    return encode_views([template])


def decode_all(data: bytes) -> list[FingerprintTemplate]:
    """Every finger view of a record, in order. Raises TemplateFormatError with a reason."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _error(f"expected bytes, got {type(data).__name__}", "not_bytes")
    buf = bytes(data)
    if len(buf) < _HEADER.size:
        raise _error(f"{len(buf)} bytes is shorter than the 24-byte header", "truncated")
    magic, version, length, _equip, w, h, xres, yres, nviews, reserved = _HEADER.unpack_from(buf)
    if magic != MAGIC:
        raise _error(f"format identifier {magic!r} is not 'FMR\\0'", "bad_magic")
    if version != VERSION:
        raise _error(f"version {version!r} is not ' 20\\0' (2005)", "bad_version")
    if length != len(buf):
        reason = "truncated" if length > len(buf) else "trailing_bytes"
        raise _error(f"record length field says {length}, got {len(buf)} bytes", reason)
    if reserved != 0:
        raise _error("reserved header byte is not zero", "reserved_bits_set")
    if not (0 < w <= MAX_COORDINATE and 0 < h <= MAX_COORDINATE):
        raise _error(f"image size {w}x{h} is outside 1..{MAX_COORDINATE}", "bad_image_size")
    if not (0 < xres <= _MAX_PPCM and 0 < yres <= _MAX_PPCM):
        raise _error(f"resolution {xres}x{yres} pixels/cm is implausible", "bad_resolution")
    if nviews == 0:
        raise _error("no finger views", "no_finger_views")
    ppi = ppcm_to_ppi(xres)
    views = []
    pos = _HEADER.size
    for _ in range(nviews):
        t, pos = _decode_view(buf, pos, w, h, ppi)
        views.append(t)
    if pos != len(buf):
        raise _error(f"{len(buf) - pos} bytes after the last finger view", "trailing_bytes")
    return views


def decode(data: bytes) -> FingerprintTemplate:
    """The first finger view of a record (the whole record is validated; see :func:`view_count`)."""
    return decode_all(data)[0]


def view_count(data: bytes) -> int:
    """Number of finger views in a valid record."""
    return len(decode_all(data))


def _decode_view(buf: bytes, pos: int, w: int, h: int, ppi: int) -> tuple[FingerprintTemplate, int]:
    if pos + _VIEW.size > len(buf):
        raise _error("finger view header is cut off", "truncated")
    finger, _view_impr, fq, n = _VIEW.unpack_from(buf, pos)
    pos += _VIEW.size
    if finger > 10:
        raise _error(f"finger position {finger} is not an ISO code 0..10", "bad_finger_position")
    if fq > 100:
        raise _error(f"finger quality {fq} exceeds 100", "bad_quality")
    end = pos + n * MINUTIA_SIZE
    if end + _EXT.size > len(buf):
        raise _error(f"{n} minutiae do not fit in the {len(buf)}-byte record", "too_many_minutiae")
    rec = np.frombuffer(buf, dtype=np.uint8, count=n * MINUTIA_SIZE, offset=pos)
    rec = rec.reshape(n, MINUTIA_SIZE).astype(np.uint16)
    w0 = (rec[:, 0] << 8) | rec[:, 1]
    w1 = (rec[:, 2] << 8) | rec[:, 3]
    types = w0 >> 14
    x = w0 & 0x3FFF
    y = w1 & 0x3FFF
    if np.any(types == 3):
        raise _error("minutia type 11b is not defined", "unknown_minutia_type")
    if np.any(w1 >> 14):
        raise _error("reserved bits of a minutia are set", "reserved_bits_set")
    if np.any(x >= w) or np.any(y >= h):
        raise _error(f"a minutia lies outside the {w}x{h} image", "coordinates_outside_image")
    if np.any(rec[:, 5] > 100):
        raise _error("a minutia quality exceeds 100", "bad_quality")
    (ext_len,) = _EXT.unpack_from(buf, end)
    pos = end + _EXT.size + ext_len
    if pos > len(buf):
        raise _error(f"extended data of {ext_len} bytes is cut off", "truncated")
    orientation = _decode_field(buf[end + _EXT.size : pos], w, h)
    kind = np.array([_TYPE_TO_KIND[int(t)] for t in types], dtype=np.uint8)
    try:
        template = FingerprintTemplate(
            x=x.astype(np.float32),
            y=y.astype(np.float32),
            angle=(rec[:, 4].astype(np.float64) * ANGLE_UNIT).astype(np.float32),
            kind=kind,
            quality=rec[:, 5].astype(np.uint8),
            width=w,
            height=h,
            resolution_ppi=ppi,
            image_quality=fq,
            finger_position=finger,
            orientation=orientation,
        )
    except TemplateFormatError as exc:
        raise _error(exc.message, exc.reason) from exc
    return template, pos
