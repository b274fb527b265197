"""Every error path of the shared image decoder, and the mode conversions."""

import io
import os
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matcher import imageio
from matcher.errors import ImageError


def _png(arr: np.ndarray, mode: str | None = None, **save: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG", **save)
    return buf.getvalue()


def _header_only_png(width: int, height: int, ppi: float | None = None) -> bytes:
    """A valid PNG header declaring width x height (and ppi), with one pixel of data behind."""
    small = _png(np.zeros((1, 1), dtype=np.uint8), **({"dpi": (ppi, ppi)} if ppi else {}))
    ihdr = struct.pack(">II", width, height) + small[24:29]
    return small[:16] + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + small[33:]


def _gradient() -> np.ndarray:
    return np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))


def test_grayscale_png_roundtrip() -> None:
    img = imageio.load_grayscale(_png(_gradient()))
    assert img.pixels.dtype == np.uint8 and img.pixels.shape == (48, 64)
    assert np.array_equal(img.pixels, _gradient())
    assert img.format == "PNG" and img.width == 64 and img.height == 48


def test_rgb_from_gray_has_three_channels() -> None:
    img = imageio.load_rgb(_png(_gradient()))
    assert img.pixels.shape == (48, 64, 3)


def test_reads_paths(tmp_path: Path) -> None:
    p = tmp_path / "x.png"
    p.write_bytes(_png(_gradient()))
    assert imageio.load_grayscale(p).pixels.shape == (48, 64)
    assert imageio.load_grayscale(str(p)).pixels.shape == (48, 64)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not_an_image"),
        (b"hello, this is not an image at all", "not_an_image"),
    ],
)
def test_not_an_image(data: bytes, reason: str) -> None:
    with pytest.raises(ImageError) as info:
        imageio.load_grayscale(data)
    assert info.value.reason == reason


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as info:
        imageio.load_grayscale(tmp_path / "nope.png")
    assert info.value.reason == "unreadable_file"


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b"P2\n2 2\n255\n1 2 3 DOE,JOHN_1980-01-31\n", "image data is truncated or corrupt"),
        (b"P1\n2 2\nDOE,JOHN\n", "image data is truncated or corrupt"),  # one letter quoted
        (b"P2\nDOE,JOHN 2\n255\n", "unreadable image header"),  # text where the width is
    ],
)
def test_a_decoders_message_never_quotes_the_file(data: bytes, said: str) -> None:
    """Pillow's messages quote the data (``Token too long found in data: DOE,JOHN_19``),
    and they reached load reports, the CLI and the API's 422: the error's type is said."""
    with pytest.raises(ImageError) as info:
        imageio.load_grayscale(data)
    assert info.value.message == f"{said} (ValueError)"


