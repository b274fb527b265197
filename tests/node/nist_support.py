"""ANSI/NIST-ITL transactions written by hand for the tests: records, Type-9 minutiae blocks
(from the standard and NBIS ``fmr2an2k``, independently of the reader) and WSQ images."""

from __future__ import annotations

import io
import math
import struct

import _wsq
import numpy as np
from PIL import Image

from matcher.fingerprint.template import BIFURCATION, ENDING, FingerprintTemplate
from node.formats.ansi_nist import FS, GS, RS, US

Fields = list[tuple[int, bytes]]

#: 0.01 mm per inch: legacy Type-9 coordinates are in 0.01 mm.
UNITS_PER_INCH = 2540
LEGACY_TYPES = {ENDING: b"A", BIFURCATION: b"B"}
#: WSQ encoder setting the ``wsq`` package's Pillow plugin uses.
WSQ_RATIO = 12


def tagged(rtype: int, fields: Fields) -> bytes:
    """A tagged record; its length field (T.001) counts itself."""
    body = b"".join(GS + b"%d.%03d:" % (rtype, n) + v for n, v in fields) + FS
    length = 0
    while True:  # the length's own digits change the length
        record = b"%d.001:%d" % (rtype, length) + body
        if len(record) == length:
            return record
        length = len(record)


def type4(pixels: np.ndarray, position: int, compression: int = 0, *, idc: int = 1) -> bytes:
    """A Type-4 record at the minimum scanning resolution (ISR 0, 500 ppi)."""
    h, w = pixels.shape
    data = wsq(pixels) if compression == 1 else pixels.tobytes()
    fgp = bytes([position, 255, 255, 255, 255, 255])
    header = struct.pack(">IBB6sBHHB", 18 + len(data), idc, 0, fgp, 0, w, h, compression)
    return header + data


def type14(
    data: bytes,
    position: int,
    *,
    idc: int = 1,
    cga: bytes | None = None,
    size: tuple[int, int] | None = None,
    ppi: int = 500,
) -> bytes:
    """A Type-14 record; ``size`` adds its width, height and resolution (``ppi``)."""
    fields: Fields = [(2, b"%d" % idc), (13, b"%d" % position)]
    if size is not None:
        fields += [(6, b"%d" % size[0]), (7, b"%d" % size[1]), (8, b"1"), (9, b"%d" % ppi)]
    if cga is not None:
        fields.append((11, cga))
    return tagged(14, [*fields, (999, data)])


def transaction(records: list[tuple[int, bytes]], type1: Fields | None = None) -> bytes:
    cnt = RS.join([b"1" + US + b"%d" % len(records)] + [b"%d" % t + US + b"0" for t, _ in records])
    head = tagged(1, [(2, b"0500"), (3, cnt), (4, b"CAR"), *(type1 or [])])
    return head + b"".join(r for _, r in records)


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def wsq(pixels: np.ndarray) -> bytes:
    h, w = pixels.shape
    return bytes(_wsq.compress(np.ascontiguousarray(pixels).tobytes(), h, w, WSQ_RATIO))


def _rows(rows: list[list[bytes]]) -> bytes:
    return RS.join(US.join(items) for items in rows)


def m1_fields(t: FingerprintTemplate, idc: int = 1, *, ppcm: bool = False) -> Fields:
    """An INCITS 378 block (9.126-9.137, ANSI/NIST-ITL 1-2011) of ``t``."""
    x = np.clip(np.rint(t.x), 0, t.width - 1).astype(int)
    y = np.clip(np.rint(t.y), 0, t.height - 1).astype(int)
    mav = np.rint(np.degrees(t.angle.astype(np.float64)) / 2).astype(int) % 180
    rows = [
        [b"%d" % v for v in (i + 1, x[i], y[i], mav[i], t.kind[i], t.quality[i])]
        for i in range(t.count)
    ]
    scale = round(t.resolution_ppi / 2.54) if ppcm else t.resolution_ppi
    return [
        (2, b"%d" % idc),
        (3, b"0"),
        (4, b"U"),
        (126, US.join([b"27", b"513", b"0"])),
        (127, US.join([b"0", b"0"])),
        (128, b"%d" % t.width),
        (129, b"%d" % t.height),
        (130, b"2" if ppcm else b"1"),
        (131, b"%d" % scale),
        (132, b"%d" % scale),
        (133, b"0"),
        (134, b"%d" % t.finger_position),
        (135, US.join([b"%d" % t.image_quality, b"00FF", b"1"])),
        (136, b"%d" % t.count),
        (137, _rows(rows)),
    ]


def m1_expected(t: FingerprintTemplate) -> FingerprintTemplate:
    """``t`` as an INCITS 378 block stores it: whole pixels, angles in 2° steps."""
    mav = np.rint(np.degrees(t.angle.astype(np.float64)) / 2) % 180
    return FingerprintTemplate(
        x=np.clip(np.rint(t.x), 0, t.width - 1),
        y=np.clip(np.rint(t.y), 0, t.height - 1),
        angle=np.radians(mav * 2),
        kind=t.kind,
        quality=t.quality,
        width=t.width,
        height=t.height,
        resolution_ppi=t.resolution_ppi,
        image_quality=t.image_quality,
        finger_position=t.finger_position,
    )


def legacy_fields(t: FingerprintTemplate, idc: int = 1, quality: int = 1) -> Fields:
    """A legacy NIST block (9.004-9.012) of ``t`` as NBIS ``fmr2an2k`` writes one: 0.01 mm from
    the lower-left corner (y from height - 1), angles turned by 180°, then ridge counts."""
    units = UNITS_PER_INCH / t.resolution_ppi
    xs = np.rint(t.x * units).astype(int)
    ys = np.rint((t.height - 1 - t.y) * units).astype(int)
    theta = (np.rint(np.degrees(t.angle.astype(np.float64))).astype(int) + 180) % 360
    rows = []
    for i in range(t.count):
        kind = LEGACY_TYPES.get(int(t.kind[i]), b"D")
        xyt = b"%04d%04d%03d" % (xs[i], ys[i], theta[i])
        neighbour = b"%d,%d" % ((i + 1) % t.count + 1, i % 7)
        rows.append([b"%03d" % (i + 1), xyt, b"%d" % quality, kind, neighbour])
    return [
        (2, b"%d" % idc),
        (3, b"0"),
        (4, b"S"),
        (5, US.join([b"EXISTING IMAGE", b"A"])),
        (6, b"%02d" % t.finger_position),
        (7, US.join([b"T", b"UN"])),
        (10, b"%d" % t.count),
        (11, b"1"),
        (12, _rows(rows)),
    ]


def legacy_tolerance(ppi: int) -> tuple[float, float]:
    """Largest position (pixels) and angle (radians) error of a legacy round trip."""
    return 0.5 * ppi / UNITS_PER_INCH + 1e-3, math.radians(0.5) + 1e-5
