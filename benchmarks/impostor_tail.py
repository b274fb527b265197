"""How low an FMR the fingerprint thresholds can claim: the impostor tail, real and synthetic.

    .venv/bin/python benchmarks/impostor_tail.py [--fingers 2000] [--seed 2026]
        [--profile typical] [--root ../shared/data/fingerprint] [--work DIR]
        [--cache FILE.npz] [--jobs 2] [--json]

The operating table (``matcher/fingerprint/match/thresholds.py``) is counted on the 11,520
cross-finger impostor pairs of FVC2002 DB1–DB4 (B sets), which measure FMRs down to about 3e-4.
A 1:N search of N records makes N impostor comparisons for a stranger, so its false-positive
identification rate is FPIR = 1 - (1 - FMR)^N: keeping a search of thousands of records at
FPIR 1 % needs thresholds at FMRs of 1e-5 to 1e-6. This script gives those rows and checks how
they were got:

1. FVC: every image of the four B sets (DB2 at 569 ppi), the N x N score matrix of each set
   (batch kernel, probe = row); cross-finger pairs i < j pooled (impostors), same-finger pairs
   (genuine, 4 x 280).
2. Counted rows: the smallest threshold whose FMR on the pooled impostors does not exceed the
   row (:func:`matcher.evaluation.threshold_at_fmr`), where at least MIN_ABOVE scores reach it.
3. Tail rows: a generalised Pareto distribution fitted (MLE) to the top TAIL_SHARE of the
   impostor scores (peaks over threshold) gives the threshold at each FMR; the table takes the
   UPPER quantile of that threshold over BOOTSTRAP resamples of the *fingers* (each set's
   fingers drawn with replacement, all pairs of images of different fingers kept).
4. The check: synthetic fingers (``matcher.synthetic``, one image each of ``--fingers``
   masters seeded from ``--seed``, profile ``--profile``, through the same extractor and
   matcher; images kept in ``--work``/tail) give ``--fingers`` choose 2 impostor pairs, whose
   counted thresholds are the truth (to ~1.5e-6 for 2,000 fingers). CHECK_POOL more fingers
   of CHECK_IMPRESSIONS impressions each (seed + 1, ``--work``/check) give CHECKS draws shaped
   like FVC (CHECK_GROUPS sets of CHECK_GROUP_FINGERS fingers), each fitted and bootstrapped as
   FVC is: per FMR the point fit's median ratio to the truth and, per level of LEVELS, the
   share of bounds at or above it (UPPER was chosen as the level that holds about 95 % of the
   time). Synthetic fingers' impostor tail is heavier than FVC's (their thresholds are about
   twice FVC's), so they check the method, and their thresholds are not used.

Per row it prints FVC's counted threshold, the tail fit and bound, the synthetic count, the
row proposed for the table (counted where FVC counts, else the bound) and the FNMR of the FVC
genuine pairs there (what the strictness costs on real fingers). ``--cache`` keeps the score
matrices (a 2,000-finger run extracts and scores for ~15 minutes; the fits take ~2 more).
Figures: benchmarks/README.md, "Impostor tail and FPIR".
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scipy.stats import genpareto  # noqa: E402

from matcher import evaluation  # noqa: E402
from matcher.errors import BdxError  # noqa: E402
from matcher.fingerprint.extract import extract_file  # noqa: E402
from matcher.fingerprint.fvc import BLOCK, scan  # noqa: E402
from matcher.fingerprint.match import pack, prepare, score_many  # noqa: E402
from matcher.fingerprint.template import FingerprintTemplate  # noqa: E402
from matcher.synthetic.dataset import write_dataset  # noqa: E402
from matcher.workers import exit_with_parent  # noqa: E402

F32 = npt.NDArray[np.float32]
DATABASES = {"DB1_B": 500.0, "DB2_B": 569.0, "DB3_B": 500.0, "DB4_B": 500.0}
FMRS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)
#: A rate is measured on a set only where at least this many of its impostors lie at or above
#: the threshold (with fewer, one pair more or less moves the threshold by a whole row).
MIN_ABOVE = 3

#: Share of the impostor scores, the highest, that the generalised Pareto tail is fitted to
#: (peaks over threshold): 2 % of FVC's 11,520 pairs is 230 scores, above FMR 2e-2, where the
#: distribution's body no longer shapes them.
TAIL_SHARE = 0.02
#: Bootstrap resamples of the tail fit, and the upper quantile of their thresholds that the
#: table takes: a threshold too low would claim a false FMR, and on FVC-shaped synthetic draws
#: the 99th percentile held in 92-95 % of them at 1e-4 to 3e-6 (the 95th in 80-90 %).
BOOTSTRAP = 200
UPPER = 0.99
#: Upper quantiles of the bootstrap that the check reports (UPPER is the one the table takes).
LEVELS = (0.95, 0.99, 0.999)
#: The check mimics FVC's structure: CHECKS draws of CHECK_GROUPS sets of CHECK_GROUP_FINGERS
#: fingers with CHECK_IMPRESSIONS impressions each (4 x 2,880 = 11,520 impostor pairs, as
#: FVC2002 DB1-DB4 give), from CHECK_POOL synthetic fingers of that many impressions, fitted and
#: bootstrapped as FVC is, against the thresholds counted on the one-impression fingers.
CHECKS = 40
CHECK_GROUPS = 4
CHECK_GROUP_FINGERS = 10
CHECK_IMPRESSIONS = 8
CHECK_POOL = 200

_templates: list[FingerprintTemplate | None] = []


def _extract(job: tuple[str, float]) -> FingerprintTemplate | None:
    try:
        return extract_file(Path(job[0]), ppi=job[1])
    except BdxError:
        return None


def extract_many(paths: list[Path], ppi: float, jobs: int) -> list[FingerprintTemplate | None]:
    """Templates of ``paths`` in order (None where extraction refused the image)."""
    work = [(str(p), ppi) for p in paths]
    if jobs <= 1:
        return [_extract(w) for w in work]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=exit_with_parent) as pool:
        return list(pool.map(_extract, work, chunksize=8))


def _share(templates: list[FingerprintTemplate | None]) -> None:
    exit_with_parent()
    _templates[:] = templates


def _rows(span: tuple[int, int]) -> F32:
    """Scores of probes ``span`` against every template (-1 where either side is missing)."""
    ok = [t for t in _templates if t is not None]
    index = np.full(len(_templates), -1, np.int64)
    index[[k for k, t in enumerate(_templates) if t is not None]] = np.arange(len(ok))
    prepared = [prepare(t) for t in ok]
    blocks = [pack(prepared[s : s + BLOCK]) for s in range(0, len(prepared), BLOCK)]
    out = np.full((span[1] - span[0], len(_templates)), -1.0, np.float32)
    for r, i in enumerate(range(*span)):
        if index[i] >= 0:
            row = np.concatenate([score_many(prepared[index[i]], b) for b in blocks])
            out[r, index >= 0] = row
    return out


def score_matrix(templates: list[FingerprintTemplate | None], jobs: int) -> F32:
    """(n, n) scores, probe = row, over ``jobs`` processes (-1 where a template is missing)."""
    n = len(templates)
    step = max(1, -(-n // (4 * max(1, jobs))))
    spans = [(s, min(n, s + step)) for s in range(0, n, step)]
    if jobs <= 1:
        _templates[:] = templates
        return np.concatenate([_rows(s) for s in spans])
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_share, initargs=(templates,)) as p:
        return np.concatenate(list(p.map(_rows, spans)))


#: One set of scores: (n, n) matrix (probe = row, -1 where a template is missing) and the
#: finger (cluster) of each of its n images.
ScoreSet = tuple[F32, npt.NDArray[np.int64]]


def pairs(scores: F32, fingers: npt.NDArray[np.int64]) -> tuple[F32, F32]:
    """(genuine, impostor) scores of the pairs i < j where both templates exist."""
    iu, ju = np.triu_indices(len(fingers), k=1)
    s = scores[iu, ju]
    ok = s >= 0
    same = fingers[iu] == fingers[ju]
    return s[ok & same], s[ok & ~same]


def impostors(sets: list[ScoreSet]) -> F32:
    return np.concatenate([pairs(m, f)[1] for m, f in sets])


def resample(sets: list[ScoreSet], rng: np.random.Generator) -> F32:
    """Impostor scores of one cluster bootstrap: per set, its fingers drawn with replacement,
    every image of each draw kept, and the pairs of images of different fingers scored (the
    unit resampled is the finger: a finger's impressions, and every pair an image is in, are
    not independent of each other)."""
    out = []
    for matrix, fingers in sets:
        names = np.unique(fingers)
        drawn = rng.choice(names, names.size)
        idx = np.concatenate([np.flatnonzero(fingers == f) for f in drawn])
        iu, ju = np.triu_indices(idx.size, k=1)
        a, b = idx[iu], idx[ju]
        keep = fingers[a] != fingers[b]
        a, b = a[keep], b[keep]
        s = matrix[np.minimum(a, b), np.maximum(a, b)]
        out.append(s[s >= 0])
    return np.concatenate(out)


def fvc_sets(root: Path, jobs: int) -> tuple[list[ScoreSet], int]:
    sets, failures = [], 0
    for name, ppi in DATABASES.items():
        samples = scan(root / f"FVC2002_{name}")
        templates = extract_many([s.path for s in samples], ppi, jobs)
        failures += sum(t is None for t in templates)
        sets.append((score_matrix(templates, jobs), np.array([s.finger for s in samples])))
    return sets, failures


def synthetic_set(fingers: int, seed: int, profile: str, work: Path, jobs: int) -> ScoreSet:
    """The synthetic fingers' matrix (one image a finger; those that extracted)."""
    paths = sorted(work.glob("*_1.png"), key=lambda p: int(p.name.split("_")[0]))
    if len(paths) != fingers:
        paths = write_dataset(work, fingers, 1, seed, profile=profile, workers=jobs)
    templates = [t for t in extract_many(paths, 500.0, jobs) if t is not None]
    return score_matrix(list(templates), jobs), np.arange(len(templates))


