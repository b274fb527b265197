"""Fingerprint images of ANSI/NIST-ITL Type-4 and Type-14 records, turned into image files.

Compression: Type-4's byte GCA is 0 (uncompressed) or 1 (WSQ); Type-14's field 14.011 CGA is
``NONE``, ``WSQ20``, ``JPEGB``, ``JPEGL``, ``JP2``, ``JP2L`` or ``PNG``. Uncompressed pixels
(8-bit grey, row by row) and WSQ become a PNG stating the record's resolution, so extraction
resamples them right. WSQ, the FBI's wavelet scalar quantisation and the standard compression
of 500 ppi fingerprints, is decoded with NIST's NBIS code (the ``wsq`` package) after its frame
header is checked: the size must match the record's and stay within the image limits, so a
decompression bomb is refused before any decoding. JPEG, JPEG 2000 and PNG data are handed on
as they are (Pillow decodes them), as is data whose record names no compression, unless the
record states a resolution the file does not (a 1000 ppi JPEG 2000 without resolution metadata
would be extracted as 500 ppi): then it is decoded and written as a PNG stating it. Lossless
JPEG (``JPEGL``, which Pillow cannot decode) and unknown codes raise
``unsupported_compression``.

Resolution: Type-4's ISR byte is 0 for the minimum scanning resolution (19.69 px/mm, 500 ppi)
and 1 for the native one (Type-1 field 1.011); Type-14 states it in 14.008 (scale units: 1 px
per inch, 2 px per cm, 0 none) and 14.009 (horizontal pixel scale). A stated resolution
outside ``PPI_RANGE`` (:mod:`node.formats.ansi_nist_fields`), and a record's image size
outside the image reader's limits (:func:`checked_size`: none empty, at most ``MAX_SIDE`` a
side and ``DEFAULT_MAX_PIXELS`` in all), are ``bad_record`` before any image is built.
"""

from __future__ import annotations

import io
import re
import struct
import subprocess
import sys
import warnings
from enum import Enum

import numpy as np
from PIL import Image

from matcher.imageio import DEFAULT_MAX_PIXELS, MAX_SIDE, load_grayscale
from node.formats.ansi_nist_fields import (
    MM_PER_INCH,
    T14,
    checked_ppi,
    error,
    first_item,
    number,
)

#: 19.69 px/mm, the standard's minimum scanning resolution (Type-4 ISR 0).
MIN_SCANNING_PPI = 500
#: Type-4 GCA codes.
TYPE4_UNCOMPRESSED, TYPE4_WSQ = 0, 1
#: Type-14 scale units (14.008).
SCALE_PPI, SCALE_PPCM = 1, 2
CM_PER_INCH = MM_PER_INCH / 10
#: WSQ markers: start of image, start of frame, and the table/block markers that carry a length.
WSQ_SOI, WSQ_SOF = b"\xff\xa0", b"\xff\xa2"
WSQ_SEGMENTS = range(0xA3, 0xA9)
#: A marker and its segment length, 2 bytes each.
WSQ_MARKER_AND_LENGTH = 4
#: Offset of the frame's height and width (2 bytes each) from its marker: marker 2, length 2,
#: black 1, white 1.
WSQ_SIZE_OFFSET = 6
_SIZE = struct.Struct(">HH")
#: NBIS's decoder (the ``wsq`` package's ``_wsq``) runs in a short-lived interpreter of its own
#: (about 25 ms to start): on a damaged stream its C code can free memory twice, which aborts
#: the process it runs in (a load's worker, or ``bdx`` itself, with every other file of the
#: load), and it prints ``ERROR :`` lines on stderr. The child reads the stream on stdin and
#: writes width, height (4 bytes each) and the pixels on stdout; it exits with
#: :data:`WSQ_REFUSED` when the decoder reports an error.
_WSQ_DECODER = """
import struct, sys, _wsq
try:
    pixels, width, height, _ = _wsq.decompress(sys.stdin.buffer.read())
except Exception as exc:
    sys.stderr.write(f"\\n{exc}")
    sys.exit(3)
sys.stdout.buffer.write(struct.pack(">II", width, height) + pixels)
"""
WSQ_REFUSED = 3
#: The last line of the child's stderr when NBIS refused the stream: its error code (the only
#: part of that stderr a refusal repeats).
_NBIS_ERROR = re.compile(r"WSQ Error: (-?[0-9]{1,6})")
_DECODED = struct.Struct(">II")
#: Seconds one WSQ image may take to decode (a 2000x2000 image takes about 0.2 s): a stream
#: that sends the decoder into a loop is refused instead of stalling the load.
WSQ_DECODE_TIMEOUT_S = 30


