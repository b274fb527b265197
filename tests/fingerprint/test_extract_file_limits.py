"""extract_file refuses an image too large for one finger from its header, before decoding,
with exactly the pipeline's limit (params.MAX_SIDE at 500 ppi, scaled by the resolution)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from matcher.errors import ImageError
from matcher.fingerprint.extract import extract_file, params
from matcher.fingerprint.extract.resample import to_working_resolution


def header_only_png(width: int, height: int, ppi: float | None = None) -> bytes:
    """A valid PNG header declaring width x height (and ppi), with one pixel of data behind."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG", **({"dpi": (ppi, ppi)} if ppi else {}))
    small = buf.getvalue()
    ihdr = struct.pack(">II", width, height) + small[24:29]
    return small[:16] + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + small[33:]


def reason(data: bytes, ppi: float | None = None) -> str:
    with pytest.raises(ImageError) as info:
        extract_file(data, ppi=ppi)
    return info.value.reason


def pipeline_limit(ppi: float) -> int:
    """The largest side that the resampling stage accepts at ``ppi`` (searched, not computed)."""
    short = int(params.MIN_SIDE * ppi / params.TARGET_PPI) + 2
    side = int(params.MAX_SIDE * ppi / params.TARGET_PPI) - 3
    while True:
        try:
            to_working_resolution(np.zeros((short, side + 1), dtype=np.uint8), ppi)
        except ImageError as exc:
            assert exc.reason == "too_large"
            return side
        side += 1


def test_a_ten_print_sized_image_is_refused_before_decoding() -> None:
    """7999 x 7999 declared at 500 ppi: too large from the header (the decoder, which would
    have needed over 1 GB for a float or RGBA file of a few hundred KB, never runs)."""
    assert reason(header_only_png(7999, 7999)) == "too_large"
    assert reason(header_only_png(7999, 7999, ppi=1000)) == "too_large"


@pytest.mark.parametrize(
    ("file_ppi", "given_ppi", "ppi"),
    [
        (None, None, 500.0),
        (333, None, 333.0),
        (1000, None, 1000.0),
        (2540, None, 2540.0),
        (None, 750.0, 750.0),
        (1000, 600.0, 600.0),  # the caller's resolution wins over the file's
    ],
)
def test_the_header_limit_is_the_pipelines(
    file_ppi: float | None, given_ppi: float | None, ppi: float
) -> None:
    """At the limit the header passes and decoding starts (the data is missing: truncated);
    one pixel more is too large, exactly where the resampling stage would refuse it."""
    side = pipeline_limit(ppi)
    assert reason(header_only_png(side, 80, file_ppi), given_ppi) == "truncated"
    assert reason(header_only_png(80, side, file_ppi), given_ppi) == "truncated"
    assert reason(header_only_png(side + 1, 80, file_ppi), given_ppi) == "too_large"
    assert reason(header_only_png(80, side + 1, file_ppi), given_ppi) == "too_large"


@pytest.mark.parametrize("ppi", [50.0, 9000.0, float("nan")])
def test_a_bad_resolution_is_still_reported_as_such(ppi: float) -> None:
    """No side limit follows from an implausible resolution: the pipeline names it."""
    buf = io.BytesIO()
    Image.new("L", (2000, 300), 128).save(buf, format="PNG")
    assert reason(buf.getvalue(), ppi) == "bad_resolution"