def check_pool(seed: int, profile: str, work: Path, jobs: int) -> ScoreSet:
    """CHECK_POOL synthetic fingers of CHECK_IMPRESSIONS impressions (masters seeded from
    ``seed``, images kept in ``work``): their matrix and fingers."""
    paths = sorted(work.glob("*_*.png"))
    if len(paths) != CHECK_POOL * CHECK_IMPRESSIONS:
        paths = write_dataset(work, CHECK_POOL, CHECK_IMPRESSIONS, seed, profile=profile)
    samples = scan(work)
    templates = extract_many([x.path for x in samples], 500.0, jobs)
    return score_matrix(templates, jobs), np.array([x.finger for x in samples])


def load_or_score(
    args: argparse.Namespace,
) -> tuple[list[ScoreSet], ScoreSet, ScoreSet, int, Path]:
    """The four FVC sets and the synthetic one, from ``--cache`` when it exists (written
    otherwise): extraction and scoring take ~15 minutes for 2,000 synthetic fingers."""
    if args.cache is not None and args.cache.exists():
        z = np.load(args.cache)
        if [int(z["fingers"]), int(z["seed"]), str(z["profile"])] != [
            args.fingers,
            args.seed,
            args.profile,
        ]:
            raise SystemExit(
                f"{args.cache} holds another run's scores (--fingers/--seed/--profile)"
            )
        fvc = [(z[f"m{k}"], z[f"f{k}"]) for k in range(len(DATABASES))]
        synth = (z["synth"], np.arange(len(z["synth"])))
        return fvc, synth, (z["check_m"], z["check_f"]), int(z["fte"]), args.cache
    fvc, fte = fvc_sets(args.root, args.jobs)
    work = args.work or Path(tempfile.mkdtemp(prefix="bdx-impostor-tail-"))
    work.mkdir(parents=True, exist_ok=True)
    synth = synthetic_set(args.fingers, args.seed, args.profile, work / "tail", args.jobs)
    pool = check_pool(args.seed + 1, args.profile, work / "check", args.jobs)
    if args.cache is not None:
        arrays: dict[str, npt.NDArray[Any]] = {f"m{k}": m for k, (m, _) in enumerate(fvc)}
        arrays |= {f"f{k}": f for k, (_, f) in enumerate(fvc)}
        arrays |= {"synth": synth[0], "check_m": pool[0], "check_f": pool[1]}
        arrays |= {"fte": np.array(fte), "fingers": np.array(args.fingers)}
        arrays |= {"seed": np.array(args.seed), "profile": np.array(args.profile)}
        np.savez(args.cache, allow_pickle=False, **arrays)
    return fvc, synth, pool, fte, work