def test_truncated_png() -> None:
    data = _png(np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8))
    with pytest.raises(ImageError) as info:
        imageio.load_grayscale(data[: len(data) // 2])
    assert info.value.reason == "truncated"


def test_file_too_large() -> None:
    with pytest.raises(ImageError) as info:
        imageio.load_grayscale(_png(_gradient()), max_bytes=10)
    assert info.value.reason == "too_large"


def test_decompression_bomb_refused_before_decoding() -> None:
    # A valid PNG header declaring 100000 x 100000 pixels, with no pixel data behind it.
    with pytest.raises(ImageError) as info:
        imageio.load_grayscale(_header_only_png(100_000, 100_000))
    assert info.value.reason == "too_large"


def test_a_callers_side_limit_refuses_from_the_header() -> None:
    """The limit is asked with the file's resolution and applied before decoding: a header
    within it reaches the (missing) pixel data, one beyond it does not."""
    asked: list[float | None] = []

    def limit(ppi: float | None) -> int:
        asked.append(ppi)
        return 3000 if ppi == 1000.0 else 1500

    for load in (imageio.load_grayscale, imageio.load_rgb):
        for (width, height, ppi), reason in [
            ((3000, 64, 1000), "truncated"),
            ((64, 3001, 1000), "too_large"),
            ((1500, 64, None), "truncated"),
            ((1501, 64, None), "too_large"),
        ]:
            with pytest.raises(ImageError) as info:
                load(_header_only_png(width, height, ppi), side_limit=limit)
            assert info.value.reason == reason, (load.__name__, width, height, ppi)
    assert asked == [1000.0, 1000.0, None, None] * 2


def test_pixel_limit() -> None:
    with pytest.raises(ImageError) as info:
        imageio.load_grayscale(_png(_gradient()), max_pixels=100)
    assert info.value.reason == "too_large"


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    arr = (np.tile(np.arange(64, dtype=np.uint16), (8, 1)) * 1024).astype(np.uint16)
    img = imageio.load_grayscale(_png(arr))
    assert img.pixels.max() > 200 and img.pixels.min() == 0
    assert np.all(np.diff(img.pixels.astype(int), axis=1) >= 0)


@pytest.mark.parametrize("bits", [10, 12, 14, 16])
def test_high_bit_depth_keeps_its_contrast(bits: int) -> None:
    """10- to 14-bit scanner samples in a 16-bit PNG span the 8-bit range as 16-bit ones do
    (scaled by 65535 they came out nearly black and were refused as blank)."""
    ramp = np.tile(np.linspace(0, 1, 64), (8, 1))
    arr = np.round(ramp * ((1 << bits) - 1)).astype(np.uint16)
    img = imageio.load_grayscale(_png(arr))
    assert img.pixels.min() == 0 and img.pixels.max() == 255


def test_wide_integer_tiff_holding_8_bit_values() -> None:
    buf = io.BytesIO()
    Image.fromarray(_gradient().astype(np.int32), mode="I").save(buf, format="TIFF")
    assert np.array_equal(imageio.load_grayscale(buf.getvalue()).pixels, _gradient())


def test_special_file_is_refused_not_read(tmp_path: Path) -> None:
    """A device reports size 0 and never ends: it is refused before any read."""
    with pytest.raises(ImageError) as info:
        imageio.load_grayscale("/dev/zero", max_bytes=1024)
    assert info.value.reason == "unreadable_file"
    with pytest.raises(ImageError) as info:
        imageio.load_grayscale(tmp_path)  # a directory
    assert info.value.reason == "unreadable_file"


#: Seconds a decode of a FIFO may take before it counts as blocked (it takes microseconds).
FIFO_WAIT_S = 10


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    """Opening a FIFO waits for a writer: ``bdx eval fingerprint`` on a folder holding one
    hung forever. It is refused as a device is, at once."""
    fifo = tmp_path / "1_1.png"
    os.mkfifo(fifo)
    reasons: list[str] = []

    def decode() -> None:
        try:
            imageio.load_grayscale(fifo)
        except ImageError as exc:
            reasons.append(exc.reason)

    worker = threading.Thread(target=decode, daemon=True)
    worker.start()
    worker.join(FIFO_WAIT_S)
    blocked = worker.is_alive()
    if blocked:  # release it: a writer that writes nothing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join()
    assert not blocked and reasons == ["unreadable_file"]


def test_alpha_is_flattened_on_white() -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)  # fully transparent black
    img = imageio.load_rgb(_png(rgba))
    assert np.all(img.pixels == 255)


def test_cmyk_jpeg() -> None:
    buf = io.BytesIO()
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(buf, format="JPEG")
    img = imageio.load_rgb(buf.getvalue())
    assert img.pixels.shape == (16, 16, 3)
    r, g, b = img.pixels[8, 8].astype(int)
    assert r > 200 and g < 60 and b < 60  # cyan-free, magenta+yellow = red


def test_exif_orientation_is_honoured() -> None:
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", exif=exif, quality=95)
    img = imageio.load_rgb(buf.getvalue())
    assert img.pixels.shape == (40, 20, 3)
    assert img.pixels[:20].mean() > 200 and img.pixels[20:].mean() < 50  # white now on top


def _jpeg(arr: np.ndarray, **save: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95, **save)
    return buf.getvalue()


def test_reduce_to_decodes_a_large_jpeg_at_a_reduced_scale() -> None:
    """1/4 is the smallest scale keeping 1000 x 700 at least 250 on its longer side; the stated
    resolution scales with the pixels."""
    arr = np.zeros((700, 1000, 3), dtype=np.uint8)
    arr[:, :500] = 255  # left half white
    data = _jpeg(arr, dpi=(600, 600))
    img = imageio.load_rgb(data, reduce_to=250)
    assert img.pixels.shape == (175, 250, 3) and img.ppi == 150.0
    assert img.pixels[:, :120].mean() > 240 and img.pixels[:, 130:].mean() < 15
    assert imageio.load_rgb(data, reduce_to=300).pixels.shape == (350, 500, 3)  # 1/2
    assert imageio.load_rgb(data).pixels.shape == (700, 1000, 3)  # no reduce_to: full size


def test_reduce_to_leaves_small_jpegs_and_other_formats_whole() -> None:
    arr = np.full((700, 1000, 3), 128, dtype=np.uint8)
    assert imageio.load_rgb(_jpeg(arr), reduce_to=1000).pixels.shape == (700, 1000, 3)
    assert imageio.load_rgb(_png(arr), reduce_to=250).pixels.shape == (700, 1000, 3)


def test_reduce_to_keeps_the_exif_orientation() -> None:
    arr = np.zeros((400, 800, 3), dtype=np.uint8)
    arr[:, :400] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    img = imageio.load_rgb(_jpeg(arr, exif=exif), reduce_to=200)
    assert img.pixels.shape == (200, 100, 3)  # 1/4, then upright
    assert img.pixels[:90].mean() > 240 and img.pixels[110:].mean() < 15  # white now on top


def test_ppi_metadata_only_when_plausible() -> None:
    assert imageio.load_grayscale(_png(_gradient(), dpi=(500, 500))).ppi == 500.0
    assert imageio.load_grayscale(_png(_gradient(), dpi=(72, 72))).ppi is None
    assert imageio.load_grayscale(_png(_gradient())).ppi is None


def test_palette_and_bilevel() -> None:
    pal = Image.fromarray(_gradient()).convert("P")
    buf = io.BytesIO()
    pal.save(buf, format="PNG")
    assert imageio.load_grayscale(buf.getvalue()).pixels.shape == (48, 64)
    buf = io.BytesIO()
    Image.fromarray(_gradient()).convert("1").save(buf, format="PNG")
    assert set(np.unique(imageio.load_grayscale(buf.getvalue()).pixels)) <= {0, 255}


def test_only_image_formats_are_decoded() -> None:
    """EPS (handed to Ghostscript when installed) and other containers are refused before
    a plugin parses them."""
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(ImageError) as info:
        imageio.load_grayscale(eps)
    assert info.value.reason == "not_an_image"
    buf = io.BytesIO()
    Image.fromarray(_gradient()).save(buf, format="ICO")
    with pytest.raises(ImageError):
        imageio.load_grayscale(buf.getvalue())
    for fmt in ("PPM", "BMP", "TIFF", "GIF", "JPEG2000"):
        buf = io.BytesIO()
        Image.fromarray(_gradient()).save(buf, format=fmt)
        assert imageio.load_grayscale(buf.getvalue()).pixels.shape == (48, 64), fmt


#: Decodes one file in a fresh interpreter; prints the growth of its peak RSS (the kernel's
#: high-water mark, reset just before) and the result's size, in bytes.
_PEAK_RSS = """
import re, sys
from matcher import imageio
def kib(key):
    return int(re.search(key + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))
data = open(sys.argv[1], "rb").read()
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
base = kib("VmRSS")
pixels = getattr(imageio, sys.argv[2])(data).pixels
print((kib("VmHWM") - base) * 1024, pixels.nbytes)
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux /proc only")
@pytest.mark.parametrize(
    ("kind", "load"),
    [
        ("float32", "load_grayscale"),
        ("uint16", "load_grayscale"),
        ("uint16", "load_rgb"),
        ("rgba", "load_grayscale"),
        ("rgba", "load_rgb"),
    ],
)
def test_decoding_needs_little_more_than_the_image(tmp_path: Path, kind: str, load: str) -> None:
    """A 16 MP float, 16-bit or RGBA file: peak memory is Pillow's image (at most 4 bytes a
    pixel) plus the result plus band temporaries. Float64 and RGBA copies of the whole image
    grew it by 183 to 444 MiB (a 64 MP file of 359 KiB took 1.2 GB)."""
    side = 4000
    img = {
        "float32": lambda: Image.fromarray(np.full((side, side), 3.0, dtype=np.float32)),
        "uint16": lambda: Image.fromarray(np.full((side, side), 1000, dtype=np.uint16)),
        "rgba": lambda: Image.new("RGBA", (side, side), (10, 20, 30, 128)),
    }[kind]()
    path = tmp_path / "big.img"
    img.save(path, format="TIFF" if kind == "float32" else "PNG")
    del img
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, str(path), load],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    growth, result = int(out[0]), int(out[1])
    assert growth < 4 * side * side + result + 48 * 2**20, (growth >> 20, result >> 20)


def test_band_boundaries_leave_no_trace() -> None:
    """Images of several bands decode exactly as one band: 16-bit and float scaling use the
    whole image's range, alpha is flattened per pixel."""
    rng = np.random.default_rng(5)
    rows = imageio.BAND_PIXELS // 600 * 2 + 7  # two full bands of 600-pixel rows and a bit
    wide = rng.integers(0, 4096, (rows, 600), dtype=np.uint16)
    wide[-1, -1] = 4095
    expected = (wide.astype(np.float64) * (255.0 / 4095)).astype(np.uint8)
    assert np.array_equal(imageio.load_grayscale(_png(wide)).pixels, expected)
    floats = rng.normal(0.0, 3.0, (rows, 600)).astype(np.float32)
    floats[0, 0], floats[-1, -1] = np.nan, np.inf
    buf = io.BytesIO()
    Image.fromarray(floats).save(buf, format="TIFF")
    finite = floats[np.isfinite(floats)]
    lo, hi = float(finite.min()), float(finite.max())
    scaled = (np.nan_to_num(floats, nan=lo, posinf=hi, neginf=lo) - lo) * (255.0 / (hi - lo))
    expected = np.clip(scaled, 0, 255).astype(np.uint8)
    assert np.array_equal(imageio.load_grayscale(buf.getvalue()).pixels, expected)
    rgba = rng.integers(0, 256, (rows, 600, 4), dtype=np.uint8)
    whole = Image.alpha_composite(Image.new("RGBA", (600, rows), "white"), Image.fromarray(rgba))
    for load, mode in ((imageio.load_grayscale, "L"), (imageio.load_rgb, "RGB")):
        assert np.array_equal(load(_png(rgba)).pixels, np.asarray(whole.convert(mode)))
