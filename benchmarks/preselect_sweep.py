"""How well fingerprint pre-selection stages rank mates, and what they cost.

    .venv/bin/python benchmarks/preselect_sweep.py [--fingers 10000] [--probes 300] [--seed 2026]
        [--stages 12x10x4,12x12x5] [--keep 0.05,0.1,0.2] [--penetration 0.02] [--json]

A gallery of ``--fingers`` distinct synthetic fingers (``matcher.synthetic``, first impressions)
is probed with the second impressions of the first ``--probes``; each probe has exactly one
mate. For the full pre-selection (``matcher.search.preselect.FULL``) and for each candidate
coarse stage ``GxPxK`` (G stored rows, P probe rows, K pairs; ``preselect.Stage``):

* ``in_best``: share of mates the stage alone ranks within the best fraction of the gallery;
* ``cascade``: share of mates still among the final ``--penetration`` candidates when the stage
  screens the gallery (keeps its best ``--keep`` fraction) and the full score ranks only those;
  against ``full.in_final``, the full score over the whole gallery (what search does today);
* ``cpu_ms``: CPU time of the stage over the whole gallery for one probe, one thread (median of
  9), and ``cost_vs_full``, its ratio to the full score's timed in alternation with it.

The exact kernel is not run: a mate lost here is lost to two-stage search.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.progress import track

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from matcher.fingerprint import match
from matcher.search import preselect
from matcher.search.blas import single_threaded_blas
from matcher.synthetic import synthetic_templates

TIMING_REPEATS = 9


def cpu_ms(*fns: Callable[[], object]) -> list[float]:
    """Median CPU ms of each of ``fns``, runs alternating (so load changes hit all alike)."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(TIMING_REPEATS):
        for fn, spent in zip(fns, times, strict=True):
            start = time.process_time()
            fn()
            spent.append(time.process_time() - start)
    return [float(np.median(t) * 1e3) for t in times]


def parse_stage(text: str) -> preselect.Stage:
    g, p, k = (int(v) for v in text.lower().split("x"))
    return preselect.Stage(g, p, k)


def best_ids(scores: np.ndarray, n: int) -> np.ndarray:
    return np.argpartition(-scores, n - 1)[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fingers", type=int, default=10_000)
    ap.add_argument("--probes", type=int, default=300)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--stages", default="12x10x4,12x12x5,8x8x3")
    ap.add_argument("--keep", default="0.05,0.1,0.2")
    ap.add_argument("--penetration", type=float, default=0.02)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    raw = synthetic_templates(args.fingers, 2, seed=args.seed)
    gallery = np.stack(
        [
            preselect.gallery_rows(match.prepare(f[0]))
            for f in track(raw, description=f"prepare {args.fingers} fingers")
        ]
    )
    probes = [preselect.probe_matrix(match.prepare(f[1])) for f in raw[: args.probes]]
    n = args.fingers
    final = int(np.ceil(args.penetration * n))
    keeps = [float(v) for v in args.keep.split(",")]

    with single_threaded_blas():
        full = [preselect.FULL.scores(gallery, preselect.FULL.columns(c)) for c in probes]
        full_cols = preselect.FULL.columns(probes[0])
        full_ms = cpu_ms(functools.partial(preselect.FULL.scores, gallery, full_cols))[0]
        out: dict[str, object] = {
            "fingers": n,
            "probes": len(probes),
            "seed": args.seed,
            "penetration": args.penetration,
            "full": {
                "stage": "x".join(
                    str(v)
                    for v in (
                        preselect.FULL.gallery_rows,
                        preselect.FULL.probe_rows,
                        preselect.FULL.pairs,
                    )
                ),
                "in_final": float(np.mean([i in best_ids(s, final) for i, s in enumerate(full)])),
                "cpu_ms": full_ms,
            },
        }
        stages: list[dict[str, object]] = []
        for text in args.stages.split(","):
            stage = parse_stage(text)
            coarse = [stage.scores(gallery, stage.columns(c)) for c in probes]
            ranks = np.array([np.count_nonzero(s > s[i]) for i, s in enumerate(coarse)])
            row: dict[str, object] = {
                "stage": text,
                "in_best": {str(f): float(np.mean(ranks < f * n)) for f in keeps},
                "worst_rank": float(ranks.max() / n),
            }
            cascade = {}
            for f in keeps:
                kept = 0
                for i, (c, s) in enumerate(zip(coarse, full, strict=True)):
                    screened = best_ids(c, int(np.ceil(f * n)))
                    kept += i in screened[best_ids(s[screened], final)]
                cascade[str(f)] = kept / len(probes)
            row["cascade"] = cascade
            cols = stage.columns(probes[0])
            spent, against = cpu_ms(
                functools.partial(stage.scores, gallery, cols),
                functools.partial(preselect.FULL.scores, gallery, full_cols),
            )
            row["cpu_ms"] = spent
            row["cost_vs_full"] = spent / against
            stages.append(row)
        out["stages"] = stages
    if args.json:
        print(json.dumps(out))
        return
    print(json.dumps(out["full"]))
    for row in stages:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
