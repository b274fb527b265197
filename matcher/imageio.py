"""Safe image decoding for every extractor: size checks before decoding, clear typed errors.

Pillow reads the dimensions from the header first, so a decompression bomb (a small file that
declares a huge image) is refused before any pixel is decoded; a caller may tighten the limit
per side for the file's stated resolution (``side_limit``: the fingerprint extractor takes one
finger, not a ten-print card). Decoding honours the EXIF orientation tag and converts every
mode (palette, alpha, CMYK, 16-bit, float, 1-bit) to 8-bit grayscale or RGB, in horizontal
bands (:data:`BAND_PIXELS`): the peak memory is Pillow's decoded image plus the result. Integer
samples wider than 8 bits are scaled from the full range of the smallest bit depth that holds
them (so 10-, 12- and 14-bit data in 16-bit files keep their contrast). A caller that needs
less than the full size (faces: ``reduce_to``) has a large JPEG decoded at 1/2, 1/4 or 1/8
scale by libjpeg, never at full size.

Errors (:class:`~matcher.errors.ImageError`), by ``reason``:

``unreadable_file``  the path does not exist, cannot be read or is not a regular file
``too_large``        the file or the declared pixel count exceeds the limits
``not_an_image``     none of the decoded formats (:data:`FORMATS`) recognised
``empty_image``      zero width or height
``truncated``        the header is fine but the pixel data is cut short or corrupt
``unsupported_image`` a mode or layout that cannot be converted (e.g. multi-channel float)

A decoder's failure is named by its type, never by its message (which may quote the file).
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from matcher.errors import ImageError
from matcher.readfile import FileTooLargeError, NotRegularFileError, read_bounded

#: Largest file accepted (bytes). Fingerprint and face images are at most a few MB; 64 MiB leaves
#: room for uncompressed TIFF scans of ten-print cards at 1000 ppi.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: Largest declared pixel count. A 1000 ppi ten-print card is about 8000 x 8000 (64 MP); anything
#: bigger is far more likely a decompression bomb than a biometric sample.
DEFAULT_MAX_PIXELS = 64_000_000
#: Largest side in pixels (the ISO/IEC 19794-2 coordinate range is 14 bits).
MAX_SIDE = (1 << 14) - 1
#: Resolution metadata outside this range is ignored: 72/96 dpi are screen defaults and (1, 1)
#: means "aspect ratio only"; neither says anything about the capture resolution.
PLAUSIBLE_PPI = (250.0, 5000.0)
#: Pixels are converted in horizontal bands of about this many pixels, so that mode conversion,
#: alpha flattening and scaling to 8 bits need temporaries of one band (a few MB) rather than
#: float64 or RGBA copies of the whole image (over 1 GB for a 64 MP file of a few hundred KB).
BAND_PIXELS = 1 << 20
#: Pillow modes of one channel with samples wider than 8 bits, scaled to 8 bits by range.
HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")

#: Containers decoded (Pillow's format ids): what scanners, cameras and ANSI/NIST-ITL
#: transactions deliver (PPM covers PGM and PBM). Everything else, EPS above all (Pillow hands
#: it to Ghostscript when one is installed), is ``not_an_image`` before any plugin parses it.
FORMATS = ("PNG", "JPEG", "JPEG2000", "TIFF", "BMP", "PPM", "GIF", "WEBP")
#: File name endings of those containers (Pillow's own table): what loaders and evaluation
#: commands take for images, so that no file the decoder reads is passed over for its name.
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    ext for ext, fmt in Image.registered_extensions().items() if fmt in FORMATS
)

Source = bytes | bytearray | memoryview | str | os.PathLike[str]
#: A caller's largest accepted side in pixels, given the resolution the file states (its
#: plausible ppi, or None): checked against the header before any pixel is decoded.
SideLimit = Callable[[float | None], int]


@dataclass(frozen=True)
class DecodedImage:
    """Decoded pixels: ``pixels`` is uint8, shape (H, W) for grayscale or (H, W, 3) for RGB.

    ``ppi`` is the resolution stated in the file's metadata when it is plausible, else None.
    ``format`` is the container format Pillow recognised (``PNG``, ``JPEG``, ``TIFF``...).
    ``scale`` is decoded pixels per pixel of the file (below 1 only when a large JPEG was
    decoded at a reduced scale, ``reduce_to``): divide coordinates by it to place them in the
    file's own pixel grid.
    """

    pixels: npt.NDArray[np.uint8]
    ppi: float | None
    format: str
    scale: float = 1.0

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def _read(source: Source, max_bytes: int) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    else:
        path = Path(source)
        try:  # a FIFO is refused at once, not waited on; a device or folder too, unread
            data = read_bounded(path, max_bytes)
        except NotRegularFileError:
            raise ImageError(f"{path.name}: not a regular file", reason="unreadable_file") from None
        except FileTooLargeError as exc:
            raise ImageError(
                f"{path.name}: file of {exc.said} exceeds the limit of {max_bytes}",
                reason="too_large",
            ) from None
        except OSError as exc:
            raise ImageError(
                f"{path.name}: cannot read ({exc.strerror or type(exc).__name__})",
                reason="unreadable_file",
            ) from exc
    if len(data) > max_bytes:
        raise ImageError(
            f"image of {len(data)} bytes exceeds the limit of {max_bytes}", reason="too_large"
        )
    if not data:
        raise ImageError("empty file", reason="not_an_image")
    return data


def _draft(img: Image.Image, reduce_to: int | None) -> float:
    """Ask libjpeg to decode a JPEG larger than ``reduce_to`` (longer side) at 1/2, 1/4 or 1/8
    scale, the largest reduction that keeps the longer side at least ``reduce_to`` (its DCT
    scaling: the full-size pixels are never produced). Returns the scale kept (1.0 when none)."""
    width, height = img.size
    longer = max(width, height)
    if reduce_to is None or img.format != "JPEG" or longer <= reduce_to:
        return 1.0
    wanted = (max(1, width * reduce_to // longer), max(1, height * reduce_to // longer))
    if img.draft(None, wanted) is None:  # not a single-tile baseline/progressive JPEG
        return 1.0
    return img.size[0] / width


def _open(
    data: bytes, max_pixels: int, side_limit: SideLimit | None, reduce_to: int | None = None
) -> tuple[Image.Image, str, float | None, float]:
    """Open, check the declared size, decode and orient. Returns (image, format, ppi, scale)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError as exc:
        raise ImageError("not a recognised image format", reason="not_an_image") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError("declared image size is too large", reason="too_large") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"unreadable image header ({_kind(exc)})", reason="not_an_image") from exc
    max_side = side_limit(_ppi(img)) if side_limit is not None else MAX_SIDE
    _check_size(img.size, max_pixels, max_side)
    scale = _draft(img, reduce_to)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
            ImageOps.exif_transpose(img, in_place=True)  # else a copy even when upright
    except Image.DecompressionBombWarning as exc:
        raise ImageError("declared image size is too large", reason="too_large") from exc
    except (OSError, SyntaxError, ValueError, IndexError, struct.error) as exc:
        raise ImageError(
            f"image data is truncated or corrupt ({_kind(exc)})", reason="truncated"
        ) from exc
    fmt, ppi = str(img.format or "unknown"), _ppi(img)
    return img, fmt, (ppi * scale if ppi is not None else None), scale


