"""Rank-1 misses of the fingerprint matcher, and score variants measured offline.

    .venv/bin/python benchmarks/fingerprint_misses.py [--root ../shared/data/fingerprint]
        [--sets DB1_B,DB2_B,DB3_B,DB4_B] [--dataset DIR [--ppi P]] [--fingers N] [--variants]

Per set (FVC2002 B sets under ``--root``, DB2 at 569 ppi, or one folder with ``--dataset``):
extract every image, keeping the extractor's orientation field and foreground as well as the
template; score the N x N matrix with the batch kernel keeping its intermediates
(``kernel.consolidate``); print EER and rank-1 (the protocol of ``matcher.fingerprint.fvc``)
and one line per rank-1 miss: the probe, its genuine gallery entry and the best impostor, each
with the minutia counts, the score and its LSS-R part, the kernel's ``aligned`` / ``overlap``
counts, the probe minutiae that land within ALIGN_OVERLAP of the aligned gallery template (the
other side's overlap), and the orientation-field agreement over the blocks both foregrounds
cover under the kernel's alignment (mean cos 2Δθ; 1 = identical flow; computed here from the
extractor's pixel field, as the template's ``orientation`` holds it since the kernel took the
of1 variant, see below).

With ``--variants`` it also scores every variant below from the same intermediates and prints
per-set EER and rank-1 misses (nothing here changes the matcher; figures in
benchmarks/README.md, "Accuracy: FVC2002 B sets"):

* ``np_overlap``: LSS-R's nP taken from min(overlap, probe-side overlap) instead of the
  template sizes (each side's minutiae in the other's area under the kernel's alignment).
* ``hull20``: the alignment share's denominator = gallery minutiae inside the probe's minutiae
  convex hull dilated by 20 px, instead of those within ALIGN_OVERLAP of a probe minutia.
* ``sym02``: s(p, g) + 0.2 s(g, p) (both comparison directions; twice the kernel's work).
* ``of1`` / ``of4``: + w · clip((a - a0) / (1 - a0), 0, 1)² · min(blocks / 100, 1), a the
  orientation-field agreement over the common foreground blocks (``--block``, 16 px) under
  the kernel's alignment (of1), or the best fused term (alignment share + orientation) over
  the 4 most relaxed pairs as alignment seeds (of4; the extra seeds' counts from an exact numpy
  nearest-neighbour search); w and a0 from ``--of-weight`` / ``--of-floor`` (default 0.01,
  0.7; every combination is printed). of1 with the defaults is what the kernel now computes
  (``params.FIELD_*``); here it is added to the kernel's score, which then holds it once
  already, so run this script on the commit before the term (``1f357d9``) to reproduce the
  prototype's table.

``--fingers N`` keeps the first N fingers of a large (synthetic) set: the per-pair numpy work
of the variants takes ~0.5 ms a pair and seed.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
from scipy.spatial import ConvexHull, QhullError  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from matcher import evaluation  # noqa: E402
from matcher.errors import BdxError  # noqa: E402
from matcher.fingerprint.extract import run  # noqa: E402
from matcher.fingerprint.fvc import scan  # noqa: E402
from matcher.fingerprint.match import pack, params, prepare  # noqa: E402
from matcher.fingerprint.match.kernel import _N_PAIRS, consolidate  # noqa: E402
from matcher.fingerprint.template import FingerprintTemplate  # noqa: E402
from matcher.imageio import load_grayscale  # noqa: E402

F64 = npt.NDArray[np.float64]
DATABASES = {"DB1_B": 500.0, "DB2_B": 569.0, "DB3_B": 500.0, "DB4_B": 500.0}
#: Orientation-field block side (px at 500 ppi) and the foreground share a block needs.
BLOCK = 16
BLOCK_MIN_FOREGROUND = 0.5
#: Orientation term of the of1/of4 variants: weight, agreement floor, blocks for full weight.
OF_WEIGHT, OF_FLOOR, OF_BLOCKS = 0.01, 0.7, 100.0
SEEDS = 4
HULL_MARGIN = 20.0


@dataclass
class Item:
    label: str
    finger: str
    template: FingerprintTemplate | None
    phi: F64  # (by, bx) block ridge orientation, y-up frame (mod π)
    valid: npt.NDArray[np.bool_]  # (by, bx) block inside the foreground


def block_field(
    mask: npt.NDArray[np.bool_], theta: npt.NDArray[np.float32]
) -> tuple[F64, npt.NDArray[np.bool_]]:
    """(by, bx) orientation (doubled-angle mean over foreground pixels, turned to the template's
    y-up frame) and validity of BLOCK-px blocks."""
    by, bx = mask.shape[0] // BLOCK, mask.shape[1] // BLOCK
    m = mask[: by * BLOCK, : bx * BLOCK].reshape(by, BLOCK, bx, BLOCK).astype(np.float64)
    t = theta[: by * BLOCK, : bx * BLOCK].reshape(by, BLOCK, bx, BLOCK).astype(np.float64)
    c = (np.cos(2 * t) * m).sum((1, 3))
    s = (np.sin(2 * t) * m).sum((1, 3))
    return -0.5 * np.arctan2(s, c), m.mean((1, 3)) >= BLOCK_MIN_FOREGROUND


def extract_set(directory: Path, ppi: float, fingers: int | None) -> list[Item]:
    samples = scan(directory)
    if fingers is not None:
        keep = sorted({s.finger for s in samples}, key=lambda f: (len(f), f))[:fingers]
        samples = [s for s in samples if s.finger in keep]
    items = []
    for s in samples:
        label = f"{s.finger}_{s.impression}"
        try:
            st = run(load_grayscale(s.path).pixels, ppi=ppi)
        except BdxError:
            items.append(Item(label, s.finger, None, np.zeros((1, 1)), np.zeros((1, 1), bool)))
            continue
        phi, valid = block_field(st.mask, st.theta)
        items.append(Item(label, s.finger, st.template, phi, valid))
    return items


def transform(p: F64, g: F64, pi: int, gi: int) -> tuple[float, float, float, float]:
    """cos, sin, tx, ty turning and shifting gallery geometry g so that g[gi] lies on p[pi]
    (as the kernel's alignment step)."""
    c = p[pi, 2] * g[gi, 2] + p[pi, 3] * g[gi, 3]
    s = p[pi, 3] * g[gi, 2] - p[pi, 2] * g[gi, 3]
    tx = p[pi, 0] - (c * g[gi, 0] - s * g[gi, 1])
    ty = p[pi, 1] - (s * g[gi, 0] + c * g[gi, 1])
    return c, s, tx, ty


def hull_equations(xy: F64) -> F64 | None:
    try:
        return np.asarray(ConvexHull(xy).equations) if len(xy) >= 3 else None
    except QhullError:
        return None


def alignment_counts(
    p: F64, g: F64, tr: tuple[float, float, float, float], p_hull: F64 | None
) -> tuple[int, int, int, int]:
    """Exact numpy counts under one alignment: aligned (one-to-one, gallery order, nearest probe
    minutia within ALIGN_DISTANCE and ALIGN_ANGLE), gallery minutiae within ALIGN_OVERLAP of a
    probe minutia, probe minutiae within ALIGN_OVERLAP of a gallery minutia, gallery minutiae
    inside the probe's hull dilated by HULL_MARGIN."""
    c, s, tx, ty = tr
    x = c * g[:, 0] - s * g[:, 1] + tx
    y = s * g[:, 0] + c * g[:, 1] + ty
    cg = c * g[:, 2] - s * g[:, 3]
    sg = s * g[:, 2] + c * g[:, 3]
    d = np.hypot(x[:, None] - p[None, :, 0], y[:, None] - p[None, :, 1])  # (mg, mp)
    turned = cg[:, None] * p[None, :, 2] + sg[:, None] * p[None, :, 3] >= math.cos(
        params.ALIGN_ANGLE
    )
    nearest = d.argmin(1)
    taken: set[int] = set()
    for i, j in enumerate(nearest):
        if d[i, j] <= params.ALIGN_DISTANCE and turned[i, j] and int(j) not in taken:
            taken.add(int(j))
    inside = 0
    if p_hull is not None:
        out = np.max(np.stack([x, y], 1) @ p_hull[:, :2].T + p_hull[:, 2], axis=1)
        inside = int((out <= HULL_MARGIN).sum())
    return (
        len(taken),
        int((d.min(1) <= params.ALIGN_OVERLAP).sum()),
        int((d.min(0) <= params.ALIGN_OVERLAP).sum()),
        inside,
    )


def orientation_agreement(
    a: Item, b: Item, tr: tuple[float, float, float, float]
) -> tuple[float, int]:
    """Mean cos 2Δθ over b's valid blocks whose centres land, aligned, on a valid block of a;
    and how many blocks that is."""
    c, s, tx, ty = tr
    gy, gx = np.nonzero(b.valid)
    cx, cy = (gx + 0.5) * BLOCK, -(gy + 0.5) * BLOCK  # y up, as the geometry
    ix = np.floor((c * cx - s * cy + tx) / BLOCK).astype(np.int64)
    iy = np.floor(-(s * cx + c * cy + ty) / BLOCK).astype(np.int64)
    ny, nx = a.valid.shape
    ok = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    ok[ok] = a.valid[iy[ok], ix[ok]]
    if not ok.any():
        return 0.0, 0
    turn = math.atan2(s, c)
    diff = a.phi[iy[ok], ix[ok]] - b.phi[gy[ok], gx[ok]] - turn
    return float(np.cos(2 * diff).mean()), int(ok.sum())


def empty_template() -> FingerprintTemplate:
    z = np.zeros(0, np.float32)
    return FingerprintTemplate(z, z, z, z.astype(np.uint8), z.astype(np.uint8), 1, 1)


def kernel_matrix(items: list[Item], extra: bool) -> dict[str, np.ndarray]:
    """The kernel's intermediates for every (probe, gallery) pair, (n, n, ...); with ``extra``,
    also per pair and seed (n, n, SEEDS): aligned, overlap, probe-side overlap, hull count,
    orientation agreement, common blocks, seed present (seed 0 = the kernel's own: its counts
    are the kernel's; the probe-side and hull counts and later seeds from numpy)."""
    prepared = [prepare(it.template or empty_template()) for it in items]
    block = pack(prepared)
    parts = [consolidate(p, block).__dict__ for p in prepared]
    out = {k: np.stack([d[k] for d in parts]) for k in parts[0]}
    if not extra:
        return out
    n = len(items)
    geo = [p.geometry.astype(np.float64) for p in prepared]
    hulls = [hull_equations(g[:, :2]) for g in geo]
    feats = np.zeros((n, n, SEEDS, 7))
    lam = np.where(out["usable"], out["relaxed"], -1.0)
    order = np.argsort(-lam, axis=2, kind="stable")[:, :, :SEEDS]
    for a in range(n):
        for b in range(n):
            if a == b or not geo[a].size or not geo[b].size:
                continue
            for k, t in enumerate(order[a, b]):
                if lam[a, b, t] <= 0:
                    break
                tr = transform(
                    geo[a], geo[b], out["probe_index"][a, b, t], out["gallery_index"][a, b, t]
                )
                al, ov, ov_p, hull = alignment_counts(geo[a], geo[b], tr, hulls[a])
                if k == 0:
                    al, ov = int(out["aligned"][a, b]), int(out["overlap"][a, b])
                agree, blocks = orientation_agreement(items[a], items[b], tr)
                feats[a, b, k] = (al, ov, ov_p, hull, agree, blocks, 1)
    out["seeds"] = feats
    return out


def figures(fingers: list[str], s: np.ndarray) -> tuple[float, float, list[tuple[int, int, int]]]:
    """EER (cross-finger impostors), rank-1 over every gallery offset (``fvc`` protocol; ties
    count against the probe) and the misses (probe, genuine entry, best impostor entry)."""
    f = np.asarray(fingers)
    n = f.size
    iu, ju = np.triu_indices(n, 1)
    same = f[iu] == f[ju]
    eer = evaluation.eer(s[iu[same], ju[same]], s[iu[~same], ju[~same]])
    names = sorted(set(fingers))
    members = [np.flatnonzero(f == x) for x in names]
    size = members[0].size
    table = np.stack(members)
    position = np.zeros(n, np.int64)
    for m in members:
        position[m] = np.arange(m.size)
    own = np.searchsorted(names, f)
    misses, trials = [], 0
    for o in range(1, size):
        gallery = table[np.arange(len(names))[None, :], (position[:, None] + o) % size]
        sc = np.take_along_axis(s, gallery, 1)
        genuine = sc[np.arange(n), own]
        sc[np.arange(n), own] = -np.inf
        rival = sc.argmax(1)
        trials += n
        for p in np.flatnonzero(sc[np.arange(n), rival] >= genuine):
            misses.append((int(p), int(gallery[p, own[p]]), int(gallery[p, rival[p]])))
    return eer, 1.0 - len(misses) / trials, misses


def lssr_with_pairs(out: dict[str, np.ndarray], n_pairs: np.ndarray) -> np.ndarray:
    """LSS-R mean of the n_pairs (n, n) most efficient usable pairs (the kernel's step 4)."""
    usable, lam = out["usable"], out["relaxed"]
    key = np.where(usable, -out["efficiency"], 1.0)
    order = np.argsort(key, axis=2, kind="stable")
    cum = np.cumsum(np.take_along_axis(np.where(usable, lam, 0.0), order, 2), 2)
    pick = np.minimum(n_pairs, cum.shape[2])[:, :, None] - 1
    return np.take_along_axis(cum, pick, 2)[:, :, 0] / n_pairs


def variants(
    out: dict[str, np.ndarray], counts: np.ndarray, of_settings: list[tuple[float, float]]
) -> dict[str, np.ndarray]:
    f = out["seeds"]  # (n, n, SEEDS, 7)
    w = params.ALIGN_WEIGHT
    lssr = out["lssr"].astype(np.float64)
    base = out["score"].astype(np.float64) * (1 + w)
    term0 = base - lssr  # the kernel's share term

    def share(al: np.ndarray, den: np.ndarray) -> np.ndarray:
        return w * (al / np.maximum(den, params.ALIGN_MIN_OVERLAP)) ** 2

    def of(agree: np.ndarray, blocks: np.ndarray, weight: float, floor: float) -> np.ndarray:
        gain = np.clip((agree - floor) / (1 - floor), 0, 1) ** 2
        return weight * gain * np.minimum(blocks / OF_BLOCKS, 1)

    smaller = np.minimum(counts[:, None], counts[None, :])
    overlap = np.minimum(np.minimum(f[:, :, 0, 1], f[:, :, 0, 2]), smaller).astype(np.int64)
    found = {
        "kernel": base,
        "np_overlap": lssr_with_pairs(out, _N_PAIRS[overlap]) + term0,
        "hull20": lssr + share(f[:, :, 0, 0], f[:, :, 0, 3]),
        "sym02": base + 0.2 * base.T,
    }
    for weight, floor in of_settings:
        seeded = (share(f[..., 0], f[..., 1]) + of(f[..., 4], f[..., 5], weight, floor)) * f[..., 6]
        tag = f"w{weight:g} a{floor:g}"
        found[f"of1 {tag}"] = base + of(f[:, :, 0, 4], f[:, :, 0, 5], weight, floor) * f[:, :, 0, 6]
        found[f"of{SEEDS} {tag}"] = lssr + seeded.max(2)
    return found


def report(
    name: str, items: list[Item], with_variants: bool, of_settings: list[tuple[float, float]]
) -> None:
    out = kernel_matrix(items, extra=True)
    fingers = [it.finger for it in items]
    counts = np.array([0 if it.template is None else it.template.count for it in items])
    eer, r1, misses = figures(fingers, out["score"])
    print(f"\n## {name}: {len(items)} images, EER {100 * eer:.2f}%, rank-1 {100 * r1:.2f}% "
          f"({len(misses)} misses)")  # fmt: skip
    f = out["seeds"]
    fa = np.asarray(fingers)
    seeded = f[:, :, 0, 6] > 0
    same = (fa[:, None] == fa[None, :]) & seeded & ~np.eye(len(items), dtype=bool)
    other = (fa[:, None] != fa[None, :]) & seeded
    g_of, i_of = f[:, :, 0, 4][same], f[:, :, 0, 4][other]
    print(f"  orientation agreement under the kernel's alignment: genuine median "
          f"{np.median(g_of):.2f}, 10th percentile {np.quantile(g_of, 0.1):.2f}; impostor median "
          f"{np.median(i_of):.2f}, 99th percentile {np.quantile(i_of, 0.99):.2f}")  # fmt: skip

    def entry(p: int, g: int) -> str:
        a = f[p, g, 0]
        return (
            f"{items[g].label:>7} n={counts[g]:2d} s={out['score'][p, g]:.4f} "
            f"lssr={out['lssr'][p, g]:.4f} al={int(a[0]):2d} ov={int(a[1]):2d} "
            f"ov_p={int(a[2]):2d} of={a[4]:+.2f}/{int(a[5]):3d}"
        )

    for p, g, i in misses:
        print(f"  probe {items[p].label:>7} n={counts[p]:2d} | genuine {entry(p, g)} "
              f"| impostor {entry(p, i)}")  # fmt: skip
    if with_variants:
        for tag, s in variants(out, counts, of_settings).items():
            e, r, m = figures(fingers, s)
            print(f"  variant {tag:18s} EER {100 * e:5.2f}%  rank-1 {100 * r:6.2f}%  "
                  f"misses {len(m)}")  # fmt: skip


def main() -> None:
    global BLOCK
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("../shared/data/fingerprint"))
    ap.add_argument("--sets", default=",".join(DATABASES))
    ap.add_argument("--dataset", type=Path, help="one FVC-layout folder instead of --sets")
    ap.add_argument("--ppi", type=float, default=500.0, help="with --dataset")
    ap.add_argument("--fingers", type=int, help="keep the first N fingers")
    ap.add_argument("--variants", action="store_true")
    ap.add_argument("--of-weight", default=f"{OF_WEIGHT}", help="comma-separated")
    ap.add_argument("--of-floor", default=f"{OF_FLOOR}", help="comma-separated")
    ap.add_argument("--block", type=int, default=BLOCK, help="orientation block side (px)")
    args = ap.parse_args()
    BLOCK = args.block
    of_settings = [
        (float(w), float(a)) for w in args.of_weight.split(",") for a in args.of_floor.split(",")
    ]
    if args.dataset is not None:
        jobs = [(args.dataset.name, args.dataset, args.ppi)]
    else:
        names = args.sets.split(",")
        jobs = [(x, args.root / f"FVC2002_{x}", DATABASES[x]) for x in names]
    for name, directory, ppi in jobs:
        report(name, extract_set(directory, ppi, args.fingers), args.variants, of_settings)


if __name__ == "__main__":
    main()
