"""Face extraction speed per stage, against the plain dlib recipe, in one process on one core.

Usage (from the repository root)::

    .venv/bin/python benchmarks/face_eval.py [--dataset DIR] [--images N] [--json]

For the first N images of DIR/<identity>/<image> (sorted), it times, image by image and in
this process (one thread):

* ``bdx``: :func:`matcher.face.pipeline.extract_from_pixels` (HOG at 1x, 2x only when nothing
  is found, the MMOD CNN only when HOG found nothing; 68-point landmarks; 150 px chip; ResNet
  embedding of the chip and its mirror; quality measures not counted);
* ``baseline``: the plain dlib recipe of dlib's face recognition example and of the
  ``face_recognition`` package's defaults (HOG always with one 2x upsampling, same landmarks,
  chip and embedding, no quality measures).

It reports the median CPU milliseconds (process time: the one-core cost, not inflated when
other work shares the cores) per stage and of detect + align + embed, the ratio bdx / baseline,
and the cosine similarity between the two embeddings of each image (how much the detector's box
moves the template). Accuracy is measured by ``bdx eval face`` (see benchmarks/README.md, "Face").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import dlib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from matcher.errors import BdxError
from matcher.face import models
from matcher.face.dataset_eval import scan_dataset
from matcher.face.params import CHIP_PADDING, CHIP_SIZE
from matcher.face.pipeline import ExtractOptions, extract_from_pixels
from matcher.imageio import load_rgb

DEFAULT_DATASET = Path(__file__).resolve().parents[2] / "shared/data/face/lfw_a_to_m"


def baseline(rgb: np.ndarray) -> tuple[dict[str, float], np.ndarray | None]:
    """The plain dlib recipe: HOG with one upsampling, 5 points, chip, descriptor.

    Returns CPU milliseconds per stage (process time) and the unit embedding."""
    t: dict[str, float] = {}
    t0 = time.process_time()
    rects = models.hog_detector()(rgb, 1)
    t["detect"] = (time.process_time() - t0) * 1e3
    if not rects:
        return t, None
    rect = max(rects, key=lambda r: r.area())
    t0 = time.process_time()
    shape = models.five_point_predictor()(rgb, rect)
    chip = dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
    t["align"] = (time.process_time() - t0) * 1e3
    t0 = time.process_time()
    raw = np.asarray(models.resnet().compute_face_descriptor(chip), dtype=np.float64)
    t["embed"] = (time.process_time() - t0) * 1e3
    return t, raw / np.linalg.norm(raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    paths = [p for p, _ in scan_dataset(args.dataset)][: args.images]
    models.warm_up("hog")
    opts = ExtractOptions(multiple_faces="largest", check_quality=False)
    ours: dict[str, list[float]] = {"detect": [], "align": [], "embed": [], "total": []}
    base: dict[str, list[float]] = {"detect": [], "align": [], "embed": [], "total": []}
    agree: list[float] = []
    missed = {"bdx": 0, "baseline": 0}
    for path in paths:
        rgb = load_rgb(path).pixels
        try:
            got = extract_from_pixels(rgb, opts)
        except BdxError:
            missed["bdx"] += 1
            got = None
        if got is not None:
            for stage in ("detect", "align", "embed"):
                ours[stage].append(got.cpu_ms[stage])
            ours["total"].append(sum(got.cpu_ms[s] for s in ("detect", "align", "embed")))
        t, emb = baseline(rgb)
        if emb is None:
            missed["baseline"] += 1
            continue
        for stage in ("detect", "align", "embed"):
            base[stage].append(t[stage])
        base["total"].append(sum(t.values()))
        if got is not None:
            agree.append(float(got.template.embedding @ emb))

    def med(values: list[float]) -> float:
        return round(statistics.median(values), 2) if values else float("nan")

    report = {
        "dataset": str(args.dataset),
        "images": len(paths),
        "no_face": missed,
        "median_cpu_ms": {k: {"bdx": med(ours[k]), "baseline": med(base[k])} for k in ours},
        "ratio_bdx_over_baseline": {
            k: round(med(ours[k]) / med(base[k]), 3) if base[k] and ours[k] else None for k in ours
        },
        "median_cosine_bdx_vs_baseline": med(agree),
    }
    if args.json:
        print(json.dumps(report, sort_keys=True))
        return
    print(f"{report['images']} images of {report['dataset']}; no face: {missed}")
    print(f"{'stage':8s} {'bdx cpu ms':>10s} {'dlib cpu ms':>11s} {'ratio':>6s}")
    for k in ours:
        m = report["median_cpu_ms"][k]
        print(
            f"{k:8s} {m['bdx']:10.2f} {m['baseline']:11.2f} {report['ratio_bdx_over_baseline'][k]}"
        )
    cosine = report["median_cosine_bdx_vs_baseline"]
    print(f"median cosine between the two templates of an image: {cosine}")


if __name__ == "__main__":
    main()
