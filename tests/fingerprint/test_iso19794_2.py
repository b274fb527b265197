"""ISO/IEC 19794-2:2005 codec: layout, round trips, and typed errors for malformed records."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matcher.errors import TemplateFormatError
from matcher.fingerprint import iso19794_2 as iso
from matcher.fingerprint.template import BIFURCATION, ENDING, OTHER, FingerprintTemplate


def _template(n: int = 3, **kw: object) -> FingerprintTemplate:
    args: dict[str, object] = dict(
        x=np.array([10.0, 200.4, 0.0][:n], dtype=np.float32),
        y=np.array([20.0, 5.6, 299.0][:n], dtype=np.float32),
        angle=np.array([0.0, math.pi / 2, 6.2][:n], dtype=np.float32),
        kind=np.array([ENDING, BIFURCATION, OTHER][:n], dtype=np.uint8),
        quality=np.array([50, 100, 1][:n], dtype=np.uint8),
        width=388,
        height=374,
        image_quality=77,
        finger_position=2,
    )
    args.update(kw)
    return FingerprintTemplate(**args)  # type: ignore[arg-type]


def test_layout_is_byte_exact() -> None:
    b = iso.encode(_template())
    assert len(b) == 24 + 4 + 3 * 6 + 2
    assert b[:8] == b"FMR\x00 20\x00"
    assert struct.unpack(">I", b[8:12])[0] == len(b)
    assert b[12:14] == b"\x00\x00"  # capture equipment
    assert struct.unpack(">HHHH", b[14:22]) == (388, 374, 197, 197)
    assert b[22:24] == b"\x01\x00"  # one view, reserved byte
    assert b[24:28] == bytes([2, 0, 77, 3])
    m0 = b[28:34]
    assert m0 == bytes([0x40, 10, 0, 20, 0, 50])  # ending (01), x=10, y=20, angle 0, q 50
    m1 = b[34:40]
    assert m1 == bytes([0x80, 200, 0, 6, 64, 100])  # bifurcation, x 200.4->200, y 5.6->6, 90°
    m2 = b[40:46]
    assert m2[0] >> 6 == 0 and m2[4] == round(6.2 / iso.ANGLE_UNIT) % 256
    assert b[-2:] == b"\x00\x00"


def test_resolution_conversions() -> None:
    assert iso.ppi_to_ppcm(500) == 197
    assert iso.ppcm_to_ppi(197) == 500
    assert iso.decode(iso.encode(_template())).resolution_ppi == 500


def test_empty_template_round_trips() -> None:
    t = _template(0)
    assert iso.decode(iso.encode(t)) == t


def test_multiple_views() -> None:
    a, b = _template(), _template(2, finger_position=7)
    data = iso.encode_views([a, b])
    assert iso.view_count(data) == 2
    views = iso.decode_all(data)
    assert [v.finger_position for v in views] == [2, 7]
    assert iso.decode(data).finger_position == 2
    assert iso.encode_views(views) == data


def test_views_of_one_finger_are_numbered() -> None:
    """ISO/IEC 19794-2:2005: each (finger position, view number) pair is unique in a record;
    every view used to be written as view 0."""
    a, b = _template(), _template(2, finger_position=7)
    data = iso.encode_views([a, b, a, a])
    offsets, pos = [], 24
    for v in iso.decode_all(data):
        offsets.append(pos)
        pos = len(iso.encode(v)) - 24 + pos
    assert [(data[o], data[o + 1] >> 4) for o in offsets] == [(2, 0), (7, 0), (2, 1), (2, 2)]
    assert iso.encode_views(iso.decode_all(data)) == data
    with pytest.raises(TemplateFormatError) as e:
        iso.encode_views([a] * (iso.MAX_VIEWS_PER_FINGER + 1))
    assert e.value.reason == "too_many_views"


def test_encode_rejects_bad_view_sets() -> None:
    with pytest.raises(TemplateFormatError) as e:
        iso.encode_views([])
    assert e.value.reason == "no_finger_views"
    with pytest.raises(TemplateFormatError) as e:
        iso.encode_views([_template(), _template(width=400)])
    assert e.value.reason == "inconsistent_views"


@pytest.mark.parametrize("field", ["x", "y", "angle", "kind", "quality"])
def test_a_value_that_is_not_numeric_is_named_by_its_field_never_quoted(field: str) -> None:
    """numpy's message quoted the value (could not convert string to float: 'DOE,JOHN...')
    into the CLI's line, a load's report and the API's 422."""
    with pytest.raises(TemplateFormatError) as e:
        _template(**{field: ["DOE,JOHN 1970-01-01", "1", "2"]})
    assert str(e.value) == f"{field}: not numeric" and e.value.__cause__ is None


