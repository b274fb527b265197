"""Files: EXIF orientation, every colour mode, and bad input (typed errors, never a crash)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from matcher import imageio
from matcher.errors import ImageError
from matcher.face import detect
from matcher.face import params as P
from matcher.face.pipeline import ExtractOptions, FaceExtraction, extract_face, extract_from_pixels
from matcher.face.template import similarity

from .conftest import encode

ORIENTATION = 0x0112


def test_png_path_and_bytes(tmp_path: Path, astronaut: npt.NDArray[np.uint8]) -> None:
    data = encode(astronaut)
    path = tmp_path / "a.png"
    path.write_bytes(data)
    from_path, from_bytes = extract_face(path), extract_face(data)
    assert np.array_equal(from_path.template.embedding, from_bytes.template.embedding)
    assert "decode" in from_path.timings_ms


@pytest.mark.parametrize(("orientation", "transpose"), [(6, 2), (8, 4), (3, 3)])
def test_exif_orientation_is_honoured(
    astronaut: npt.NDArray[np.uint8],
    orientation: int,
    transpose: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A JPEG stored sideways with an Orientation tag gives the upright extraction."""
    upright = extract_face(encode(astronaut, "JPEG", quality=95))
    # ROTATE_90 (2) is counter-clockwise: tag 6 says "rotate 90° clockwise to display".
    stored = Image.fromarray(astronaut).transpose(Image.Transpose(transpose))
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    buf = encode(np.asarray(stored), "JPEG", quality=95, exif=exif.tobytes())
    got = extract_face(buf)
    assert similarity(got.template, upright.template) > 0.99
    assert np.abs(got.box - upright.box).max() <= 4
    stripped = encode(np.asarray(stored), "JPEG", quality=95)  # same pixels, no tag
    monkeypatch.setattr(detect, "HOG_CNN_FALLBACK_STEPS", ())  # HOG alone, no CNN fallback
    with pytest.raises(Exception) as err:  # sideways: the frontal detector finds nothing
        extract_face(stripped)
    assert getattr(err.value, "reason", None) == "no_face"


@pytest.mark.parametrize(
    ("fmt", "mode", "min_similarity"),
    [
        ("JPEG", "CMYK", 0.97),
        ("PNG", "RGBA", 0.99),
        ("PNG", "P", 0.95),
        ("PNG", "L", 0.97),
        ("TIFF", "I;16", 0.97),
    ],
)
def test_colour_modes(
    astronaut: npt.NDArray[np.uint8],
    upright: FaceExtraction,
    fmt: str,
    mode: str,
    min_similarity: float,
) -> None:
    if mode == "I;16":  # 16-bit grey: Pillow writes it from a uint16 array
        grey = np.asarray(Image.fromarray(astronaut).convert("L"), dtype=np.uint16) * 257
        data = encode(grey, fmt)
        assert Image.open(__import__("io").BytesIO(data)).mode.startswith("I;16")
    else:
        data = encode(astronaut, fmt, mode=mode)
    got = extract_face(data)
    assert similarity(got.template, upright.template) > min_similarity


def test_transparent_png(astronaut: npt.NDArray[np.uint8], upright: FaceExtraction) -> None:
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    rgba[:40, :, 3] = 0  # a transparent band away from the face
    got = extract_face(encode(rgba))
    assert similarity(got.template, upright.template) > 0.98


def _png_header(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR is rewritten to declare ``width`` x ``height`` pixels."""
    small = encode(np.zeros((1, 1, 3), np.uint8))
    ihdr = struct.pack(">II", width, height) + small[24:29]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return small[:16] + ihdr + crc + small[33:]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not_an_image"),
        (b"this is not an image at all", "not_an_image"),
        (b"%PDF-1.7\n" + bytes(200), "not_an_image"),
        (_png_header(100_000, 100_000), "too_large"),
    ],
)
def test_bad_bytes(data: bytes, reason: str) -> None:
    with pytest.raises(ImageError) as err:
        extract_face(data)
    assert err.value.reason == reason


def test_truncated_jpeg(astronaut: npt.NDArray[np.uint8]) -> None:
    data = encode(astronaut, "JPEG", quality=90)
    with pytest.raises(ImageError) as err:
        extract_face(data[: len(data) // 2])
    assert err.value.reason == "truncated"


def test_byte_limit_is_applied(astronaut: npt.NDArray[np.uint8]) -> None:
    with pytest.raises(ImageError) as err:
        extract_face(encode(astronaut), ExtractOptions(max_bytes=1000))
    assert err.value.reason == "too_large"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as err:
        extract_face(tmp_path / "absent.jpg")
    assert err.value.reason == "unreadable_file"


def test_a_large_jpeg_is_decoded_reduced_with_positions_in_the_files_grid(
    astronaut: npt.NDArray[np.uint8],
) -> None:
    """A 6,656 px JPEG (13 x the astronaut) is decoded at 1/2 (3,328 px, at least
    DECODE_MIN_SIDE): the template is the full decode's, and the box and landmarks are given
    in the file's pixels, as from the full decode."""
    side = 13 * astronaut.shape[0]
    big = cv2.resize(astronaut, (side, side), interpolation=cv2.INTER_CUBIC)
    data = encode(big, "JPEG", quality=90)
    reduced = imageio.load_rgb(data, reduce_to=P.DECODE_MIN_SIDE)
    assert reduced.scale == 0.5 and reduced.width == side // 2 >= P.DECODE_MIN_SIDE
    full = extract_from_pixels(imageio.load_rgb(data).pixels)
    got = extract_face(data)
    assert similarity(got.template, full.template) > 0.999  # same photo, same detail
    assert np.abs(got.box - full.box).max() <= 0.01 * side
    assert np.abs(got.landmarks - full.landmarks).max() <= 0.01 * side
