"""Stage 6: contextual Gabor filtering (a bank of OpenCV kernels, picked per pixel).

Every kernel of the bank filters the whole image, and each pixel keeps the response of its
own (orientation, period band) bin. The filtering is done in the frequency domain: the image
is transformed once per pass, each kernel's spectrum once per image (``GaborBank``, shared by
both passes within GABOR_SPECTRA_CACHE_BYTES), and each bin costs one spectrum product and one
inverse transform. That gives the same responses as ``cv2.filter2D`` with ``BORDER_REFLECT``
(to float rounding) at about half its cost on FVC images, 22 ms a pass against 46 ms
(benchmarks/README.md, "Frequency-domain Gabor filtering").
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from matcher.fingerprint.extract import params as P

F32 = npt.NDArray[np.float32]
Bins = npt.NDArray[np.int32]


def gabor_kernel(theta: float, period: float) -> F32:
    """Even-symmetric, zero-DC Gabor kernel (k, k) float32 for ridges of image angle ``theta``.

    OpenCV's ``theta`` is the normal of the stripes, so the ridge angle is turned by π/2.
    """
    sx = P.GABOR_SIGMA_ACROSS * period
    sy = P.GABOR_SIGMA_ALONG * period
    half = math.ceil(P.GABOR_REACH_SIGMAS * max(sx, sy))
    ks = 2 * half + 1
    k = cv2.getGaborKernel((ks, ks), sx, theta + math.pi / 2, period, sx / sy, 0, cv2.CV_32F)
    k = k - k.mean()
    return np.asarray(k / np.abs(k).sum(), dtype=np.float32)


class GaborBank:
    """The kernels for one image: GABOR_ORIENTATIONS angles × the period bands of its median.

    ``shape`` is the image's (H, W). Kernel spectra are computed on first use and kept, up to
    GABOR_SPECTRA_CACHE_BYTES, so the second enhancement pass of an extraction reuses the
    first pass's. All kernels of a bank share one size (the widest band's), zero beyond their
    own reach, so one reflected border serves them all.
    """

    def __init__(self, shape: tuple[int, int], median_period: float) -> None:
        self.bands = np.asarray(P.GABOR_PERIOD_BANDS, dtype=np.float32) * np.float32(median_period)
        self.n_orient = P.GABOR_ORIENTATIONS
        self.reach = max(gabor_kernel(0.0, float(bp)).shape[0] for bp in self.bands) // 2
        h, w = shape
        r = self.reach
        self.shape = shape
        self.dft_shape = (cv2.getOptimalDFTSize(h + 2 * r), cv2.getOptimalDFTSize(w + 2 * r))
        self._spectra: dict[tuple[int, int], F32] = {}

    def bins(self, theta: F32, period: F32) -> tuple[Bins, Bins]:
        """Per-pixel (orientation bin, band) (H, W) int32 for ridge angle and period maps."""
        obin = np.round(theta * (self.n_orient / math.pi)).astype(np.int32) % self.n_orient
        if len(self.bands) > 1:
            edges = np.sqrt(self.bands[1:] * self.bands[:-1])
            pbin = np.searchsorted(edges, period).astype(np.int32)
        else:
            pbin = np.zeros(theta.shape, dtype=np.int32)
        return obin, pbin

    def image_spectrum(self, image: F32) -> F32:
        """CCS-packed spectrum (the DFT shape) of the (H, W) image with a reflected border."""
        r = self.reach
        padded = cv2.copyMakeBorder(image, r, r, r, r, cv2.BORDER_REFLECT)
        canvas = np.zeros(self.dft_shape, dtype=np.float32)
        canvas[: padded.shape[0], : padded.shape[1]] = padded
        return np.asarray(cv2.dft(canvas), dtype=np.float32)

    def response(self, spectrum: F32, band: int, orient: int) -> F32:
        """The (H, W) float32 response of kernel (band, orient) to the image of ``spectrum``."""
        full = cv2.idft(
            cv2.mulSpectrums(spectrum, self._kernel_spectrum(band, orient), 0),
            flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE,
        )
        # A kernel placed at the canvas origin shifts its output by its full width (2 * reach);
        # the image starts at ``reach`` inside the padded canvas, so it is read back at 2 * reach.
        h, w = self.shape
        o = 2 * self.reach
        return np.asarray(full[o : o + h, o : o + w], dtype=np.float32)

    @property
    def cached_bytes(self) -> int:
        """Bytes of kernel spectra kept (at most GABOR_SPECTRA_CACHE_BYTES)."""
        return sum(s.nbytes for s in self._spectra.values())

    def _kernel_spectrum(self, band: int, orient: int) -> F32:
        key = (band, orient)
        kept = self._spectra.get(key)
        if kept is not None:
            return kept
        k = gabor_kernel(orient * math.pi / self.n_orient, float(self.bands[band]))
        # filter2D correlates: convolving with the kernel turned by 180 degrees is the same.
        k = k[::-1, ::-1]
        off = self.reach - k.shape[0] // 2
        canvas = np.zeros(self.dft_shape, dtype=np.float32)
        canvas[off : off + k.shape[0], off : off + k.shape[1]] = k
        spectrum = np.asarray(cv2.dft(canvas, nonzeroRows=off + k.shape[0]), dtype=np.float32)
        if self.cached_bytes + spectrum.nbytes <= P.GABOR_SPECTRA_CACHE_BYTES:
            self._spectra[key] = spectrum
        return spectrum


def enhance(
    norm: F32,
    theta: F32,
    period: F32,
    bank: GaborBank,
    where: npt.NDArray[np.bool_] | None = None,
) -> F32:
    """Gabor-enhanced image (H, W) float32; ridges negative, valleys positive.

    Orientation is quantised to GABOR_ORIENTATIONS bins; the period to GABOR_PERIOD_BANDS
    multiples of the image median (``bank``). Each pixel keeps the response of its own bin's
    kernel. With ``where`` (H, W) only those pixels are written (the others are 0), e.g. the
    foreground when nothing else will be read.
    """
    obin, pbin = bank.bins(theta, period)
    spectrum = bank.image_spectrum(norm)
    out = np.zeros_like(norm)
    for bi in range(len(bank.bands)):
        in_band = pbin == bi
        if where is not None:
            in_band &= where
        if not in_band.any():
            continue
        for oi in range(bank.n_orient):
            sel = in_band & (obin == oi)
            if sel.any():
                out[sel] = bank.response(spectrum, bi, oi)[sel]
    return out
