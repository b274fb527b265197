"""Fingerprint minutiae extraction speed and output statistics on one core.

    .venv/bin/python benchmarks/fingerprint_extract.py --dataset ../shared/data/fingerprint/DIR
    .venv/bin/python benchmarks/fingerprint_extract.py --dataset ... --ppi 569 --json

Reports, per image: wall-clock and CPU milliseconds of ``extract`` (median, p90), with
OpenCV pinned to one thread; the baseline, measured in the same process on the same images,
is decoding the file (``load_grayscale``), so the ratio says how many decodes one extraction
costs. Also the minutiae count and image-quality distributions and the failures to extract
(typed ``QualityError`` reasons).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from rich.progress import track

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from matcher.errors import QualityError
from matcher.fingerprint.extract import extract
from matcher.imageio import load_grayscale

IMAGE_SUFFIXES = {".tif", ".tiff", ".png", ".bmp", ".jpg", ".jpeg", ".pgm", ".wsq"}


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    a = np.asarray(values)
    return {
        "median": round(float(np.median(a)), 1),
        "p90": round(float(np.percentile(a, 90)), 1),
        "min": round(float(a.min()), 1),
        "max": round(float(a.max()), 1),
    }


def run(dataset: Path, ppi: float | None, repeats: int) -> dict[str, object]:
    files = sorted(p for p in dataset.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"no images in {dataset}")
    wall: list[float] = []
    cpu: list[float] = []
    decode: list[float] = []
    counts: list[float] = []
    quality: list[float] = []
    failures: Counter[str] = Counter()
    for path in track(files, description="extracting", console=None, transient=True):
        data = path.read_bytes()
        t0 = time.perf_counter()
        img = load_grayscale(data)
        decode.append((time.perf_counter() - t0) * 1000)
        res = ppi if ppi is not None else img.ppi if img.ppi is not None else 500.0
        best_wall = best_cpu = float("inf")
        for _ in range(repeats):
            w0, c0 = time.perf_counter(), time.process_time()
            try:
                t = extract(img.pixels, ppi=res)
            except QualityError as exc:
                failures[exc.reason] += 1
                t = None
            best_wall = min(best_wall, (time.perf_counter() - w0) * 1000)
            best_cpu = min(best_cpu, (time.process_time() - c0) * 1000)
        wall.append(best_wall)
        cpu.append(best_cpu)
        if t is not None:
            counts.append(t.count)
            quality.append(t.image_quality)
    med_wall = float(np.median(wall))
    med_decode = float(np.median(decode))
    return {
        "dataset": str(dataset),
        "images": len(files),
        "ppi": ppi,
        "extract_ms_wall": _stats(wall),
        "extract_ms_cpu": _stats(cpu),
        "decode_ms_baseline": _stats(decode),
        "ratio_extract_to_decode": round(med_wall / max(med_decode, 1e-6), 1),
        "minutiae": _stats(counts),
        "image_quality": _stats(quality),
        "failures_to_extract": sum(failures.values()),
        "failure_reasons": dict(failures),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", type=Path, required=True, help="folder of fingerprint images")
    ap.add_argument(
        "--ppi", type=float, default=None, help="scan resolution (default: metadata or 500)"
    )
    ap.add_argument("--repeats", type=int, default=1, help="runs per image; the fastest counts")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    report = run(args.dataset, args.ppi, max(1, args.repeats))
    if args.json:
        print(json.dumps(report))
        return
    for key, value in report.items():
        print(f"{key:26s} {value}")


if __name__ == "__main__":
    main()
