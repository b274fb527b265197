"""Ridge-texture evidence against the matcher's last rank-1 misses: a feasibility measurement.

    .venv/bin/python benchmarks/fingerprint_texture.py [--root ../shared/data/fingerprint]
        [--sets DB1_B,DB2_B,DB3_B,DB4_B] [--weights 0.01,0.02,0.05] [--floors 0.6,0.8]
        [--jobs 2] [--pairs 105_4:105_5,109_4:109_6 --sets DB2_B] [--dataset DIR [--ppi P]]

Nothing here is part of the matcher. The templates carry minutiae and a coarse orientation
field; ``benchmarks/fingerprint_misses.py`` showed that the genuine pairs the matcher still
loses (FVC2002 DB1 103_4 / 103_8, 110_5 / 110_6; DB2 105_4 / 105_5, the 109 trials) share a
band of 0-4 minutiae under every alignment. This script measures whether the ridge pattern
itself (what an image correlator sees, and what a template would have to carry as a ridge
image) separates them. Per set (FVC2002 B sets under ``--root``, DB2 at 569 ppi):

1. Extract every image, keeping the template, the 16 px orientation blocks
   (``fingerprint_misses.block_field``) and the Gabor-enhanced image with its foreground, both
   downsampled by TEXTURE_DOWNSAMPLE (ridge period ~4 px there: still resolved).
2. Score the N x N matrix with the matcher's batch kernel (the committed score).
3. For every unordered pair, register the two orientation fields: doubled angles on an
   8 px raster, the gallery field turned by every FIELD_ANGLES step and shifted by FFT
   correlation to maximise sum(cos 2Δθ - FIELD_FLOOR) over the common cells; keep the 3 best
   poses.
4. Texture score T: the masked normalised cross-correlation (Padfield, IEEE TIP 21(5), 2012)
   of the two enhanced images over every translation (FFT), at the best pose's rotation and
   ±3°, and at the other two poses' rotations; r counts only where at least TEXTURE_MIN_AREA
   pixels (at 500 ppi) are common, and T = max r * sqrt(area / TEXTURE_MIN_AREA), so that a
   sliver's chance agreement does not outrank a wide one. Both directions are registered and
   the larger T is kept (a registration can fail one way only), so T is symmetric.

Printed per set: T's genuine and impostor percentiles; EER and rank-1 (the protocol of
``matcher.fingerprint.fvc``, every gallery impression) of the kernel, of T alone and of
``kernel + w * max(T - t0, 0)`` for ``--weights`` x ``--floors``, with the misses; and the
kernel's rank-1 misses with one fixed gallery impression k = 1..8 (70 trials each on FVC: the
images of the other impressions; their sum is the averaged protocol's misses of 560) and, per
miss of the kernel, T of the genuine pair and of the impostors. With ``--pairs`` it prints, for
the named pairs only, T at the registered rotations and over every FIELD_ANGLES rotation (is
the registration or the correlation what fails?). T costs ~0.1 s a pair in numpy: this measures
what the evidence is worth, not what it would cost in the matcher. Figures:
benchmarks/README.md, "Ridge texture against the last rank-1 misses".
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
import scipy.fft as sfft  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fingerprint_misses as fm  # noqa: E402

from matcher.fingerprint.extract import run  # noqa: E402
from matcher.fingerprint.fvc import Sample, rank1_by_gallery_impression, scan  # noqa: E402
from matcher.imageio import load_grayscale  # noqa: E402

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
#: Raster (px at 500 ppi) of the orientation registration: half a 16 px block.
FIELD_RASTER = 8
#: Rotations tried by the registration (radians): every plausible placement in 3° steps.
FIELD_ANGLES = np.deg2rad(np.arange(-60, 61, 3))
#: Agreement a common cell must beat to count for a pose (impostor flow agrees at ~0.4-0.5).
FIELD_FLOOR = 0.6
FIELD_POSES = 3
#: The enhanced image is correlated at half resolution (ridge period ~4 px).
TEXTURE_DOWNSAMPLE = 2
#: Common foreground (px² at 500 ppi) a correlation needs: a ~77 px square, about 9 ridges.
TEXTURE_MIN_AREA = 6000.0
#: Rotations (degrees) tried around the best registered pose.
TEXTURE_REFINE = (-3, 0, 3)


@dataclass
class Texture:
    enhanced: F32  # (h, w) Gabor output inside the foreground, 0 outside
    mask: F32  # (h, w) 1.0 foreground


def extract(directory: Path, ppi: float) -> tuple[list[fm.Item], list[Texture], list[Sample]]:
    """Templates, orientation blocks and textures of a set's images, and the images."""
    items, textures, samples = [], [], scan(directory)
    scale = 1.0 / TEXTURE_DOWNSAMPLE
    for s in samples:
        st = run(load_grayscale(s.path).pixels, ppi=ppi)
        phi, valid = fm.block_field(st.mask, st.theta)
        items.append(fm.Item(f"{s.finger}_{s.impression}", s.finger, st.template, phi, valid))
        mask = st.mask.astype(np.float32)
        small = cv2.resize(mask, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) > 0.99
        enh = cv2.resize(st.enhanced.astype(np.float32) * mask, None, fx=scale, fy=scale)
        inside: F32 = np.where(small, enh, 0).astype(np.float32)
        textures.append(Texture(inside, small.astype(np.float32)))
    return items, textures, samples