def measured(impostor: F32, fmr: float) -> float | None:
    if fmr * impostor.size < MIN_ABOVE:
        return None
    return evaluation.threshold_at_fmr(impostor, fmr)


def tail_thresholds(impostor: F32, fmrs: list[float]) -> list[float]:
    """Thresholds at ``fmrs`` from one generalised Pareto fit (MLE, location 0) to the
    exceedances of the top TAIL_SHARE of ``impostor``: P(X > t) = share * (1 + c (t - u) / s)
    ^ (-1/c); NaN for an FMR above the share (the body of the distribution, not its tail)."""
    x = np.sort(impostor.astype(np.float64))
    k = max(MIN_ABOVE * 10, int(TAIL_SHARE * x.size))
    u = x[x.size - k - 1]
    c, _, scale = genpareto.fit(x[x.size - k :] - u, floc=0)
    tail = np.array(fmrs) * x.size / k
    with np.errstate(invalid="ignore"):
        t = u + genpareto.isf(np.where(tail <= 1.0, tail, np.nan), c, loc=0, scale=scale)
    return [float(v) for v in t]


def tail_bounds(
    sets: list[ScoreSet], fmrs: list[float], rng: np.random.Generator, levels: tuple[float, ...]
) -> npt.NDArray[np.float64]:
    """(levels, fmrs): quantiles ``levels`` of :func:`tail_thresholds` over BOOTSTRAP cluster
    resamples (:func:`resample`)."""
    boot = np.array([tail_thresholds(resample(sets, rng), fmrs) for _ in range(BOOTSTRAP)])
    return np.quantile(boot, levels, axis=0)


