"""ANSI/NIST-ITL 1-2011 transactions (``.an2``/``.eft``), traditional encoding: the images.

Structure read here: a Type-1 record, then the records its CNT field (1.003) lists. Tagged
records (types 1, 2, 9, 10, 14) are fields ``T.NNN:value`` separated by GS (0x1D) and ended by
FS (0x1C); the first field (``T.001``) is the record's byte length, and the image field
(``T.999``) is binary and runs to the record's end. Type-4 records are binary: a 18-byte
header (length 4, IDC 1, impression 1, finger positions 6, scanning resolution 1, width 2,
height 2, compression 1) and the image.

Returned: fingerprint images of Type-14 (finger position from 14.013) and Type-4 (its first
finger position; uncompressed only, turned into a PNG), and face images of Type-10 (10.999).
Type-9 minutiae are not read (vendor blocks vary); a transaction with no image we can read
raises :class:`AnsiNistError`. ``reason``: ``truncated``, ``bad_record``, ``no_images``,
``unsupported_compression``.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image

from matcher.errors import TemplateFormatError

FS, GS, RS, US = b"\x1c", b"\x1d", b"\x1e", b"\x1f"
#: Suffixes of ANSI/NIST-ITL transaction files.
SUFFIXES = frozenset({".an2", ".eft", ".nist"})
_TYPE4_HEADER = struct.Struct(">IBB6sBHHB")
_TAGGED = frozenset({1, 2, 9, 10, 14, 13, 15, 17})


class AnsiNistError(TemplateFormatError):
    """A transaction this reader cannot use."""


@dataclass(frozen=True)
class NistImage:
    record_type: int  # 4, 10 or 14
    finger_position: int | None  # None for a face
    data: bytes  # an image file (PNG, JPEG, ...)


def _error(message: str, reason: str) -> AnsiNistError:
    return AnsiNistError(message, reason=reason)


def _tagged(buf: bytes, pos: int, rtype: int) -> tuple[dict[int, bytes], int]:
    """Fields of the tagged record at ``pos`` (by field number) and the next record's offset."""
    head = buf[pos : pos + 32].split(GS, 1)[0].split(FS, 1)[0]
    try:
        tag, value = head.split(b":", 1)
        length = int(value)
        ok = tag.split(b".")[0] == str(rtype).encode() and length > 0
    except ValueError:
        ok = False
    if not ok:
        raise _error(f"record of type {rtype} at byte {pos} has no length field", "bad_record")
    end = pos + length
    if end > len(buf):
        raise _error(f"type-{rtype} record runs past the end of the file", "truncated")
    body = buf[pos : end - 1]
    fields: dict[int, bytes] = {}
    image_at = body.find(b"%d.999:" % rtype)
    if image_at >= 0:
        fields[999] = body[image_at + len(b"%d.999:" % rtype) :]
        body = body[:image_at].rstrip(GS)
    for item in body.split(GS):
        tag, sep, value = item.partition(b":")
        number = tag.split(b".")[-1]
        if not sep or not number.isdigit():
            raise _error(f"malformed field {item[:20]!r} in a type-{rtype} record", "bad_record")
        fields[int(number)] = value
    return fields, end


def _type4(buf: bytes, pos: int) -> tuple[NistImage, int]:
    if pos + _TYPE4_HEADER.size > len(buf):
        raise _error("type-4 record header is truncated", "truncated")
    length, _idc, _imp, fgp, _isr, width, height, gca = _TYPE4_HEADER.unpack_from(buf, pos)
    end = pos + length
    if end > len(buf) or length < _TYPE4_HEADER.size:
        raise _error("type-4 record runs past the end of the file", "truncated")
    if gca != 0:
        raise _error(f"type-4 compression {gca} is not supported", "unsupported_compression")
    pixels = np.frombuffer(buf, np.uint8, width * height, pos + _TYPE4_HEADER.size)
    out = io.BytesIO()
    Image.fromarray(pixels.reshape(height, width)).save(out, format="PNG")
    return NistImage(4, fgp[0] if fgp[0] != 255 else 0, out.getvalue()), end


def read_images(buf: bytes) -> list[NistImage]:
    """The fingerprint and face images of one transaction, in record order."""
    fields, pos = _tagged(buf, 0, 1)
    try:
        listed = [int(item.split(US)[0]) for item in fields[3].split(RS)[1:]]
    except (KeyError, ValueError) as exc:
        raise _error("the type-1 record has no valid CNT field (1.003)", "bad_record") from exc
    images: list[NistImage] = []
    for rtype in listed:
        if rtype == 4:
            image, pos = _type4(buf, pos)
            images.append(image)
        elif rtype in _TAGGED:
            record, pos = _tagged(buf, pos, rtype)
            if rtype == 14 and 999 in record:
                fgp = record.get(13, b"0").split(RS)[0].split(US)[0]
                images.append(NistImage(14, int(fgp) if fgp.isdigit() else 0, record[999]))
            elif rtype == 10 and 999 in record:
                images.append(NistImage(10, None, record[999]))
        else:
            raise _error(f"record type {rtype} is not supported", "bad_record")
    if not images:
        raise _error("the transaction holds no fingerprint or face image", "no_images")
    return images
