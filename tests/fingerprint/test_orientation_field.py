"""The template's coarse orientation field: validation, extraction, and the matcher's term."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matcher.errors import TemplateFormatError
from matcher.fingerprint.extract import run
from matcher.fingerprint.match import explain, pack, prepare, score, score_many
from matcher.fingerprint.match import params as P
from matcher.fingerprint.match.kernel import consolidate
from matcher.fingerprint.template import (
    FIELD_BACKGROUND,
    FIELD_BLOCK,
    FingerprintTemplate,
    field_codes,
    field_shape,
)
from tests.fingerprint.support import cut_to

W, H = 320, 400
U8 = npt.NDArray[np.uint8]


def _flow(x: np.ndarray, y_up: np.ndarray, seed: int) -> np.ndarray:
    """A smooth ridge orientation (radians, counter-clockwise, y up) in a finger's own frame."""
    rng = np.random.default_rng(seed)
    a, b, c = rng.uniform(-1, 1, 3)
    return np.asarray(a + 0.004 * b * x + 0.004 * c * y_up + 0.3 * np.sin(x / 60.0))


def _field(rotation: float, shift: tuple[float, float], seed: int, hole: bool = True) -> U8:
    """The field of an impression whose points are the finger's turned by ``rotation``
    (counter-clockwise as seen) about the image centre and shifted by ``shift`` (image px)."""
    rows, cols = field_shape(W, H)
    yy, xx = np.mgrid[0:rows, 0:cols]
    cx, cy = (xx + 0.5) * FIELD_BLOCK, (yy + 0.5) * FIELD_BLOCK
    # Back to the finger's frame (inverse of the impression's move), in y-up coordinates.
    px, py = cx - W / 2 - shift[0], -(cy - H / 2 - shift[1])
    cs, sn = math.cos(-rotation), math.sin(-rotation)
    fx, fy = cs * px - sn * py, sn * px + cs * py
    theta = _flow(fx, fy, seed) + rotation
    codes = np.rint(np.degrees(theta)).astype(np.int64) % 180
    inside = ((cx - W / 2) / (0.42 * W)) ** 2 + ((cy - H / 2) / (0.45 * H)) ** 2 <= 1
    if hole:
        inside &= ~((xx == 3) & (yy == 4))
    return np.where(inside, codes, FIELD_BACKGROUND).astype(np.uint8)


