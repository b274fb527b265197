"""Synthetic masters and impressions: determinism, ground truth, geometry, errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from matcher.synthetic import (
    CLASSES,
    ImpressionProfile,
    MasterFingerprint,
    SyntheticParameterError,
    make_impression,
    make_master,
    render_impression,
)
from matcher.synthetic import params as P

SMALL = (224, 208)
ITER = 6
PROFILE = ImpressionProfile("test", shape=(192, 176))


@pytest.fixture(scope="module")
def master() -> MasterFingerprint:
    return make_master(11, fingerprint_class="right_loop", shape=SMALL, iterations=ITER)


def test_same_seed_gives_identical_bytes(master: MasterFingerprint) -> None:
    again = make_master(11, fingerprint_class="right_loop", shape=SMALL, iterations=ITER)
    assert again.image.tobytes() == master.image.tobytes()
    assert again.ridges.tobytes() == master.ridges.tobytes()
    a = make_impression(master, 3, profile=PROFILE)
    b = make_impression(again, 3, profile=PROFILE)
    assert a.tobytes() == b.tobytes()


def test_different_seeds_differ(master: MasterFingerprint) -> None:
    other = make_master(12, fingerprint_class="right_loop", shape=SMALL, iterations=ITER)
    assert not np.array_equal(other.image, master.image)
    a = make_impression(master, 1, profile=PROFILE)
    b = make_impression(master, 2, profile=PROFILE)
    assert not np.array_equal(a, b)


def test_master_shapes_and_ranges(master: MasterFingerprint) -> None:
    assert master.image.shape == SMALL and master.image.dtype == np.uint8
    assert master.ridges.dtype == np.float32 and master.ridges.shape == SMALL
    assert master.ridges.min() >= -1.0 and master.ridges.max() <= 1.0
    assert master.orientation.min() >= 0 and master.orientation.max() < np.pi
    assert master.mask.dtype == np.bool_ and 0.3 < master.mask.mean() < 0.95
    assert (master.image[~master.mask] == 255).all()
    assert master.cores.shape == (1, 2) and master.deltas.shape == (1, 2)
    assert master.fingerprint_class == "right_loop"


@pytest.mark.parametrize(
    ("name", "cores", "deltas"),
    [("arch", 0, 0), ("tented_arch", 1, 1), ("left_loop", 1, 1), ("whorl", 2, 2)],
)
def test_classes_have_their_singular_points(name: str, cores: int, deltas: int) -> None:
    m = make_master(3, fingerprint_class=name, shape=(96, 96), iterations=1)
    assert (len(m.cores), len(m.deltas)) == (cores, deltas)
    assert m.fingerprint_class == name


def test_drawn_class_is_one_of_the_known_classes() -> None:
    m = make_master(5, shape=(96, 96), iterations=1)
    assert m.fingerprint_class in CLASSES


def test_uncorrected_field_is_the_sherlock_monro_zero_pole_model() -> None:
    m = make_master(8, fingerprint_class="whorl", shape=(96, 96), iterations=1, correction=False)
    ys, xs = np.mgrid[0:96, 0:96].astype(np.float64)
    z = xs + 1j * ys
    tilt = float(m.layout.flow.tilt[0])
    expected = tilt + 0.5 * (
        sum(np.angle(z - complex(*c)) - tilt for c in m.cores)
        - sum(np.angle(z - complex(*d)) - tilt for d in m.deltas)
    )
    assert np.degrees(_doubled_angle_error(m.orientation, np.mod(expected, np.pi)).max()) < 1e-3
    corrected = make_master(8, fingerprint_class="whorl", shape=(96, 96), iterations=1)
    assert np.array_equal(corrected.cores, m.cores)  # same layout, only the field differs
    error = _doubled_angle_error(corrected.orientation, m.orientation)
    assert 0.5 < np.degrees(error.mean()) < 20


def _doubled_angle_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = np.abs(np.mod(a - b, np.pi))
    return np.minimum(d, np.pi - d)


def test_grown_ridges_follow_the_ground_truth_orientation(master: MasterFingerprint) -> None:
    img = master.ridges.astype(np.float64)
    gx = cv2.Sobel(img, cv2.CV_64F, 1, 0, ksize=3)
    gy = cv2.Sobel(img, cv2.CV_64F, 0, 1, ksize=3)
    sigma = 6.0
    gxx = cv2.GaussianBlur(gx * gx, (0, 0), sigma)
    gyy = cv2.GaussianBlur(gy * gy, (0, 0), sigma)
    gxy = cv2.GaussianBlur(gx * gy, (0, 0), sigma)
    # Gradients are normal to ridges: the ridge orientation is the doubled-angle mean + 90°.
    estimate = np.mod(0.5 * np.arctan2(2 * gxy, gxx - gyy) + np.pi / 2, np.pi)
    ys, xs = np.mgrid[0 : SMALL[0], 0 : SMALL[1]]
    points = np.concatenate([master.cores, master.deltas])
    far = np.min(np.hypot(xs[..., None] - points[:, 0], ys[..., None] - points[:, 1]), axis=-1) > 25
    inner = (xs > 20) & (xs < SMALL[1] - 20) & (ys > 20) & (ys < SMALL[0] - 20)
    err = _doubled_angle_error(estimate, master.orientation)[far & inner]
    assert np.degrees(np.median(err)) < 8.0
    assert np.mean(err < np.radians(20)) > 0.85


def test_ridge_period_matches_the_density_map(master: MasterFingerprint) -> None:
    h, w = SMALL
    win = master.ridges[h // 2 - 64 : h // 2 + 64, w // 2 - 64 : w // 2 + 64].astype(np.float64)
    win = (win - win.mean()) * np.outer(np.hanning(128), np.hanning(128))
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(win)))
    fy, fx = np.mgrid[-64:64, -64:64] / 128.0
    radius = np.hypot(fx, fy)
    band = (radius > 1 / 16) & (radius < 1 / 5)  # ridge frequencies, not the envelope
    power = spectrum[band] ** 2
    peak = float((radius[band] * power).sum() / power.sum())
    expected = float(master.period[h // 2 - 64 : h // 2 + 64, w // 2 - 64 : w // 2 + 64].mean())
    assert abs(1.0 / peak - expected) / expected < 0.15


def test_default_period_is_about_nine_pixels() -> None:
    assert P.PERIOD_LIMITS[0] < P.PERIOD_MEAN == 9.0 < P.PERIOD_LIMITS[1]


def test_impression_shape_dtype_and_dark_ridges(master: MasterFingerprint) -> None:
    imp = render_impression(master, 1, profile=PROFILE)
    assert imp.image.shape == PROFILE.shape and imp.image.dtype == np.uint8
    touched = imp.contact > 0.9
    assert touched.mean() > 0.2
    assert imp.image[touched].mean() < imp.image[imp.contact == 0].mean() - 20
    assert imp.skin in ("dry", "normal", "wet")


def test_impression_shows_the_master_ridges_where_the_finger_touches(
    master: MasterFingerprint,
) -> None:
    imp = render_impression(master, 2, profile="clean")
    seen = cv2.remap(master.ridges, imp.map_x, imp.map_y, cv2.INTER_LINEAR)
    touched = imp.contact > 0.9
    darkness = 255.0 - imp.image.astype(np.float64)
    same = np.corrcoef(darkness[touched], seen[touched])[0, 1]
    other = make_master(99, shape=SMALL, iterations=ITER)
    foreign = cv2.remap(other.ridges, imp.map_x, imp.map_y, cv2.INTER_LINEAR)
    different = np.corrcoef(darkness[touched], foreign[touched])[0, 1]
    assert same > 0.6
    assert abs(different) < 0.2


def test_impressions_of_one_finger_overlap(master: MasterFingerprint) -> None:
    footprints = []
    for seed in (1, 2):
        imp = render_impression(master, seed, profile=PROFILE)
        grid = np.zeros(SMALL, bool)
        touched = imp.contact > 0.5
        mx = np.clip(np.rint(imp.map_x[touched]).astype(int), 0, SMALL[1] - 1)
        my = np.clip(np.rint(imp.map_y[touched]).astype(int), 0, SMALL[0] - 1)
        grid[my, mx] = True
        footprints.append(cv2.dilate(grid.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
    inter = (footprints[0] & footprints[1]).sum()
    union = (footprints[0] | footprints[1]).sum()
    assert inter / union > 0.4


def test_profiles_by_name_all_render(master: MasterFingerprint) -> None:
    for name in ("clean", "typical", "hard"):
        img = make_impression(master, 4, profile=name)
        assert img.shape == P.IMPRESSION_SHAPE


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: make_master(-1), "bad_seed"),
        (lambda: make_master("7"), "bad_seed"),  # type: ignore[arg-type]
        (lambda: make_master(1, fingerprint_class="spiral"), "unknown_class"),
        (lambda: make_master(1, shape=(10, 10)), "bad_shape"),
        (lambda: make_master(1, iterations=0), "bad_iterations"),
        (lambda: ImpressionProfile("x", noise=-1), "bad_profile"),
        (lambda: ImpressionProfile("x", pressure=(0.9, 0.5)), "bad_profile"),
        (lambda: ImpressionProfile("x", skin=(0.5, 0.5, 0.5)), "bad_profile"),
        (lambda: ImpressionProfile("x", partial=2.0), "bad_profile"),
        (lambda: ImpressionProfile("x", shape=(8, 8)), "bad_profile"),
    ],
)
def test_bad_arguments_raise_typed_errors(call: object, reason: str) -> None:
    with pytest.raises(SyntheticParameterError) as info:
        call()  # type: ignore[operator]
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)


def test_bad_impression_arguments_raise(master: MasterFingerprint) -> None:
    with pytest.raises(SyntheticParameterError, match="profile"):
        make_impression(master, 1, profile="smudged")
    with pytest.raises(SyntheticParameterError, match="seed"):
        make_impression(master, -3)


def test_extractor_finds_a_plausible_number_of_minutiae() -> None:
    extract_mod = pytest.importorskip("matcher.fingerprint.extract")
    m = make_master(2024)
    counts = [len(extract_mod.extract(make_impression(m, i))) for i in (1, 2)]
    assert all(15 <= c <= 120 for c in counts), counts


def _ridge_share(master: MasterFingerprint, prof: ImpressionProfile) -> float:
    imp = render_impression(master, 5, profile=prof)
    touched = imp.contact > 0.9
    background = float(np.median(imp.image[imp.contact == 0]))
    return float(np.mean(imp.image[touched] < background - 40))


def test_dry_skin_prints_thinner_ridges_than_wet_skin(master: MasterFingerprint) -> None:
    dry = ImpressionProfile("dry", skin=(1.0, 0.0, 0.0), shape=(192, 176), partial=0.0)
    wet = ImpressionProfile("wet", skin=(0.0, 0.0, 1.0), shape=(192, 176), partial=0.0)
    assert render_impression(master, 5, profile=dry).skin == "dry"
    assert _ridge_share(master, dry) + 0.15 < _ridge_share(master, wet)


def test_lifted_edge_reduces_the_contact_area(master: MasterFingerprint) -> None:
    full = ImpressionProfile("full", partial=0.0, shape=(192, 176))
    lifted = ImpressionProfile("lifted", partial=1.0, shape=(192, 176))
    a = render_impression(master, 6, profile=full).contact.sum()
    b = render_impression(master, 6, profile=lifted).contact.sum()
    assert b < 0.85 * a
