"""The frequency-domain Gabor bank gives cv2.filter2D's responses (BORDER_REFLECT)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from matcher.fingerprint.extract import params as P
from matcher.fingerprint.extract.enhancement import GaborBank, enhance, gabor_kernel


def _direct(image: np.ndarray, band_period: float, orient: int) -> np.ndarray:
    k = gabor_kernel(orient * math.pi / P.GABOR_ORIENTATIONS, band_period)
    return cv2.filter2D(image, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT)


def _image(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("shape", [(64, 64), (301, 257), (97, 410)])
@pytest.mark.parametrize("median_period", [6.5, 9.3, 14.0])
def test_every_orientation_matches_direct_filtering(
    shape: tuple[int, int], median_period: float
) -> None:
    image = _image(shape)
    bank = GaborBank(shape, median_period)
    spectrum = bank.image_spectrum(image)
    for oi in range(P.GABOR_ORIENTATIONS):
        got = bank.response(spectrum, 0, oi)
        want = _direct(image, float(bank.bands[0]), oi)
        assert got.shape == shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * float(np.abs(want).max()))


def test_bands_of_different_kernel_sizes_share_one_border(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(P, "GABOR_PERIOD_BANDS", (0.7, 1.0, 1.4))
    image = _image((120, 150), seed=1)
    bank = GaborBank(image.shape, 9.0)
    sizes = {gabor_kernel(0.0, float(bp)).shape[0] for bp in bank.bands}
    assert len(sizes) == 3
    spectrum = bank.image_spectrum(image)
    for bi, bp in enumerate(bank.bands):
        for oi in (0, 5, 11):
            want = _direct(image, float(bp), oi)
            np.testing.assert_allclose(
                bank.response(spectrum, bi, oi), want, rtol=0, atol=1e-5 * float(np.abs(want).max())
            )


def test_enhance_keeps_each_pixels_own_bin_and_only_where_asked() -> None:
    shape = (90, 110)
    image = _image(shape, seed=2)
    rng = np.random.default_rng(3)
    theta = rng.uniform(0, math.pi, shape).astype(np.float32)
    period = np.full(shape, 9.0, dtype=np.float32)
    where = np.zeros(shape, dtype=bool)
    where[10:70, 20:100] = True
    bank = GaborBank(shape, 9.0)
    out = enhance(image, theta, period, bank, where=where)
    obin, _ = bank.bins(theta, period)
    want = np.zeros(shape, dtype=np.float32)
    for oi in range(P.GABOR_ORIENTATIONS):
        sel = where & (obin == oi)
        want[sel] = _direct(image, 9.0, oi)[sel]
    assert not out[~where].any()
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-5 * float(np.abs(want).max()))
    # The second pass over the same bank reuses its spectra and gives the same image.
    np.testing.assert_array_equal(enhance(image, theta, period, bank, where=where), out)


def test_kept_spectra_stay_within_their_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1600 x 1600 image kept 16 spectra of 1728 x 1728 float32 (182 MiB) per extraction."""
    shape = (200, 180)
    image = _image(shape, seed=4)
    rng = np.random.default_rng(5)
    theta = rng.uniform(0, math.pi, shape).astype(np.float32)
    period = np.full(shape, 9.0, dtype=np.float32)
    roomy = GaborBank(shape, 9.0)
    want = enhance(image, theta, period, roomy)
    one = roomy.cached_bytes // P.GABOR_ORIENTATIONS
    assert one > 0 and roomy.cached_bytes == P.GABOR_ORIENTATIONS * one
    for budget, kept in ((0, 0), (3 * one + 1, 3 * one)):
        monkeypatch.setattr(P, "GABOR_SPECTRA_CACHE_BYTES", budget)
        tight = GaborBank(shape, 9.0)
        for _ in range(2):  # the second pass recomputes what was not kept
            np.testing.assert_array_equal(enhance(image, theta, period, tight), want)
            assert tight.cached_bytes == kept
