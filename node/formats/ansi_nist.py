"""ANSI/NIST-ITL 1-2011 transactions (``.an2``/``.eft``), traditional encoding.

Structure read here: a Type-1 record, then the records its CNT field (1.003) lists. Tagged
records (types 1, 2, 9, 10, 13, 14, 15, 17) are fields ``T.NNN:value`` separated by GS (0x1D)
and ended by FS (0x1C); the first field (``T.001``) is the record's byte length, and the image
field (``T.999``) is binary and runs to the record's end. Type-4 records are binary: a 18-byte
header (length 4, IDC 1, impression 1, finger positions 6, scanning resolution 1, width 2,
height 2, compression 1) and the image.

Returned (:func:`read_transaction`): fingerprint images of Type-14 (finger position from
14.013) and Type-4 (its first finger position), uncompressed, WSQ, JPEG, JPEG 2000 or PNG (see
:mod:`node.formats.ansi_nist_images`); face images of Type-10 (10.999); and the minutiae of
Type-9 records, one template per IDC: the INCITS 378 block when the record has one, else the
legacy NIST block (see :mod:`node.formats.ansi_nist_minutiae`). A record's IDC ties it to the
image it describes, which also gives a legacy block its pixel grid. What is passed over (a
Type-9 of vendor fields only, a second block of the same minutiae) is listed in ``notes``.
Types 2, 13, 15 and 17 are skipped: only their length field is read (Type-2 holds names and
dates of birth), so what they hold can neither reject a transaction nor reach a message.
Resolutions and image sizes are checked before any image is built (see
:mod:`node.formats.ansi_nist_images`). A transaction with neither an image nor minutiae we can
read raises :class:`AnsiNistError`. ``reason``: ``truncated``, ``bad_record``, ``bad_image``
(WSQ data that cannot be decoded), ``no_images``, ``unsupported_compression``. Its message
names record types and field numbers, never a field's contents.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from matcher.fingerprint.template import FingerprintTemplate
from node.formats.ansi_nist_fields import (
    FS,
    GS,
    IDC,
    IMAGE_DATA,
    RS,
    T1,
    T14,
    US,
    AnsiNistError,
    error,
    first_item,
    number,
    ppmm_to_ppi,
)
from node.formats.ansi_nist_images import (
    MIN_SCANNING_PPI,
    checked_size,
    image_file,
    type4_codec,
    type14_codec,
    type14_ppi,
)
from node.formats.ansi_nist_minutiae import Frame, read_type9

__all__ = [
    "FS",
    "GS",
    "RS",
    "SUFFIXES",
    "US",
    "AnsiNistError",
    "NistImage",
    "NistMinutiae",
    "Transaction",
    "read_images",
    "read_transaction",
]

#: Suffixes of ANSI/NIST-ITL transaction files.
SUFFIXES = frozenset({".an2", ".eft", ".nist"})
_TYPE4_HEADER = struct.Struct(">IBB6sBHHB")
_TAGGED = frozenset({1, 2, 9, 10, 14, 13, 15, 17})
#: Tagged records passed over: their fields are not parsed.
_SKIPPED = frozenset({2, 13, 15, 17})
#: Digits a field number may have: the standard's have three (``T.NNN``), nine leave room; a
#: longer one is damaged (and past 4300 digits Python refuses to parse it).
_FIELD_DIGITS = 9
#: Type-4 finger position bytes left unused.
_UNUSED_POSITION = 255
#: Type-4 ISR byte: 1 when the image is at the native scanning resolution (1.011).
_NATIVE_RESOLUTION = 1


@dataclass(frozen=True)
class NistImage:
    record_type: int  # 4, 10 or 14
    finger_position: int | None  # None for a face
    data: bytes  # an image file (PNG, JPEG, ...)
    idc: int = 0
    frame: Frame | None = None  # the fingerprint's pixel grid when the record states it


@dataclass(frozen=True)
class NistMinutiae:
    idc: int
    template: FingerprintTemplate


@dataclass(frozen=True)
class Transaction:
    images: list[NistImage]
    minutiae: list[NistMinutiae]
    notes: list[str] = field(default_factory=list)


def _record_end(buf: bytes, pos: int, rtype: int) -> int:
    """The offset after the tagged record at ``pos``, from its length field (``T.001``)."""
    head = buf[pos : pos + 32].split(GS, 1)[0].split(FS, 1)[0]
    try:
        tag, value = head.split(b":", 1)
        length = int(value)
        ok = tag.split(b".")[0] == str(rtype).encode() and length > 0
    except ValueError:
        ok = False
    if not ok:
        raise error(f"record of type {rtype} at byte {pos} has no length field", "bad_record")
    if pos + length > len(buf):
        raise error(f"type-{rtype} record runs past the end of the file", "truncated")
    return pos + length


def _tagged(buf: bytes, pos: int, rtype: int) -> tuple[dict[int, bytes], int]:
    """Fields of the tagged record at ``pos`` (by field number) and the next record's offset."""
    end = _record_end(buf, pos, rtype)
    body = buf[pos : end - 1]
    fields: dict[int, bytes] = {}
    image_tag = b"%d.%03d:" % (rtype, IMAGE_DATA)
    image_at = body.find(image_tag)
    if image_at >= 0:
        fields[IMAGE_DATA] = body[image_at + len(image_tag) :]
        body = body[:image_at].rstrip(GS)
    for index, item in enumerate(body.split(GS), 1):
        tag, sep, value = item.partition(b":")
        field_number = tag.split(b".")[-1]
        if not sep or not field_number.isdigit() or len(field_number) > _FIELD_DIGITS:
            raise error(f"field {index} of a type-{rtype} record has no valid tag", "bad_record")
        fields[int(field_number)] = value
    return fields, end