def _finger(seed: int, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pts: list[np.ndarray] = []
    while len(pts) < n:
        p = rng.uniform([40, 40], [W - 40, H - 40])
        if all(np.hypot(*(p - q)) >= 16 for q in pts):
            pts.append(p)
    return np.array(pts), rng.uniform(0, 2 * np.pi, n)


def _impression(
    seed: int, rotation: float, shift: tuple[float, float], field: bool = True, flow: int = -1
) -> FingerprintTemplate:
    xy, ang = _finger(seed)
    c = np.array([W / 2, H / 2])
    cs, sn = math.cos(rotation), math.sin(rotation)
    out = (xy - c) @ np.array([[cs, sn], [-sn, cs]]).T + c + np.array(shift)
    keep = (out[:, 0] >= 0) & (out[:, 1] >= 0) & (out[:, 0] < W) & (out[:, 1] < H)
    a = np.mod(ang + rotation, 2 * np.pi).astype(np.float32)
    a[a >= np.float32(2 * np.pi)] = 0
    n = int(keep.sum())
    return FingerprintTemplate(
        x=out[keep, 0],
        y=out[keep, 1],
        angle=a[keep],
        kind=np.ones(n, np.uint8),
        quality=np.full(n, 60, np.uint8),
        width=W,
        height=H,
        orientation=_field(rotation, shift, seed if flow < 0 else flow) if field else None,
    )


def _reference(a: FingerprintTemplate, b: FingerprintTemplate) -> tuple[float, int]:
    """The term's agreement by its plain definition (float64 numpy) under the kernel's seed."""
    pa, pb = prepare(a), prepare(b)
    c = consolidate(pa, pack([pb]))
    usable = c.usable[0]
    lam = np.where(usable, c.relaxed[0], 0)
    t = int(np.argmax(lam))
    pi, gi = c.probe_index[0, t], c.gallery_index[0, t]
    p, g = pa.geometry.astype(np.float64), pb.geometry.astype(np.float64)
    cs = p[pi, 2] * g[gi, 2] + p[pi, 3] * g[gi, 3]
    sn = p[pi, 3] * g[gi, 2] - p[pi, 2] * g[gi, 3]
    tx = p[pi, 0] - (cs * g[gi, 0] - sn * g[gi, 1])
    ty = p[pi, 1] - (sn * g[gi, 0] + cs * g[gi, 1])
    assert a.orientation is not None and b.orientation is not None
    gy, gx = np.nonzero(b.orientation != FIELD_BACKGROUND)
    cx, cy = (gx + 0.5) * FIELD_BLOCK, -(gy + 0.5) * FIELD_BLOCK
    ix = np.floor((cs * cx - sn * cy + tx) / FIELD_BLOCK).astype(np.int64)
    iy = np.floor(-(sn * cx + cs * cy + ty) / FIELD_BLOCK).astype(np.int64)
    rows, cols = a.orientation.shape
    ok = (ix >= 0) & (ix < cols) & (iy >= 0) & (iy < rows)
    ok[ok] = a.orientation[iy[ok], ix[ok]] != FIELD_BACKGROUND
    if not ok.any():
        return 0.0, 0
    pa_deg = a.orientation[iy[ok], ix[ok]].astype(np.float64)
    pb_deg = b.orientation[gy[ok], gx[ok]].astype(np.float64)
    diff = np.radians(pa_deg - pb_deg) - math.atan2(sn, cs)
    return float(np.cos(2 * diff).mean()), int(ok.sum())


def test_template_validates_its_field() -> None:
    t = _impression(1, 0.0, (0.0, 0.0))
    assert t.orientation is not None and t.orientation.shape == (H // 16, W // 16)
    assert not t.orientation.flags.writeable
    base = {k: getattr(t, k) for k in ("x", "y", "angle", "kind", "quality")}
    bad_cases: list[object] = [
        np.zeros((H // 16, W // 16 + 1), np.uint8),  # wrong shape for the image
        np.zeros((H // 16, W // 16), np.int16),  # wrong dtype
        np.full((H // 16, W // 16), 180, np.uint8),  # 180..254 are not codes
        np.zeros(W // 16, np.uint8),
    ]
    for bad in bad_cases:
        with pytest.raises(TemplateFormatError):
            FingerprintTemplate(**base, width=W, height=H, orientation=bad)  # type: ignore[arg-type]
    no_field = FingerprintTemplate(**base, width=W, height=H)
    assert no_field.orientation is None
    assert no_field != t and t == _impression(1, 0.0, (0.0, 0.0))
    other = t.orientation.copy()
    other[0, 0] = 7
    assert t != FingerprintTemplate(**base, width=W, height=H, orientation=other)


def test_field_codes_follow_the_iso_angle_convention() -> None:
    h, w = 64, 80
    theta = np.full((h, w), np.radians(30.0), np.float32)  # image angle: 30° towards +y (down)
    mask = np.zeros((h, w), bool)
    mask[:, :32] = True
    mask[:8, 32:40] = True  # a quarter of block (0, 2): background
    codes = field_codes(theta, mask, 0.5)
    assert codes.shape == field_shape(w, h) == (4, 5)
    assert np.all(codes[:, :2] == 150)  # 30° below +x is 150° counter-clockwise
    assert np.all(codes[:, 2:] == FIELD_BACKGROUND)


def test_extractor_fills_the_field(finger_image: np.ndarray) -> None:
    st_ = run(finger_image)
    t = st_.template
    assert t.orientation is not None
    assert t.orientation.shape == field_shape(t.width, t.height)
    fg = t.orientation != FIELD_BACKGROUND
    assert 0.3 < fg.mean() < 1.0
    # The test image's ridges run at image angle 0.3 rad (y down): ISO 180 - 17.2°.
    want = (180 - math.degrees(0.3)) % 180
    d = np.abs(t.orientation[fg].astype(float) - want)
    assert np.median(np.minimum(d, 180 - d)) < 8


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    rotation=st.floats(-0.6, 0.6),
    dx=st.floats(-30, 30),
    dy=st.floats(-30, 30),
)
def test_kernel_agreement_equals_the_plain_definition(
    seed: int, rotation: float, dx: float, dy: float
) -> None:
    a = _impression(seed, 0.0, (0.0, 0.0))
    b = _impression(seed, rotation, (dx, dy))
    e = explain(a, b)
    want, blocks = _reference(a, b)
    assert e.field_blocks == blocks
    assert e.field_agreement == pytest.approx(want, abs=2e-4)


def test_term_lifts_genuine_pairs_and_is_neutral_without_fields() -> None:
    a = _impression(3, 0.0, (0.0, 0.0))
    b = _impression(3, 0.3, (10.0, -15.0))
    e = explain(a, b)
    assert e.field_agreement > 0.95 and e.field_blocks > P.FIELD_FULL_BLOCKS
    assert e.field_term == pytest.approx(P.FIELD_WEIGHT * ((e.field_agreement - 0.7) / 0.3) ** 2)
    share = e.aligned / max(e.overlap, P.ALIGN_MIN_OVERLAP)
    w, wf = P.ALIGN_WEIGHT, P.FIELD_WEIGHT
    total = (e.lssr_score + w * share**2 + e.field_term) / (1 + w + wf)
    assert e.score == pytest.approx(total, rel=1e-5)
    # Same minutiae, another finger's flow: the term vanishes, the score drops.
    wrong = _impression(3, 0.3, (10.0, -15.0), flow=999)
    assert explain(a, wrong).field_term < e.field_term and score(a, wrong) < score(a, b)
    # Either side without a field: term 0, blocks 0.
    bare = _impression(3, 0.3, (10.0, -15.0), field=False)
    for x, y in ((a, bare), (bare, a)):
        n = explain(x, y)
        assert (n.field_agreement, n.field_blocks, n.field_term) == (0.0, 0, 0.0)
    assert score(a, bare) == pytest.approx((e.lssr_score + w * share**2) / (1 + w + wf), rel=1e-5)


def _cropped(t: FingerprintTemplate, w: int, h: int) -> FingerprintTemplate:
    """``t`` as if its image were only ``w`` x ``h`` (a smaller field: ragged in a block)."""
    rows, cols = field_shape(w, h)
    return cut_to(t, w, h, None if t.orientation is None else t.orientation[:rows, :cols])


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), small=st.integers(0, 4), missing=st.integers(0, 4))
def test_one_to_one_equals_batch_with_ragged_and_missing_fields(
    seed: int, small: int, missing: int
) -> None:
    a = _impression(seed, 0.0, (0.0, 0.0))
    members = [_impression(seed + k, 0.1 * k, (3.0 * k, -2.0 * k)) for k in range(5)]
    members[small] = _cropped(members[small], W - 70, H - 50)
    members[missing] = _impression(seed + missing, 0.0, (0.0, 0.0), field=False)
    prepared = [prepare(t) for t in members]
    batch = score_many(prepare(a), pack(prepared))
    alone = np.array([score(a, t) for t in members], np.float32)
    assert np.array_equal(batch, alone)
    assert pack(prepared).field is not None
    # A probe without a field scores every member as the minutiae alone would.
    bare = prepare(_cropped(_impression(seed, 0.0, (0.0, 0.0), field=False), W, H))
    assert np.all(consolidate(bare, pack(prepared)).field_blocks == 0)