def _raster(it: fm.Item) -> tuple[npt.NDArray[np.complex128], npt.NDArray[np.bool_], F64]:
    """Doubled-angle field (rows, cols) complex on the FIELD_RASTER grid, its validity and the
    ridge angle per cell."""
    k = fm.BLOCK // FIELD_RASTER
    valid = np.repeat(np.repeat(it.valid, k, 0), k, 1)
    phi = np.repeat(np.repeat(it.phi, k, 0), k, 1)
    return np.where(valid, np.exp(2j * phi), 0), valid, phi


def field_poses(a: fm.Item, b: fm.Item) -> list[float]:
    """Rotations (degrees, counter-clockwise) of the FIELD_POSES best registrations of b's
    orientation field onto a's."""
    za, va, _ = _raster(a)
    ma = va.astype(np.float64)
    _, vb, phib = _raster(b)
    rows, cols = np.nonzero(vb)
    gx, gy, gphi = (cols + 0.5) * FIELD_RASTER, -(rows + 0.5) * FIELD_RASTER, phib[rows, cols]
    found = []
    for angle in FIELD_ANGLES:
        c, s = math.cos(angle), math.sin(angle)
        x = np.floor((c * gx - s * gy) / FIELD_RASTER).astype(np.int64)
        y = np.floor(-(s * gx + c * gy) / FIELD_RASTER).astype(np.int64)
        x -= x.min()
        y -= y.min()
        zb = np.zeros((y.max() + 1, x.max() + 1), np.complex128)
        mb = np.zeros(zb.shape)
        zb[y, x] = np.exp(2j * (gphi + angle))
        mb[y, x] = 1.0
        shape = (za.shape[0] + zb.shape[0], za.shape[1] + zb.shape[1])
        agree = sfft.ifft2(sfft.fft2(za, shape) * np.conj(sfft.fft2(zb, shape))).real
        common = sfft.irfft2(sfft.rfft2(ma, shape) * np.conj(sfft.rfft2(mb, shape)), shape)
        score = float((agree - FIELD_FLOOR * common).max())
        found.append((score, round(math.degrees(angle), 1)))
    found.sort(reverse=True)
    return [angle for _, angle in found[:FIELD_POSES]]