def _type4(buf: bytes, pos: int, native_ppi: int | None) -> tuple[NistImage, int]:
    if pos + _TYPE4_HEADER.size > len(buf):
        raise error("type-4 record header is truncated", "truncated")
    length, idc, _imp, fgp, isr, width, height, gca = _TYPE4_HEADER.unpack_from(buf, pos)
    end = pos + length
    if end > len(buf) or length < _TYPE4_HEADER.size:
        raise error("type-4 record runs past the end of the file", "truncated")
    ppi = native_ppi if isr == _NATIVE_RESOLUTION else MIN_SCANNING_PPI
    size = checked_size((width, height), "type-4 header")
    data = image_file(type4_codec(gca), buf[pos + _TYPE4_HEADER.size : end], size, ppi)
    position = fgp[0] if fgp[0] != _UNUSED_POSITION else 0
    frame = Frame(width, height, ppi or MIN_SCANNING_PPI)
    return NistImage(4, position, data, idc, frame), end


def _type14(record: dict[int, bytes]) -> NistImage:
    fgp = first_item(record.get(T14.FGP, b"0"))
    ppi = type14_ppi(record)
    size = None
    if T14.HLL in record and T14.VLL in record:
        hll, vll = number(record[T14.HLL], "14.006 HLL"), number(record[T14.VLL], "14.007 VLL")
        size = checked_size((hll, vll), "14.006/14.007")
    data = image_file(type14_codec(record.get(T14.CGA)), record[IMAGE_DATA], size, ppi)
    idc = number(record.get(IDC, b"0"), "14.002 IDC")
    frame = Frame(*size, ppi or MIN_SCANNING_PPI) if size else None
    position = number(fgp, "14.013 FGP") if fgp.strip(b" ").isdigit() else 0
    return NistImage(14, position, data, idc, frame)


def read_transaction(buf: bytes) -> Transaction:
    """The images and minutiae of one transaction, in record order; see the module docstring."""
    fields, pos = _tagged(buf, 0, 1)
    try:
        listed = [int(item.split(US)[0]) for item in fields[T1.CNT].split(RS)[1:]]
    except (KeyError, ValueError) as exc:
        raise error("the type-1 record has no valid CNT field (1.003)", "bad_record") from exc
    native_ppi = ppmm_to_ppi(fields.get(T1.NSR))
    images: list[NistImage] = []
    type9: list[dict[int, bytes]] = []
    for rtype in listed:
        if rtype == 4:
            image, pos = _type4(buf, pos, native_ppi)
            images.append(image)
        elif rtype in _SKIPPED:
            pos = _record_end(buf, pos, rtype)
        elif rtype in _TAGGED:
            record, pos = _tagged(buf, pos, rtype)
            if rtype == 14 and IMAGE_DATA in record:
                images.append(_type14(record))
            elif rtype == 10 and IMAGE_DATA in record:
                idc = number(record.get(IDC, b"0"), "10.002 IDC")
                images.append(NistImage(10, None, record[IMAGE_DATA], idc))
            elif rtype == 9:
                type9.append(record)
        else:
            raise error(f"record type {rtype} is not supported", "bad_record")
    minutiae, notes = _minutiae(type9, images)
    if not images and not minutiae:
        said = "".join(f"; {note}" for note in notes)
        raise error(f"the transaction holds no fingerprint or face image{said}", "no_images")
    return Transaction(images, minutiae, notes)


def _minutiae(
    records: list[dict[int, bytes]], images: list[NistImage]
) -> tuple[list[NistMinutiae], list[str]]:
    """One template per IDC (the first record's first block), and what was passed over."""
    frames = {i.idc: i.frame for i in images if i.frame is not None}
    found: dict[int, FingerprintTemplate] = {}
    notes: list[str] = []
    for record in records:
        result = read_type9(record, frames)
        if result.note:
            notes.append(result.note)
        for template in result.templates:
            if result.idc in found:
                notes.append(
                    f"type-9 IDC {result.idc}: a second encoding of its minutiae; not read"
                )
            else:
                found[result.idc] = template
    return [NistMinutiae(idc, t) for idc, t in found.items()], notes


def read_images(buf: bytes) -> list[NistImage]:
    """The fingerprint and face images of one transaction (``no_images`` when it has none)."""
    images = read_transaction(buf).images
    if not images:
        raise error("the transaction holds no fingerprint or face image", "no_images")
    return images