def check_tail(
    truth_set: ScoreSet, pool: ScoreSet, fmrs: list[float], rng: np.random.Generator
) -> list[dict[str, Any]]:
    """The fit checked where the truth can be counted: per FMR the threshold counted on every
    pair of ``truth_set``, and over CHECKS FVC-shaped draws from ``pool`` the median ratio of
    the point fit to it and, per level of LEVELS, the share of bounds at or above it and their
    median ratio to it."""
    truth = [measured(impostors([truth_set]), f) for f in fmrs]
    matrix, fingers = pool
    names = np.unique(fingers)
    points, bounds = [], []
    for _ in range(CHECKS):
        pick = rng.choice(names, CHECK_GROUPS * CHECK_GROUP_FINGERS, replace=False)
        groups: list[ScoreSet] = []
        for g in pick.reshape(CHECK_GROUPS, CHECK_GROUP_FINGERS):
            idx = np.flatnonzero(np.isin(fingers, g))
            groups.append((matrix[np.ix_(idx, idx)], fingers[idx]))
        points.append(tail_thresholds(impostors(groups), fmrs))
        bounds.append(tail_bounds(groups, fmrs, rng, LEVELS))
    p, b = np.array(points), np.array(bounds)  # (CHECKS, fmrs), (CHECKS, levels, fmrs)
    out = []
    for j, f in enumerate(fmrs):
        t = truth[j]
        row: dict[str, Any] = {"fmr": f}
        if t is not None and not np.isnan(p[:, j]).any():
            row |= {
                "measured": t,
                "point_ratio_median": float(np.median(p[:, j] / t)),
                "levels": {
                    f"{q:g}": {
                        "covers": float(np.mean(b[:, k, j] >= t)),
                        "ratio_median": float(np.median(b[:, k, j] / t)),
                    }
                    for k, q in enumerate(LEVELS)
                },
            }
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("../shared/data/fingerprint"))
    ap.add_argument("--fingers", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--profile", default="typical")
    ap.add_argument("--work", type=Path, help="folder for the synthetic images (kept)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--cache", type=Path, help="score matrices (.npz): reused if present")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    if args.cache is not None and args.cache.suffix != ".npz":
        args.cache = args.cache.with_name(args.cache.name + ".npz")  # np.savez would add it
    fvc_data, synth_data, pool, fvc_fte, where = load_or_score(args)
    seconds = time.perf_counter() - t0
    genuine = np.concatenate([pairs(m, f)[0] for m, f in fvc_data])
    fvc, synth = impostors(fvc_data), impostors([synth_data])
    synth_n = int(synth_data[1].size)
    rng = np.random.default_rng(args.seed)
    fmrs = list(FMRS)
    points = tail_thresholds(fvc, fmrs)
    bounds = [float(v) for v in tail_bounds(fvc_data, fmrs, rng, (UPPER,))[0]]
    rows: list[dict[str, Any]] = []
    for j, fmr in enumerate(fmrs):
        real = measured(fvc, fmr)
        proposed = real if real is not None else bounds[j]
        rows.append(
            {
                "fmr": fmr,
                "fvc": real,
                "fvc_tail": points[j],
                "fvc_tail_bound": bounds[j],
                "synthetic": measured(synth, fmr),
                "proposed": proposed,
                "proposed_from": "measured" if real is not None else "tail_bound",
                "fnmr": float(np.mean(genuine < proposed)),
            }
        )
    check = check_tail(synth_data, pool, fmrs, rng)
    report: dict[str, Any] = {
        "fvc": {"impostors": int(fvc.size), "genuine": int(genuine.size), "fte": fvc_fte},
        "synthetic": {
            "fingers": args.fingers,
            "extracted": synth_n,
            "seed": args.seed,
            "profile": args.profile,
            "impostors": int(synth.size),
            "scoring_seconds": round(seconds, 1),
        },
        "rows": rows,
        "check": check,
        "data": str(where),
    }
    if args.json:
        print(json.dumps(report, sort_keys=True))
        return
    print(f"FVC: {fvc.size} impostor / {genuine.size} genuine pairs, {fvc_fte} failures")
    print(f"synthetic: {synth.size} impostor pairs of {synth_n} of {args.fingers} fingers")

    def cell(x: float | None, fmt: str = ".6f") -> str:
        return "—" if x is None or np.isnan(x) else format(x, fmt)

    print(
        "| FMR | FVC measured | FVC tail fit | FVC tail bound | synthetic measured | proposed "
        "| FNMR FVC |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['fmr']:g} | {cell(r['fvc'])} | {cell(r['fvc_tail'])} "
            f"| {cell(r['fvc_tail_bound'])} | {cell(r['synthetic'])} | {cell(r['proposed'])} "
            f"| {100 * r['fnmr']:.2f} % |"
        )
    print("\nThe fit on FVC-shaped synthetic draws, against thresholds counted on all pairs:")
    levels = " | ".join(f"bound {q:g}: covers, ratio" for q in LEVELS)
    print(f"| FMR | counted | fit / counted (median) | {levels} |")
    print("|---" * (3 + len(LEVELS)) + "|")
    for c in check:
        if "measured" in c:
            cells = " | ".join(
                f"{100 * v['covers']:.0f} %, {v['ratio_median']:.2f}" for v in c["levels"].values()
            )
            print(
                f"| {c['fmr']:g} | {c['measured']:.6f} | {c['point_ratio_median']:.3f} | {cells} |"
            )


if __name__ == "__main__":
    main()