def _kind(exc: Exception) -> str:
    """What a decoder's error says in a message: its type only. Pillow's messages quote the
    file (a plain PGM's text pixels: ``Token too long found in data: <11 bytes>``), and an
    image's bytes are a person's record; messages name formats and fields, never contents."""
    return type(exc).__name__


def _check_size(size: tuple[int, int], max_pixels: int, max_side: int) -> None:
    """Refuse a declared (width, height) that is empty or beyond the limits."""
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"image has no pixels ({width}x{height})", reason="empty_image")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > max_pixels:
        raise ImageError(
            f"image of {width}x{height} pixels exceeds the limit of {max_pixels} pixels "
            f"or {MAX_SIDE} per side",
            reason="too_large",
        )
    if max(width, height) > max_side:
        raise ImageError(
            f"image of {width}x{height} pixels exceeds the limit of {max_side} per side "
            "at its resolution",
            reason="too_large",
        )


def _ppi(img: Image.Image) -> float | None:
    dpi = img.info.get("dpi")
    if not dpi:
        return None
    try:
        value = float(dpi[0])
    except (TypeError, ValueError, IndexError):
        return None
    lo, hi = PLAUSIBLE_PPI
    # PNG stores pixels per metre: round away the conversion error (499.999 -> 500.0).
    return round(value, 1) if lo <= value <= hi else None