class Codec(Enum):
    RAW = "raw"  # 8-bit grey pixels, no header
    WSQ = "wsq"
    FILE = "file"  # an image file Pillow reads (JPEG, JPEG 2000, PNG)


_TYPE14 = {
    b"NONE": Codec.RAW,
    b"WSQ20": Codec.WSQ,
    b"WSQ": Codec.WSQ,  # the name before ANSI/NIST-ITL 1-2011
    b"JPEGB": Codec.FILE,
    b"JP2": Codec.FILE,
    b"JP2L": Codec.FILE,
    b"PNG": Codec.FILE,
}
#: Type-14 compressions of the standard this reader does not decode (named in the refusal).
_TYPE14_UNSUPPORTED = frozenset({b"JPEGL"})


def type4_codec(gca: int) -> Codec:
    if gca == TYPE4_UNCOMPRESSED:
        return Codec.RAW
    if gca == TYPE4_WSQ:
        return Codec.WSQ
    raise error(f"type-4 compression {gca} is not supported", "unsupported_compression")


def type14_codec(cga: bytes | None) -> Codec:
    if cga is None:
        return Codec.FILE
    name = first_item(cga).strip().upper()
    if name not in _TYPE14:  # the field is quoted only when it is a name of the standard's
        which = name.decode() + " " if name in _TYPE14_UNSUPPORTED else ""
        raise error(
            f"type-14 compression {which}(14.011) is not supported", "unsupported_compression"
        )
    return _TYPE14[name]


def type14_ppi(record: dict[int, bytes]) -> int | None:
    """The resolution of a Type-14 image in whole ppi (None when not stated); ``bad_record``
    when outside ``PPI_RANGE``."""
    if T14.SLC not in record or T14.HPS not in record:
        return None
    units, scale = number(record[T14.SLC], "14.008 SLC"), number(record[T14.HPS], "14.009 HPS")
    if units == SCALE_PPI and scale:
        return checked_ppi(scale, "14.009 HPS")
    if units == SCALE_PPCM and scale:
        return checked_ppi(scale * CM_PER_INCH, "14.009 HPS")
    return None


def checked_size(size: tuple[int, int], what: str) -> tuple[int, int]:
    """``size`` (width, height) from a record's fields; ``bad_record`` naming ``what`` unless
    each side is 1..``MAX_SIDE`` and the pixels at most ``DEFAULT_MAX_PIXELS`` (the image
    reader's limits)."""
    width, height = size
    if (
        not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE)
        or width * height > DEFAULT_MAX_PIXELS
    ):
        raise error(
            f"{what}: image of {width}x{height} pixels is empty or exceeds the limits", "bad_record"
        )
    return size


def image_file(codec: Codec, data: bytes, size: tuple[int, int] | None, ppi: int | None) -> bytes:
    """An image file of ``data``; ``size`` (width, height) is the record's, when it has one
    (checked by the caller: :func:`checked_size`)."""
    if codec is Codec.FILE:
        return data if ppi is None or _file_ppi(data) == ppi else _png(_pixels(data), ppi)
    if codec is Codec.WSQ:
        return _png(_wsq_pixels(data, size), ppi)
    if size is None:
        raise error("an uncompressed image needs its width and height", "bad_record")
    width, height = size
    if len(data) < width * height:
        raise error(f"{width}x{height} pixels do not fit in {len(data)} bytes", "truncated")
    return _png(np.frombuffer(data, np.uint8, width * height).reshape(height, width), ppi)