class Correlator:
    """Masked NCC of one probe texture against turned gallery textures (FFTs of the probe's
    three terms computed once, at one padded shape for the whole set)."""

    def __init__(self, probe: Texture, shape: tuple[int, int]) -> None:
        self.shape = shape
        e, m = probe.enhanced, probe.mask
        self.spectra = [sfft.rfft2(x, shape) for x in (e, m, e * e)]

    def _corr(self, f: npt.NDArray[np.complex64], g: npt.NDArray[np.complex64]) -> F32:
        """Correlation over every translation, from a spectrum and a conjugated one."""
        return np.asarray(sfft.irfft2(f * g, self.shape))

    def best(self, gallery: Texture, angles: list[float]) -> float:
        """Largest area-weighted r over the given rotations (degrees) and every translation."""
        fa, fm_, faa = self.spectra
        min_area = TEXTURE_MIN_AREA / TEXTURE_DOWNSAMPLE**2
        top = -1.0
        for angle in angles:
            e, m = turned(gallery, angle)
            gb, gm, gbb = (np.conj(sfft.rfft2(x, self.shape)) for x in (e, m, e * e))
            n = self._corr(fm_, gm)
            nn = np.maximum(n, 1.0)
            sa, sb = self._corr(fa, gm), self._corr(fm_, gb)
            cov = self._corr(fa, gb) - sa * sb / nn
            var = (self._corr(faa, gm) - sa * sa / nn) * (self._corr(fm_, gbb) - sb * sb / nn)
            r = cov / np.sqrt(np.maximum(var, 1e-9)) * np.sqrt(nn / min_area)
            top = max(top, float(np.max(np.where(n > min_area, r, -1.0))))
        return top


def turned(t: Texture, degrees: float) -> tuple[F32, F32]:
    """The texture turned by ``degrees`` about its centre into a square that holds it whole."""
    h, w = t.enhanced.shape
    side = int(math.hypot(h, w)) + 2
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    m[:, 2] += (side - w) / 2, (side - h) / 2
    mask = cv2.warpAffine(t.mask, m, (side, side), flags=cv2.INTER_NEAREST) > 0.5
    enh = cv2.warpAffine(t.enhanced, m, (side, side), flags=cv2.INTER_LINEAR)
    return np.where(mask, enh, 0).astype(np.float32), mask.astype(np.float32)


def padded_shape(textures: list[Texture]) -> tuple[int, int]:
    """FFT shape that holds any probe beside any turned gallery texture (no wrap-around)."""
    side = max(int(math.hypot(*t.enhanced.shape)) + 2 for t in textures)
    h = max(t.enhanced.shape[0] for t in textures)
    w = max(t.enhanced.shape[1] for t in textures)
    return sfft.next_fast_len(h + side), sfft.next_fast_len(w + side)


_STATE: tuple[list[fm.Item], list[Texture], tuple[int, int]] | None = None


def _share(items: list[fm.Item], textures: list[Texture], shape: tuple[int, int]) -> None:
    """Worker initializer: the set, once per worker process."""
    global _STATE
    _STATE = (items, textures, shape)


def _row(a: int) -> list[float]:
    """T of probe a against every other entry (in a worker)."""
    assert _STATE is not None
    items, textures, shape = _STATE
    probe = Correlator(textures[a], shape)
    out = []
    for b in range(len(items)):
        if b == a:
            out.append(-1.0)
            continue
        poses = field_poses(items[a], items[b])
        angles = sorted({poses[0] + d for d in TEXTURE_REFINE} | set(poses[1:]))
        out.append(probe.best(textures[b], angles))
    return out


def texture_matrix(items: list[fm.Item], textures: list[Texture], jobs: int) -> F64:
    n = len(items)
    t = np.zeros((n, n))
    shared = (items, textures, padded_shape(textures))
    with ProcessPoolExecutor(jobs, initializer=_share, initargs=shared) as pool:
        for a, row in enumerate(pool.map(_row, range(n))):
            t[a] = row
    return np.maximum(t, t.T)


def named_pairs(items: list[fm.Item], textures: list[Texture], pairs: str) -> None:
    index = {it.label: k for k, it in enumerate(items)}
    shape = padded_shape(textures)
    every = [round(math.degrees(a), 1) for a in FIELD_ANGLES]
    for pair in pairs.split(","):
        a, b = (index[x] for x in pair.split(":"))
        poses = field_poses(items[a], items[b])
        angles = sorted({poses[0] + d for d in TEXTURE_REFINE} | set(poses[1:]))
        probe = Correlator(textures[a], shape)
        registered, swept = probe.best(textures[b], angles), probe.best(textures[b], every)
        found = f"T {registered:.2f}; every rotation: T {swept:.2f}"
        print(f"  {pair}: registered rotations {poses}: {found}")