def test_extended_data_is_skipped() -> None:
    b = bytearray(iso.encode(_template()))
    ext = b"\x00\x01\x00\x07abc"
    b[-2:] = struct.pack(">H", len(ext))
    b += ext
    b[8:12] = struct.pack(">I", len(b))
    assert iso.decode(bytes(b)) == iso.decode(iso.encode(_template()))


def _field(w: int = 388, h: int = 374) -> np.ndarray:
    codes = (np.arange((h // 16) * (w // 16)) % 181).reshape(h // 16, w // 16)
    return np.where(codes == 180, 255, codes).astype(np.uint8)


def test_orientation_field_travels_in_a_vendor_extended_data_area() -> None:
    t = _template(orientation=_field())
    b = iso.encode(t)
    plain = iso.encode(_template())
    rows, cols = 374 // 16, 388 // 16
    area = 4 + 6 + rows * cols
    assert len(b) == len(plain) + area
    ext = b[len(plain) - 2 :]
    assert struct.unpack(">HHHBBHH", ext[:12]) == (
        area,
        iso.FIELD_TYPE,
        area - 4,
        iso.FIELD_FORMAT,
        16,
        rows,
        cols,
    )
    assert 0x0100 <= iso.FIELD_TYPE <= 0xFFFF  # ISO's vendor-defined range
    back = iso.decode(b)
    assert back.orientation is not None and np.array_equal(back.orientation, t.orientation)
    assert iso.encode(back) == b
    assert iso.decode(plain).orientation is None  # records without the area: no field
    # Beside a foreign area (kept only as far as framing allows; dropped on decode).
    foreign = b"\x00\x01\x00\x03abc"
    data = bytearray(b)
    data[len(plain) - 2 : len(plain)] = struct.pack(">H", area + len(foreign))
    data[len(plain) :] = foreign + b[len(plain) :]
    data[8:12] = struct.pack(">I", len(data))
    assert iso.decode(bytes(data)) == back


def _with_area(payload: bytes, kind: int = 0xBD01, count: int = 1) -> bytes:
    plain = bytearray(iso.encode(_template()))
    ext = (struct.pack(">HH", kind, len(payload)) + payload) * count
    plain[-2:] = struct.pack(">H", len(ext))
    plain += ext
    plain[8:12] = struct.pack(">I", len(plain))
    return bytes(plain)


def _payload(fmt: int = 1, block: int = 16, rows: int = 23, cols: int = 24, fill: int = 7) -> bytes:
    return struct.pack(">BBHH", fmt, block, rows, cols) + bytes([fill]) * (rows * cols)


@pytest.mark.parametrize(
    "data",
    [
        _with_area(_payload(fmt=2)),
        _with_area(_payload(block=8)),
        _with_area(_payload(rows=22)),
        _with_area(_payload(fill=200)),
        _with_area(_payload()[:-1]),
        _with_area(_payload()[:3]),
        _with_area(_payload(), count=2),
    ],
)
def test_malformed_orientation_fields_are_rejected(data: bytes) -> None:
    with pytest.raises(TemplateFormatError) as e:
        iso.decode(data)
    assert e.value.reason == "bad_orientation_field"
    assert "19794-2" in e.value.message


def test_orientation_field_too_large_for_the_record() -> None:
    w = h = 16 * 300  # 90,000 blocks do not fit a 16-bit extended data length
    t = FingerprintTemplate(
        x=np.zeros(0, np.float32),
        y=np.zeros(0, np.float32),
        angle=np.zeros(0, np.float32),
        kind=np.zeros(0, np.uint8),
        quality=np.zeros(0, np.uint8),
        width=w,
        height=h,
        orientation=np.zeros((300, 300), np.uint8),
    )
    with pytest.raises(TemplateFormatError) as e:
        iso.encode(t)
    assert e.value.reason == "orientation_field_too_large"


def _mutate(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


GOOD = iso.encode(_template())
BAD_CASES = {
    "bad_magic": _mutate(GOOD, 0, b"FIR\x00"),
    "bad_version": _mutate(GOOD, 4, b" 30\x00"),
    "truncated": GOOD[:-1],
    "trailing_bytes": _mutate(GOOD, 8, struct.pack(">I", len(GOOD) - 1)),
    "reserved_bits_set": _mutate(GOOD, 23, b"\x01"),
    "bad_image_size": _mutate(GOOD, 14, b"\x00\x00"),
    "bad_resolution": _mutate(GOOD, 18, b"\x00\x00"),
    "no_finger_views": _mutate(GOOD, 22, b"\x00"),
    "bad_finger_position": _mutate(GOOD, 24, b"\x0b"),
    "bad_quality": _mutate(GOOD, 26, b"\x65"),
    "too_many_minutiae": _mutate(GOOD, 27, b"\x04"),
    "unknown_minutia_type": _mutate(GOOD, 28, b"\xc0"),
    "coordinates_outside_image": _mutate(GOOD, 28, b"\x41\x84"),  # x = 388 = width
}


@pytest.mark.parametrize("reason", sorted(BAD_CASES))
def test_malformed_records_are_rejected_with_a_reason(reason: str) -> None:
    with pytest.raises(TemplateFormatError) as e:
        iso.decode(BAD_CASES[reason])
    assert e.value.reason == reason
    assert "19794-2" in e.value.message


def test_short_header_and_trailing_views() -> None:
    with pytest.raises(TemplateFormatError) as e:
        iso.decode(b"FMR\x00")
    assert e.value.reason == "truncated"
    data = GOOD + b"\x00\x00"
    data = _mutate(data, 8, struct.pack(">I", len(data)))
    with pytest.raises(TemplateFormatError) as e:
        iso.decode(data)
    assert e.value.reason == "trailing_bytes"
    with pytest.raises(TemplateFormatError) as e:
        iso.decode("FMR")  # type: ignore[arg-type]
    assert e.value.reason == "not_bytes"


@st.composite
def templates(draw: st.DrawFn) -> FingerprintTemplate:
    w = draw(st.integers(1, 2000))
    h = draw(st.integers(1, 2000))
    n = draw(st.integers(0, 40))
    fl = st.floats(0, 1, allow_nan=False)
    xs = [draw(fl) * (w - 1) for _ in range(n)]
    ys = [draw(fl) * (h - 1) for _ in range(n)]
    angles = [draw(st.floats(0, 2 * math.pi, exclude_max=True)) for _ in range(n)]
    field = None
    if draw(st.booleans()):
        rng = np.random.default_rng(draw(st.integers(0, 2**16)))
        codes = rng.integers(0, 180, (h // 16, w // 16))
        field = np.where(rng.random(codes.shape) < 0.3, 255, codes).astype(np.uint8)
    return FingerprintTemplate(
        x=np.array(xs, dtype=np.float32),
        y=np.array(ys, dtype=np.float32),
        angle=np.array(angles, dtype=np.float32) % np.float32(2 * math.pi),
        kind=np.array(draw(st.lists(st.sampled_from([0, 1, 2]), min_size=n, max_size=n))),
        quality=np.array(draw(st.lists(st.integers(0, 100), min_size=n, max_size=n))),
        width=w,
        height=h,
        resolution_ppi=draw(st.sampled_from([500, 569, 1000, 300])),
        image_quality=draw(st.integers(0, 100)),
        finger_position=draw(st.integers(0, 10)),
        orientation=field,
    )


def _quantised(t: FingerprintTemplate) -> FingerprintTemplate:
    a = np.rint(t.angle.astype(np.float64) / iso.ANGLE_UNIT) % 256
    return FingerprintTemplate(
        x=np.clip(np.rint(t.x), 0, t.width - 1),
        y=np.clip(np.rint(t.y), 0, t.height - 1),
        angle=(a * iso.ANGLE_UNIT).astype(np.float32),
        kind=t.kind,
        quality=t.quality,
        width=t.width,
        height=t.height,
        resolution_ppi=iso.ppcm_to_ppi(iso.ppi_to_ppcm(t.resolution_ppi)),
        image_quality=t.image_quality,
        finger_position=t.finger_position,
        orientation=t.orientation,
    )


@settings(max_examples=150, deadline=None)
@given(templates())
def test_round_trips(t: FingerprintTemplate) -> None:
    data = iso.encode(t)
    back = iso.decode(data)
    assert back == _quantised(t)
    assert iso.encode(back) == data


@settings(max_examples=300, deadline=None)
@given(
    templates(),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
    st.integers(0, 10_000),
)
def test_mutations_decode_or_raise_typed_error(
    t: FingerprintTemplate, edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(iso.encode(t))
    for off, val in edits:
        data[off % len(data)] = val
    data = data[: len(data) - cut % 8] if cut % 3 == 0 else data
    try:
        back = iso.decode(bytes(data))
    except TemplateFormatError as e:
        assert e.reason != "bad_template" or e.message
    else:
        assert isinstance(back, FingerprintTemplate)
        assert iso.encode(back) == iso.encode(iso.decode(iso.encode(back)))
