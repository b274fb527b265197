"""Fingerprint comparison speed on one core: 1:1 and the 1:N batch kernel.

    .venv/bin/python benchmarks/fingerprint_match.py [--gallery 10000] [--repeats 5] [--json]

Templates are synthetic (``matcher.synthetic.synthetic_templates``: FVC-like spacing, no
images), those with 40–60 minutiae kept (the FVC-like size of the 1:N target), so blocks are
padded to 64 rows. Reported, each the median of ``--repeats`` runs, threads pinned to 1,
in comparisons per CPU second of this process (per core, and unaffected by other processes
on a shared machine; wall-clock rates are printed too):

* ``prepare_ms``: building one SearchTemplate (cylinders) from a FingerprintTemplate.
* ``one_to_one_per_s``: ``score_many(probe, pack([t]))`` on prepared templates, one call per
  comparison (the 1:1 path of ``matcher.fingerprint.match.score`` minus ``prepare``).
* ``raw_one_to_one_per_s``: ``matcher.fingerprint.match.score(a, b)`` on two
  FingerprintTemplates, which prepares both on every call.
* ``batch_per_s``: one ``score_many`` call over a packed block of ``--gallery`` templates.
* ``speedup``: batch over the 1:1 loop (the same comparisons, same process).
* with ``--baseline-rev REV``: ``baseline_batch_per_s``, the batch kernel of
  ``matcher/fingerprint/match/kernel.py`` as it was at git revision REV (read with ``git show``
  and run in this process on the same block, runs alternating with ours), and
  ``batch_speedup_vs_baseline``. E.g. ``--baseline-rev ef6ea9b``: the numpy-only kernel before
  the compiled stage.
* with ``--fields``: every template gets a coarse orientation field of a plain FVC2002 image
  (388 x 374 px: 23 x 24 blocks of 16 px, the ~240 inside an ellipse foreground, codes from a
  smooth random flow), so that the kernel's orientation-field term runs as it does on
  extracted templates (synthetic templates have no field: the term is then skipped).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from matcher.fingerprint.match import pack, prepare, score, score_many  # noqa: E402
from matcher.fingerprint.template import FingerprintTemplate  # noqa: E402
from matcher.synthetic import synthetic_templates  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline import baseline_kernel  # noqa: E402

#: Distinct templates prepared; the gallery block repeats them (the kernel's cost does not
#: depend on the values, and preparing 10^4 templates would dominate the run).
DISTINCT = 800
ONE_TO_ONE = 300
#: Raw-template comparisons timed (each prepares two templates: ~100x a prepared one's cost).
RAW_ONE_TO_ONE = 100
FEWEST, MOST = 40, 60


def with_field(t: FingerprintTemplate, seed: int) -> FingerprintTemplate:
    """``t`` on a 388 x 374 image (its minutiae moved inside if need be) with a FVC-like
    orientation field (see ``--fields``)."""
    w, h = 388, 374
    rows, cols = h // 16, w // 16
    yy, xx = np.mgrid[0:rows, 0:cols]
    a, b = np.random.default_rng(seed).uniform(0, 1, 2)
    codes = np.rint(90 * a + 40 * np.sin(xx / 5 + 6 * b) + 30 * np.cos(yy / 4)) % 180
    inside = ((xx + 0.5 - cols / 2) / (0.45 * cols)) ** 2 + (
        (yy + 0.5 - rows / 2) / (0.48 * rows)
    ) ** 2 <= 1
    return FingerprintTemplate(
        x=np.clip(t.x, 0, w - 1),
        y=np.clip(t.y, 0, h - 1),
        angle=t.angle,
        kind=t.kind,
        quality=t.quality,
        width=w,
        height=h,
        orientation=np.where(inside, codes, 255).astype(np.uint8),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--gallery", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--baseline-rev", help="git revision whose kernel.py is the baseline")
    ap.add_argument("--fields", action="store_true", help="templates with orientation fields")
    args = ap.parse_args()

    raw = synthetic_templates(DISTINCT // 2, 2, seed=1)
    templates = [t for finger in raw for t in finger if FEWEST <= t.count <= MOST]
    if args.fields:
        templates = [with_field(t, i) for i, t in enumerate(templates)]
    t0 = time.perf_counter()
    prepared = [prepare(t) for t in templates]
    prepare_ms = (time.perf_counter() - t0) / len(prepared) * 1e3
    counts = [t.count for t in prepared]

    singles = [pack([t]) for t in prepared[:ONE_TO_ONE]]
    probe = prepared[0]
    one, one_wall = [], []
    for _ in range(args.repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        for s in singles:
            score_many(probe, s)
        one.append(len(singles) / (time.process_time() - c0))
        one_wall.append(len(singles) / (time.perf_counter() - t0))

    # score(a, b) on raw templates: both prepared on every call, as a caller holding only
    # FingerprintTemplates (no gallery of prepared ones) would compare them
    raw_one = []
    for _ in range(args.repeats):
        c0 = time.process_time()
        for t in templates[1 : RAW_ONE_TO_ONE + 1]:
            score(templates[0], t)
        raw_one.append(RAW_ONE_TO_ONE / (time.process_time() - c0))

    members = [prepared[i % len(prepared)] for i in range(args.gallery)]
    block = pack(members)
    base = baseline_kernel(args.baseline_rev) if args.baseline_rev else None
    batch, batch_wall, baseline = [], [], []
    for _ in range(args.repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        ours = score_many(probe, block)
        batch.append(args.gallery / (time.process_time() - c0))
        batch_wall.append(args.gallery / (time.perf_counter() - t0))
        if base is not None:
            c0 = time.process_time()
            theirs = base(probe, block)
            baseline.append(args.gallery / (time.process_time() - c0))
            gap = float(np.abs(ours - theirs).max())

    result = {
        "templates_minutiae_median": float(np.median(counts)),
        "block_shape": list(block.descriptors.shape),
        "prepare_ms": round(prepare_ms, 3),
        "one_to_one_per_s": round(statistics.median(one)),
        "raw_one_to_one_per_s": round(statistics.median(raw_one)),
        "batch_per_s": round(statistics.median(batch)),
        "speedup": round(statistics.median(batch) / statistics.median(one), 1),
        "one_to_one_per_wall_s": round(statistics.median(one_wall)),
        "batch_per_wall_s": round(statistics.median(batch_wall)),
        "gallery": args.gallery,
        "repeats": args.repeats,
        "fields": args.fields,
    }
    if baseline:
        result["baseline_rev"] = args.baseline_rev
        result["baseline_batch_per_s"] = round(statistics.median(baseline))
        result["batch_speedup_vs_baseline"] = round(
            statistics.median(batch) / statistics.median(baseline), 2
        )
        result["max_score_difference"] = gap
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for k, v in result.items():
            print(f"{k:28s} {v}")


if __name__ == "__main__":
    main()