def _bands(img: Image.Image) -> Iterator[tuple[int, Image.Image]]:
    """(first row, crop) of ``img`` in horizontal bands of about :data:`BAND_PIXELS`."""
    width, height = img.size
    rows = max(1, BAND_PIXELS // width)
    for top in range(0, height, rows):
        yield top, img.crop((0, top, width, min(height, top + rows)))


def _sample_range(img: Image.Image) -> tuple[float, float]:
    """(lo, hi) of a single-channel integer or float image that map to 0 and 255.

    Float: the finite extremes, or (0, 1) when they lie within it. Integer: from min(0, lowest)
    to the full scale of the smallest bit depth (8 at least) that holds the highest sample, so
    12- and 14-bit scanner samples stored in 16-bit containers keep their contrast.
    """
    floating = img.mode == "F"
    lo, hi = np.inf, -np.inf
    for _, band in _bands(img):
        arr = np.asarray(band)
        if floating:
            arr = arr[np.isfinite(arr)]
        if arr.size:
            lo, hi = min(lo, float(arr.min())), max(hi, float(arr.max()))
    if floating:
        if lo > hi:
            raise ImageError("image has no finite pixel values", reason="unsupported_image")
        return (0.0, 1.0) if lo >= 0.0 and hi <= 1.0 else (lo, hi)
    top = (1 << max(8, int(hi).bit_length())) - 1 if hi > 0 else 255
    return min(0.0, lo), float(top)


def _scale(arr: np.ndarray, lo: float, hi: float) -> npt.NDArray[np.uint8]:
    """One band (h, W) of integer or float samples to uint8, ``lo``..``hi`` onto 0..255.

    Floats are scaled in their own precision (float32 for mode F) with non-finite values
    clamped; integers through float64, which holds every 32-bit sample exactly.
    """
    if np.issubdtype(arr.dtype, np.floating):
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        out = np.nan_to_num(arr, nan=lo, posinf=hi, neginf=lo)
        return np.clip((out - lo) * scale, 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        return ((arr.astype(np.float64) - lo) * (255.0 / max(hi - lo, 1.0))).astype(np.uint8)
    raise ImageError(f"unsupported pixel type {arr.dtype}", reason="unsupported_image")


def _high_depth(img: Image.Image) -> npt.NDArray[np.uint8]:
    """(H, W) uint8 of a single-channel image with samples wider than 8 bits (modes I*, F)."""
    lo, hi = _sample_range(img)
    out = np.empty((img.height, img.width), dtype=np.uint8)
    for top, band in _bands(img):
        out[top : top + band.height] = _scale(np.asarray(band), lo, hi)
    return out


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Composite an image with transparency over white (the background of a paper print)."""
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba)


def _eight_bit(img: Image.Image, gray: bool) -> npt.NDArray[np.uint8]:
    """(H, W) or (H, W, 3) uint8 of an 8-bit (or bilevel) image of any mode, band by band."""
    target = "L" if gray else "RGB"
    alpha = _has_alpha(img)
    out = np.empty((img.height, img.width) if gray else (img.height, img.width, 3), np.uint8)
    for top, band in _bands(img):
        piece = _flatten_alpha(band) if alpha else band
        out[top : top + band.height] = np.asarray(piece.convert(target))
    return out


def _convert(img: Image.Image, gray: bool) -> npt.NDArray[np.uint8]:
    """Decoded pixels, in bands so that no temporary is larger than one band."""
    mode = img.mode
    try:
        if mode in HIGH_DEPTH_MODES:
            single = _high_depth(img)
            if gray:
                return single
            rgb = np.empty((*single.shape, 3), dtype=np.uint8)
            rgb[...] = single[:, :, None]
            return rgb
        return _eight_bit(img, gray)
    except (OSError, ValueError) as exc:
        raise ImageError(
            f"cannot convert image mode {mode} ({_kind(exc)})", reason="unsupported_image"
        ) from exc


def _decode(
    source: Source,
    gray: bool,
    max_bytes: int,
    max_pixels: int,
    side_limit: SideLimit | None,
    reduce_to: int | None = None,
) -> DecodedImage:
    data = _read(source, max_bytes)
    img, fmt, ppi, scale = _open(data, max_pixels, side_limit, reduce_to)
    return DecodedImage(pixels=_convert(img, gray), ppi=ppi, format=fmt, scale=scale)


def load_grayscale(
    source: Source,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    side_limit: SideLimit | None = None,
) -> DecodedImage:
    """Decode ``source`` (bytes or a path) to an 8-bit grayscale image, pixels (H, W) uint8.

    ``side_limit`` (optional) gives the largest side accepted for the file's stated resolution;
    a larger image is ``too_large`` from its header, before any pixel is decoded.
    """
    return _decode(source, True, max_bytes, max_pixels, side_limit)


def load_rgb(
    source: Source,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    side_limit: SideLimit | None = None,
    reduce_to: int | None = None,
) -> DecodedImage:
    """Decode ``source`` (bytes or a path) to 8-bit RGB, pixels (H, W, 3) uint8, upright.

    ``side_limit`` as for :func:`load_grayscale`. ``reduce_to`` (optional, pixels): a JPEG
    whose longer side exceeds it is decoded at the smallest of 1/2, 1/4, 1/8 scale that keeps
    the longer side at least ``reduce_to`` (the stated ``ppi`` scales with it); other formats
    are decoded at full size.
    """
    return _decode(source, False, max_bytes, max_pixels, side_limit, reduce_to)