def _file_ppi(data: bytes) -> int | None:
    """The resolution an image file states (500, the extractor's default, when none)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            dpi = Image.open(io.BytesIO(data)).info.get("dpi")
        return round(float(dpi[0])) if dpi else MIN_SCANNING_PPI
    except Exception:  # not readable here: decoding it again (load_grayscale) says why
        return None


def _pixels(data: bytes) -> np.ndarray:
    return load_grayscale(data).pixels


def _png(pixels: np.ndarray, ppi: int | None) -> bytes:
    out = io.BytesIO()
    options = {"dpi": (ppi, ppi)} if ppi else {}
    Image.fromarray(pixels).save(out, format="PNG", **options)
    return out.getvalue()


def wsq_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a WSQ frame header, read without decoding."""
    if not data.startswith(WSQ_SOI):
        raise error("WSQ data does not start with the SOI marker", "bad_image")
    pos = len(WSQ_SOI)
    while pos + WSQ_MARKER_AND_LENGTH <= len(data):
        if data[pos : pos + 2] == WSQ_SOF:
            if pos + WSQ_SIZE_OFFSET + _SIZE.size > len(data):
                break
            height, width = _SIZE.unpack_from(data, pos + WSQ_SIZE_OFFSET)
            return width, height
        if data[pos] != WSQ_SOI[0] or data[pos + 1] not in WSQ_SEGMENTS:
            raise error(f"unknown WSQ marker {data[pos : pos + 2].hex()}", "bad_image")
        (length,) = struct.unpack_from(">H", data, pos + 2)
        pos += 2 + length
    raise error("WSQ data has no frame header", "truncated")


def _wsq_pixels(data: bytes, size: tuple[int, int] | None) -> np.ndarray:
    found = wsq_size(data)
    if size is not None and found != size:
        raise error(
            f"WSQ frame of {found[0]}x{found[1]} in a {size[0]}x{size[1]} record", "bad_record"
        )
    width, height = found
    if (
        not 0 < width <= MAX_SIDE
        or not 0 < height <= MAX_SIDE
        or width * height > DEFAULT_MAX_PIXELS
    ):
        raise error(f"WSQ image of {width}x{height} pixels exceeds the limits", "bad_image")
    width, height, pixels = _wsq_decode(data)
    if (width, height) != found or len(pixels) != width * height:
        raise error("decoded WSQ image differs from its frame header", "bad_image")
    return np.frombuffer(pixels, np.uint8).reshape(height, width)


def wsq_refusal(stderr: bytes) -> str:
    """What a refused WSQ stream is said to be, from the decoder child's stderr: NBIS's error
    code (its last line is ``WSQ Error: -89`` when ``_wsq`` refused the stream), never the
    line itself. An exception of another kind with no message (a ``MemoryError``) leaves
    NBIS's own ``ERROR`` lines last, and some of those print values read from the stream (a
    marker, a table id, a count): a person's record is not to be quoted."""
    lines = stderr.decode("ascii", "replace").strip().splitlines()
    code = _NBIS_ERROR.fullmatch(lines[-1].strip()) if lines else None
    said = f" (NBIS error {code[1]})" if code else ""
    return f"WSQ data cannot be decoded{said}"


def _wsq_decode(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and pixels of a WSQ stream, decoded in a child (see ``_WSQ_DECODER``)."""
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", _WSQ_DECODER],
            input=data,
            capture_output=True,
            timeout=WSQ_DECODE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise error(
            f"WSQ data did not decode within {WSQ_DECODE_TIMEOUT_S} s", "bad_image"
        ) from None
    if done.returncode == WSQ_REFUSED:
        raise error(wsq_refusal(done.stderr), "bad_image")
    if done.returncode != 0 or len(done.stdout) < _DECODED.size:
        raise error(
            f"WSQ data crashed the decoder (exit status {done.returncode}): damaged or hostile",
            "bad_image",
        )
    width, height = _DECODED.unpack_from(done.stdout)
    return width, height, done.stdout[_DECODED.size :]