def texture_of_misses(fingers: list[str], labels: list[str], s: F64, t: F64) -> None:
    """Per rank-1 miss of the committed score: the genuine pair's and the winning impostor's
    score and T, and the highest T of any impostor of the probe."""
    f = np.asarray(fingers)
    for p, g, i in fm.figures(fingers, s)[2]:
        top = float(t[p, f != f[p]].max())
        print(
            f"  miss {labels[p]}: genuine {labels[g]} s={s[p, g]:.4f} T={t[p, g]:.2f} | "
            f"impostor {labels[i]} s={s[p, i]:.4f} T={t[p, i]:.2f} | highest impostor T {top:.2f}"
        )


def report(name: str, fingers: list[str], labels: list[str], s: F64) -> None:
    eer, rank1, misses = fm.figures(fingers, s)
    lost = " ".join(f"{labels[p]}>{labels[g]}" for p, g, _ in misses[:8])
    more = f" (+{len(misses) - 8})" if len(misses) > 8 else ""
    figures = f"EER {100 * eer:5.2f}%  rank-1 {100 * rank1:6.2f}%  ({len(misses)} misses)"
    print(f"  {name:28s} {figures} {lost}{more}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path("../shared/data/fingerprint"))
    ap.add_argument("--sets", default="DB1_B,DB2_B,DB3_B,DB4_B")
    ap.add_argument("--dataset", type=Path, help="one FVC-layout folder instead of --sets")
    ap.add_argument("--ppi", type=float, default=500.0, help="with --dataset")
    ap.add_argument("--weights", default="0.01,0.02,0.05")
    ap.add_argument("--floors", default="0.6,0.8")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--pairs", help="probe:gallery labels, comma-separated (one set)")
    args = ap.parse_args()
    weights = [float(x) for x in args.weights.split(",")]
    floors = [float(x) for x in args.floors.split(",")]
    if args.dataset:
        sets = [(args.dataset.name, args.dataset, args.ppi)]
    else:
        sets = [(db, args.root / f"FVC2002_{db}", fm.DATABASES[db]) for db in args.sets.split(",")]
    for db, directory, ppi in sets:
        items, textures, samples = extract(directory, ppi)
        fingers, labels = [it.finger for it in items], [it.label for it in items]
        if args.pairs:
            named_pairs(items, textures, args.pairs)
            continue
        s = fm.kernel_matrix(items, False)["score"].astype(np.float64)
        t = texture_matrix(items, textures, args.jobs)
        f = np.asarray(fingers)
        iu, ju = np.triu_indices(f.size, 1)
        same = f[iu] == f[ju]
        gen, imp = t[iu[same], ju[same]], t[iu[~same], ju[~same]]
        print(f"\n## {db}: {len(items)} images")
        print(
            f"  T genuine: median {np.median(gen):.2f}, 10th {np.percentile(gen, 10):.2f}, "
            f"1st percentile {np.percentile(gen, 1):.2f}; impostor: median {np.median(imp):.2f}, "
            f"99th percentile {np.percentile(imp, 99):.2f}, max {imp.max():.2f}"
        )
        report("kernel (committed score)", fingers, labels, s)
        report("texture T alone", fingers, labels, t)
        for w in weights:
            for t0 in floors:
                fused = s + w * np.clip(t - t0, 0.0, None)
                report(f"kernel + {w:g} max(T - {t0:g}, 0)", fingers, labels, fused)
        trials = len(items) - len(set(fingers))
        rates = rank1_by_gallery_impression(samples, s.astype(np.float32)) or []
        misses = [round((1 - r) * trials) for r in rates]
        print(f"  kernel, misses of {trials} with impression k = 1.. as the gallery: {misses}")
        texture_of_misses(fingers, labels, s, t)


if __name__ == "__main__":
    main()
