"""FVC2002 DB1–DB4 (B sets) through extraction + matching: the accuracy table and the FMR table.

    .venv/bin/python benchmarks/fingerprint_eval.py [--root ../shared/data/fingerprint]
        [--json] [--thresholds]

Per database it runs the same protocol as ``bdx eval fingerprint`` (``matcher.fingerprint.fvc``)
and prints one markdown row: EER (cross-finger impostors), EER on the FVC 45 impostor pairs,
FNMR at FMR = 1% and 0.1%, rank-1, median extraction CPU ms (one thread), comparisons per CPU
second (1:1 and the N x N matrix through the batch kernel), median minutiae per template. DB2 is
scanned at 569 ppi (FVC2002 report); the others at 500. With ``--thresholds`` it pools the
cross-finger impostor scores of all four databases and prints the score threshold at each FMR,
the table kept in ``matcher/fingerprint/match/thresholds.py``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from matcher import evaluation  # noqa: E402
from matcher.fingerprint.extract import extract_file  # noqa: E402
from matcher.fingerprint.fvc import evaluate_scores  # noqa: E402
from matcher.fingerprint.template import FingerprintTemplate  # noqa: E402

DATABASES = {"DB1_B": 500.0, "DB2_B": 569.0, "DB3_B": 500.0, "DB4_B": 500.0}
FMRS = (0.1, 0.03, 0.01, 0.003, 0.001, 0.0003)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("../shared/data/fingerprint"))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--thresholds", action="store_true")
    args = ap.parse_args()

    rows = {}
    impostors = []
    for name, ppi in DATABASES.items():

        def extractor(path: Path, ppi: float = ppi) -> FingerprintTemplate:
            return extract_file(path, ppi=ppi)

        report, _, impostor = evaluate_scores(args.root / f"FVC2002_{name}", extractor)
        rows[name] = report.to_dict()
        impostors.append(impostor)
    pooled = np.concatenate(impostors)
    table = {f"{f:g}": evaluation.threshold_at_fmr(pooled, f) for f in FMRS}
    if args.json:
        print(json.dumps({"databases": rows, "thresholds": table}, sort_keys=True))
        return
    print(
        "| DB | EER | EER (45 pairs) | FNMR@FMR1% | FNMR@FMR0.1% | rank-1 | extract CPU ms "
        "| 1:1 cmp/CPU-s | matrix cmp/CPU-s | minutiae |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(
            f"| {name} | {100 * r['eer']:.2f}% | {100 * r['eer_45']:.2f}% "
            f"| {100 * r['fnmr_at_fmr_1pct']:.1f}% | {100 * r['fnmr_at_fmr_01pct']:.1f}% "
            f"| {100 * r['rank1']:.1f}% | {r['extract_cpu_ms_median']:.0f} "
            f"| {r['comparisons_per_cpu_s_1to1']:.0f} | {r['comparisons_per_cpu_s_batch']:.0f} "
            f"| {r['minutiae_median']:.0f} |"
        )
    if args.thresholds:
        print(f"\nThresholds from {pooled.size} pooled cross-finger impostor scores:")
        for f, t in table.items():
            print(f"    ({f}, {t:.6f}),")


if __name__ == "__main__":
    main()
