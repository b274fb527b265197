"""Speed of the synthetic fingerprint generator (matcher.synthetic).

    .venv/bin/python benchmarks/synthetic_gen.py [--repeats 5] [--one-core] [--json]

Reports medians over repeats, each beside a baseline run in the same process:

* master (448 × 400 canvas, 10 growth passes) vs the naive growth: every kernel of the bank
  applied to the whole canvas with ``cv2.filter2D`` and per-pixel nearest-kernel selection
  (what the tiled, batched-FFT growth replaces);
* impression (388 × 374, FVC2002 DB1 size) vs a bare ``cv2.remap`` of the master at that size
  (the one step an impression cannot avoid);
* ``synthetic_templates`` in templates/s vs the image path (master + impression per template,
  before any extraction).

With ``--stats DIR`` it instead compares template statistics (minutiae per impression,
bifurcation share, nearest-neighbour spacing, direction coherence of neighbours) of three
sources: the extractor on the real images in DIR (FVC layout), the extractor on generated
impressions, and the ``synthetic_templates`` fast path:

    .venv/bin/python benchmarks/synthetic_gen.py --stats ../shared/data/fingerprint/FVC2002_DB1_B

With ``--scores DIR`` it compares the matcher's genuine and impostor score distributions (all
pairs) on DIR, on a generated 10 × 8 set and on the fast path's 10 × 8 templates.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import cv2
import numpy as np

from matcher.fingerprint.template import BIFURCATION, FingerprintTemplate
from matcher.synthetic import make_impression, make_master, synthetic_templates
from matcher.synthetic import params as P
from matcher.synthetic.dataset import finger_seed
from matcher.synthetic.ridges import bin_weights, gabor_kernel


def naive_growth(orientation: np.ndarray, period: np.ndarray, seed: int) -> np.ndarray:
    """Baseline: whole-canvas filter2D with every kernel, nearest kernel per pixel."""
    bins, weights, periods = bin_weights(orientation, period)
    nearest = np.take_along_axis(bins, weights.argmax(axis=0)[None], axis=0)[0]
    n_o = P.GABOR_ORIENTATIONS
    used = np.unique(nearest)
    kernels = {
        int(k): gabor_kernel((k % n_o) * np.pi / n_o, float(periods[k // n_o])) for k in used
    }
    rng = np.random.default_rng(seed)
    h, w = orientation.shape
    image = np.zeros((h, w), np.float32)
    n_seeds = round(h * w * P.SEED_DENSITY)
    image.ravel()[rng.choice(h * w, n_seeds, replace=False)] = rng.choice([-1.0, 1.0], n_seeds)
    for _ in range(P.GROWTH_ITERATIONS):
        out = np.zeros_like(image)
        for k, kernel in kernels.items():
            response = cv2.filter2D(image, cv2.CV_32F, kernel)
            out = np.where(nearest == k, response, out)
        scale = float(np.percentile(np.abs(out[out != 0]), 90)) if out.any() else 1.0
        image = np.clip(out * (P.GROWTH_GAIN / scale), -1.0, 1.0)
    return image


def median_ms(fn: Callable[[int], object], repeats: int) -> tuple[float, float]:
    """Median wall-clock and process-CPU milliseconds of ``fn(i)`` over ``repeats`` calls.

    CPU time is reported beside wall time because the shared 2-core machine is often
    oversubscribed; on a quiet machine with ``--one-core`` the two agree.
    """
    wall, cpu = [], []
    for i in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn(i)
        wall.append((time.perf_counter() - t0) * 1000.0)
        cpu.append((time.process_time() - c0) * 1000.0)
    return statistics.median(wall), statistics.median(cpu)


def template_stats(templates: list[FingerprintTemplate]) -> dict[str, float]:
    """Summary statistics of a list of templates (see the module docstring)."""
    counts = np.array([len(t) for t in templates])
    nearest, coherence = [], []
    for t in templates:
        if len(t) < 2:
            continue
        d = np.hypot(t.x[:, None] - t.x[None], t.y[:, None] - t.y[None])
        np.fill_diagonal(d, np.inf)
        j = d.argmin(axis=1)
        nearest.append(d.min(axis=1))
        a = np.mod(t.angle - t.angle[j], np.pi)
        coherence.append(np.minimum(a, np.pi - a))
    nn = np.concatenate(nearest)
    kinds = np.concatenate([t.kind for t in templates])
    return {
        "templates": len(templates),
        "minutiae_mean": round(float(counts.mean()), 1),
        "minutiae_p10": round(float(np.percentile(counts, 10)), 1),
        "minutiae_p90": round(float(np.percentile(counts, 90)), 1),
        "bifurcation_share": round(float(np.mean(kinds == BIFURCATION)), 3),
        "nn_spacing_median_px": round(float(np.median(nn)), 1),
        "nn_closer_than_9px": round(float(np.mean(nn < 9.0)), 3),
        "nn_orientation_diff_deg": round(float(np.degrees(np.mean(np.concatenate(coherence)))), 1),
    }


def stats(folder: str, fingers: int, impressions: int) -> dict[str, dict[str, float]]:
    from pathlib import Path

    from matcher.errors import QualityError
    from matcher.fingerprint.extract import extract, extract_file

    real = []
    for path in sorted(Path(folder).glob("*_*.*")):
        try:
            real.append(extract_file(path))
        except QualityError:
            continue
    generated = []
    for f in range(1, fingers + 1):
        m = make_master(finger_seed(0, f))
        for i in range(1, impressions + 1):
            try:
                generated.append(extract(make_impression(m, i)))
            except QualityError:
                continue
    fast = [t for f in synthetic_templates(200, impressions, seed=0) for t in f]
    return {
        "real_extracted": template_stats(real),
        "synthetic_images_extracted": template_stats(generated),
        "synthetic_templates": template_stats(fast),
    }


def _load_fvc(folder: str) -> list[list[FingerprintTemplate]]:
    from pathlib import Path

    from matcher.fingerprint.extract import extract_file

    fingers: dict[str, list[FingerprintTemplate]] = {}
    for path in sorted(Path(folder).glob("*_*.*")):
        fingers.setdefault(path.stem.split("_")[0], []).append(extract_file(path))
    return list(fingers.values())


def score_distribution(temps: list[list[FingerprintTemplate]]) -> dict[str, float]:
    """Genuine / impostor similarity quantiles over all pairs of ``temps[finger][impression]``."""
    from matcher.fingerprint.match import pack, prepare, score_many

    flat = [(f, prepare(t)) for f, imps in enumerate(temps) for t in imps]
    finger = np.array([f for f, _ in flat])
    packed = pack([p for _, p in flat])
    scores = np.stack([score_many(p, packed) for _, p in flat])  # one 1:N call per probe
    upper = np.triu(np.ones_like(scores, dtype=bool), 1)
    same = finger[:, None] == finger[None, :]
    gen, imp = scores[upper & same], scores[upper & ~same]
    return {
        "genuine_median": round(float(np.median(gen)), 3),
        "genuine_p10": round(float(np.percentile(gen, 10)), 3),
        "impostor_median": round(float(np.median(imp)), 4),
        "impostor_p99": round(float(np.percentile(imp, 99)), 4),
        "impostor_p999": round(float(np.percentile(imp, 99.9)), 4),
        "impostor_max": round(float(imp.max()), 4),
    }


def scores(folder: str) -> dict[str, dict[str, float]]:
    import tempfile

    from matcher.synthetic import write_dataset

    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(tmp, 10, 8, 0)
        generated = _load_fvc(tmp)
    return {
        "real_extracted": score_distribution(_load_fvc(folder)),
        "synthetic_images_extracted": score_distribution(generated),
        "synthetic_templates": score_distribution(synthetic_templates(10, 8, 0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="repeats per measurement")
    parser.add_argument("--one-core", action="store_true", help="pin OpenCV to one thread")
    parser.add_argument("--templates", type=int, default=2048, help="fingers for the fast path")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--stats", metavar="DIR", help="compare template statistics with DIR")
    parser.add_argument("--scores", metavar="DIR", help="compare score distributions with DIR")
    args = parser.parse_args()
    if args.scores:
        print(json.dumps(scores(args.scores), indent=1))
        return
    if args.stats:
        print(json.dumps(stats(args.stats, 10, 4), indent=1))
        return
    if args.one_core:
        cv2.setNumThreads(1)

    master = make_master(0)
    make_impression(master, 0)  # warm caches and imports
    r = args.repeats
    master_ms, master_cpu = median_ms(lambda i: make_master(1000 + i), r)
    naive_ms, naive_cpu = median_ms(
        lambda i: naive_growth(master.orientation, master.period, i), max(1, r // 2)
    )
    impression_ms, impression_cpu = median_ms(lambda i: make_impression(master, i), r * 4)
    h, w = P.IMPRESSION_SHAPE
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32) + 6, np.arange(h, dtype=np.float32) + 37)
    remap_ms, _ = median_ms(lambda i: cv2.remap(master.ridges, xs, ys, cv2.INTER_LINEAR), r * 4)
    n_imp = 8
    fingers = args.templates // n_imp
    t0, c0 = time.perf_counter(), time.process_time()
    synthetic_templates(fingers, n_imp, seed=1)
    templates_per_s = fingers * n_imp / (time.perf_counter() - t0)
    templates_per_cpu_s = fingers * n_imp / (time.process_time() - c0)
    image_path_per_s = 1000.0 / (master_ms / n_imp + impression_ms)
    report = {
        "master_ms": round(master_ms, 1),
        "master_cpu_ms": round(master_cpu, 1),
        "master_naive_baseline_ms": round(naive_ms, 1),
        "master_naive_baseline_cpu_ms": round(naive_cpu, 1),
        "master_speedup": round(naive_ms / master_ms, 2),
        "impression_ms": round(impression_ms, 2),
        "impression_cpu_ms": round(impression_cpu, 2),
        "impression_remap_baseline_ms": round(remap_ms, 2),
        "impression_over_remap": round(impression_ms / remap_ms, 1),
        "templates_per_s": round(templates_per_s),
        "templates_per_cpu_s": round(templates_per_cpu_s),
        "image_path_images_per_s": round(image_path_per_s, 1),
        "templates_speedup": round(templates_per_s / image_path_per_s),
        "repeats": r,
        "one_core": args.one_core,
        "load_average_1min": round(os.getloadavg()[0], 1),
    }
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        for key, value in report.items():
            print(f"{key:32s} {value}")


if __name__ == "__main__":
    main()
