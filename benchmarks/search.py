"""1:N search speed, memory and open time over the durable gallery store.

    .venv/bin/python benchmarks/search.py [--face 10000,100000,1000000]
        [--fingerprint 10000,100000] [--fusion-subjects 300] [--repeats 5] [--json]

Galleries are built once under ``benchmarks/cache/`` (git-ignored) and reopened (memory-mapped)
on later runs. Figures are medians over ``--repeats``; baselines run in the same process:

* face: random unit vectors (d = 128). ``bare_ms``: one numpy ``G @ q`` over the whole
  memory-mapped (N, 128) float32 array (no top-k); ``faiss_ms``: ``IndexFlatIP.search`` (faiss
  on 2 OpenMP threads, its default here); ours with 1 and 2 threads; ranked by CSLS with a
  threshold (``csls_2t_ms``, the node's face search: random offsets); a batch of 64 probes
  per probe; the int8 gallery.
* fingerprint: synthetic FVC-like templates (``matcher.synthetic.synthetic_templates``);
  ``--distinct`` fingers are prepared once and tiled to the gallery size (the kernel's cost does
  not depend on the values; preparing 10^5 templates would take ~9 min). Baseline: the 1:1
  ``matcher.fingerprint.match.score`` in a Python loop on a subset, extrapolated. Rank-1 over
  probes of the distinct fingers (second impressions), by subject.
* face neighbour lists (``--neighbours``; the CSLS offsets the node ranks face searches by,
  ``matcher.search.neighbours``): on a copy of the face gallery, the first build (CPU and
  wall), then the refresh after appending 1 and 1,000 records and after deleting 10, a
  restart from the saved lists (``neighbours.save``, then ``load`` + refresh); and one
  probe ranked by CSLS with a threshold (``csls_2t_ms``) against the plain cosine search
  (``ours_2t_ms``) in the same process.
* fusion: subjects with two fingers (positions 1 and 2), probed with second impressions;
  FNMR at FMR 1 % for one finger vs two (rule ``fmr``), mated vs non-mated subject scores.

Peak memory is the process's peak RSS (``ru_maxrss``: mapped gallery pages count once touched).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import resource
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import psutil
from rich.progress import track

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from matcher.evaluation import fnmr_at_fmr
from matcher.fingerprint import match
from matcher.fingerprint.template import FingerprintTemplate
from matcher.gallery import Gallery
from matcher.search import params as search_params
from matcher.search.blas import single_threaded_blas
from matcher.search.face import face_records, face_schema, search_face
from matcher.search.fingerprint import (
    fingerprint_records,
    fingerprint_schema,
    fingerprint_scores,
    search_fingerprint,
)
from matcher.search.fusion import fuse
from matcher.synthetic.templates import synthetic_templates

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline import baseline_kernel

CACHE = Path(__file__).resolve().parent / "cache"
FMT, VER = "bench-random/unit", 1
BATCH = 64
LOOP_SUBSET = 100
#: Two-stage search scores this fraction exactly (what ``penetration="auto"`` uses on large
#: galleries); rank-1 is checked against exhaustive search.
PENETRATION = search_params.AUTO_PENETRATION
RANK1_PROBES = 50
#: Fewer rank-1 probes on big galleries: each exhaustive probe of 10^5 takes seconds here.
RANK1_PROBES_LARGE = 20
#: Above this size exhaustive search (~9 s of CPU per probe at 10^6) is timed once, on two
#: threads, and rank-1 uses RANK1_PROBES_HUGE probes: the two-stage figures are the point there.
EXHAUSTIVE_REPEAT_MAX = 200_000
#: Probes whose exhaustive searches give the comparisons-per-CPU-second rate.
RATE_PROBES = 20
RANK1_PROBES_HUGE = 10
#: Fusion probes are partial prints: minutiae within this radius (px) of a random minutia,
#: so that one finger alone is often not enough (a plain second impression nearly always is).
PARTIAL_RADIUS = 90.0


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def cpu_s(fn: Callable[[], object], repeats: int) -> float:
    """Median process CPU seconds of ``fn`` (all threads): robust on a shared, loaded machine."""
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def open_times(path: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    Gallery.open(path, verify=True).close()
    t1 = time.perf_counter()
    Gallery.open(path, verify=False).close()
    t2 = time.perf_counter()
    return {"open_verify_s": t1 - t0, "open_s": t2 - t1}


def cached(path: Path, n: int) -> bool:
    """A complete gallery of ``n`` records is cached at ``path`` (an interrupted build is not)."""
    if not (path / "MANIFEST.json").exists():
        return False
    with Gallery.open(path, verify=False) as g:
        return len(g) == n


# ------------------------------------------------------------------------------------ face
def build_face(n: int, int8: bool) -> Path:
    path = CACHE / f"face-{n}{'-i8' if int8 else ''}"
    if cached(path, n):
        return path
    shutil.rmtree(path, ignore_errors=True)
    schema = face_schema(FMT, VER, int8=int8)
    chunk = 100_000
    with Gallery.create(path, schema) as g:
        for lo in track(range(0, n, chunk), description=f"face gallery {n}"):
            hi = min(n, lo + chunk)
            rng = np.random.default_rng(lo)
            e = rng.standard_normal((hi - lo, 128), dtype=np.float32)
            e /= np.linalg.norm(e, axis=1, keepdims=True)
            refs = [f"r{i}" for i in range(lo, hi)]
            g.append(face_records(refs, refs, e, schema=schema, format=FMT, format_version=VER))
        g.compact()  # one segment, so the bare baseline can scan the very same array
    return path


def bench_face(n: int, repeats: int) -> dict[str, float]:
    import faiss  # benchmark-only baseline

    path = build_face(n, int8=False)
    row: dict[str, float] = {"n": n, **open_times(path)}
    g = Gallery.open(path)
    (block,) = g.blocks(n)  # one segment when built here: the whole array, memory-mapped
    matrix = np.asarray(block.arrays["embedding"])
    rng = np.random.default_rng(99)
    q = rng.standard_normal((BATCH, 128), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(128)
    index.add(matrix)

    def ours(probes: np.ndarray, threads: int) -> object:
        return search_face(g, probes, format=FMT, format_version=VER, k=10, threads=threads)

    ours(q[:1], 2)  # touch the pages once
    with single_threaded_blas():
        row["bare_ms"] = median_ms(lambda: matrix @ q[0], repeats)
    row["bare_2blas_ms"] = median_ms(lambda: matrix @ q[0], repeats)
    row["ours_1t_ms"] = median_ms(lambda: ours(q[:1], 1), repeats)
    row["ours_2t_ms"] = median_ms(lambda: ours(q[:1], 2), repeats)
    row["faiss_ms"] = median_ms(lambda: index.search(q[:1], 10), repeats)
    row["ours_batch_ms_per_probe"] = median_ms(lambda: ours(q, 2), repeats) / BATCH
    row["faiss_batch_ms_per_probe"] = median_ms(lambda: index.search(q, 10), repeats) / BATCH
    offsets = rng.uniform(0.85, 1.0, g.size).astype(np.float32)  # cost does not depend on them
    row["csls_2t_ms"] = median_ms(
        lambda: search_face(
            g, q[:1], format=FMT, format_version=VER, k=10, threshold=0.9, offsets=offsets
        ),
        repeats,
    )
    row["ratio_to_bare"] = row["ours_2t_ms"] / row["bare_ms"]
    row["speedup_2t"] = row["ours_1t_ms"] / row["ours_2t_ms"]
    index.reset()
    g8 = Gallery.open(build_face(n, int8=True))
    row["int8_2t_ms"] = median_ms(
        lambda: search_face(g8, q[:1], format=FMT, format_version=VER, k=10), repeats
    )
    agree = [
        search_face(g8, q[j : j + 1], format=FMT, format_version=VER, k=1)[0]
        .candidates[0]
        .reference
        == ours(q[j : j + 1], 2)[0].candidates[0].reference
        for j in range(8)
    ]
    row["int8_rank1_agreement"] = float(np.mean(agree))
    row["rss_mb"] = psutil.Process().memory_info().rss / 2**20
    row["peak_rss_mb"] = peak_rss_mb()
    return row


def bench_neighbours(n: int, repeats: int) -> dict[str, float]:
    import tempfile

    from matcher.search import neighbours
    from matcher.search.face import gallery_embeddings

    row: dict[str, float] = {"n": n}
    rng = np.random.default_rng(7)

    def refresh(
        label: str, prev: neighbours.NeighbourLists | None, g: Gallery
    ) -> neighbours.NeighbourLists:
        c0, t0 = time.process_time(), time.perf_counter()
        out = neighbours.refresh(prev, g, gallery_embeddings(g))
        row[f"{label}_cpu_s"] = time.process_time() - c0
        row[f"{label}_wall_s"] = time.perf_counter() - t0
        return out

    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        path = Path(tmp) / "g"
        shutil.copytree(build_face(n, int8=False), path)
        with Gallery.open(path, writable=True) as g:
            lists = refresh("build", None, g)
            for m in (1, 1000):
                e = rng.standard_normal((m, 128), dtype=np.float32)
                e /= np.linalg.norm(e, axis=1, keepdims=True)
                refs = [f"new-{m}-{i}" for i in range(m)]
                batch = face_records(refs, refs, e, schema=g.schema, format=FMT, format_version=VER)
                g.append(batch)
                lists = refresh(f"append{m}", lists, g)
            g.delete(list(rng.choice(g.references(), size=10, replace=False)))
            lists = refresh("delete10", lists, g)
            offsets = lists.offsets()
            saved = Path(tmp) / "lists.npz"
            c0, t0 = time.process_time(), time.perf_counter()
            neighbours.save(lists, saved)
            row["save_wall_s"] = time.perf_counter() - t0
            c0, t0 = time.process_time(), time.perf_counter()
            refresh("restart", neighbours.load(saved), g)
            row["restart_cpu_s"] = time.process_time() - c0  # load + refresh, as at start-up
            row["restart_wall_s"] = time.perf_counter() - t0
            q = rng.standard_normal((1, 128), dtype=np.float32)
            q /= np.linalg.norm(q)

            def search(off: np.ndarray | None) -> object:
                return search_face(
                    g, q, format=FMT, format_version=VER, k=10, threshold=0.9, offsets=off
                )

            search(offsets)
            row["ours_2t_ms"] = median_ms(lambda: search(None), repeats)
            row["csls_2t_ms"] = median_ms(lambda: search(offsets), repeats)
            row["csls_ratio"] = row["csls_2t_ms"] / row["ours_2t_ms"]
    return row


# ------------------------------------------------------------------------------ fingerprint
#: ``score_many`` of kernel.py at ``--baseline-rev`` (see fingerprint_match.py), or None.
BASELINE_KERNEL: Callable[..., np.ndarray] | None = None


@contextlib.contextmanager
def kernel_swapped(kernel: Callable[..., np.ndarray]) -> Iterator[None]:
    """Search with ``kernel`` as the matcher's ``score_many`` (search looks it up per call)."""
    own = match.score_many
    match.score_many = kernel  # type: ignore[assignment]
    try:
        yield
    finally:
        match.score_many = own  # type: ignore[assignment]


def distinct_fingers(n: int) -> tuple[list[match.SearchTemplate], list[match.SearchTemplate]]:
    """(gallery impressions, probe impressions) of ``n`` synthetic fingers, prepared."""
    raw = synthetic_templates(n, 2, seed=2026)
    gallery = [match.prepare(f[0]) for f in track(raw, description=f"prepare {n} fingers")]
    probes = [match.prepare(f[1]) for f in raw[:200]]
    return gallery, probes


def build_fingerprint(n: int, distinct: list[match.SearchTemplate]) -> Path:
    schema = fingerprint_schema()
    fields = hashlib.sha256(",".join(sorted(schema.fields)).encode()).hexdigest()[:8]
    tag = f"{schema.format}-v{schema.format_version}-f{fields}"
    path = CACHE / f"fp-{n}-d{len(distinct)}-{tag}"  # a new matcher version builds anew
    if cached(path, n):
        return path
    shutil.rmtree(path, ignore_errors=True)
    d = len(distinct)
    base = fingerprint_records([f"x{i}" for i in range(d)], ["x"] * d, distinct)
    with Gallery.create(path, fingerprint_schema()) as g:
        for lo in track(range(0, n, d), description=f"fingerprint gallery {n}"):
            m = min(d, n - lo)
            refs = [f"t{lo + i}" for i in range(m)]
            subs = [f"F{i}" for i in range(m)]  # copies of finger i share its subject
            batch = type(base)(
                *(np.array([r.encode() for r in v]) for v in (refs, subs)),
                base.positions[:m],
                {k: v[:m] for k, v in base.arrays.items()},
                base.format,
                base.format_version,
            )
            g.append(batch)
    return path


def bench_fingerprint(
    n: int, distinct: list[match.SearchTemplate], probes: list[match.SearchTemplate], repeats: int
) -> dict[str, float]:
    path = build_fingerprint(n, distinct)
    row: dict[str, float] = {"n": n, "distinct": len(distinct), **open_times(path)}
    g = Gallery.open(path)
    row["mean_minutiae"] = float(np.mean([t.count for t in distinct]))
    # The timed probe has the median minutia count of the probes (the kernel's cost grows with
    # it; probes[0] has 25 minutiae against a median near 40).
    counts = [p.count for p in probes]
    probe = probes[int(np.argsort(counts, kind="stable")[len(counts) // 2])]
    row["probe_minutiae"] = probe.count
    search_fingerprint(g, probe, k=10, penetration=None)  # touch the pages once
    search_fingerprint(g, probe, k=10, penetration=PENETRATION)
    if n <= EXHAUSTIVE_REPEAT_MAX:
        for threads in (1, 2):
            row[f"ours_{threads}t_s"] = (
                median_ms(
                    lambda t=threads: search_fingerprint(
                        g, probe, k=10, threads=t, penetration=None
                    ),
                    repeats,
                )
                / 1e3
            )
        row["comparisons_per_s_1t_wall"] = n / row["ours_1t_s"]
        row["speedup_2t"] = row["ours_1t_s"] / row["ours_2t_s"]
        # Per-core rate over RATE_PROBES probes (their minutia counts spread like the gallery's):
        # one probe's rate moves by +-15% with its count.
        start = time.process_time()
        for p in probes[:RATE_PROBES]:
            search_fingerprint(g, p, k=10, threads=1, penetration=None)
        row["comparisons_per_cpu_s"] = n * RATE_PROBES / (time.process_time() - start)
        if BASELINE_KERNEL is not None:
            # The same 20 probes with the baseline revision's kernel, alternating with ours.
            ours, theirs = 0.0, 0.0
            for p in probes[:RATE_PROBES]:
                for kernel in (match.score_many, BASELINE_KERNEL):
                    with kernel_swapped(kernel):
                        start = time.process_time()
                        search_fingerprint(g, p, k=10, threads=1, penetration=None)
                        spent = time.process_time() - start
                    if kernel is match.score_many:
                        ours += spent
                    else:
                        theirs += spent
            row["alternating_comparisons_per_cpu_s"] = n * RATE_PROBES / ours
            row["baseline_comparisons_per_cpu_s"] = n * RATE_PROBES / theirs
            row["speedup_vs_baseline"] = theirs / ours
        row["rate_probes_mean_minutiae"] = float(np.mean([p.count for p in probes[:RATE_PROBES]]))
    else:
        row["ours_2t_s"] = (
            median_ms(lambda: search_fingerprint(g, probe, penetration=None), 1) / 1e3
        )
    row["comparisons_per_s_2t_wall"] = n / row["ours_2t_s"]
    row["two_stage_s"] = (
        median_ms(lambda: search_fingerprint(g, probe, k=10, penetration=PENETRATION), repeats)
        / 1e3
    )
    row["two_stage_cpu_s"] = cpu_s(
        lambda: search_fingerprint(g, probe, k=10, penetration=PENETRATION), repeats
    )
    row["penetration"] = PENETRATION
    # Baseline: the 1:1 API in a Python loop (prepared templates: score_many on 1-blocks).
    singles = [match.pack([t]) for t in distinct[:LOOP_SUBSET]]
    with single_threaded_blas():
        loop = cpu_s(lambda: [match.score_many(probe, s) for s in singles], repeats)
    row["loop_1to1_per_cpu_s"] = LOOP_SUBSET / loop
    if "comparisons_per_cpu_s" in row:
        row["ratio_vs_loop"] = row["comparisons_per_cpu_s"] / row["loop_1to1_per_cpu_s"]
    n_probes = RANK1_PROBES if n <= 10_000 else RANK1_PROBES_LARGE
    if n > EXHAUSTIVE_REPEAT_MAX:
        n_probes = RANK1_PROBES_HUGE
    n_probes = min(n_probes, len(distinct))
    for name, pen in (("rank1", None), ("rank1_two_stage", PENETRATION)):
        hits = [
            search_fingerprint(g, p, k=1, penetration=pen).candidates[0].subject == f"F{i}"
            for i, p in enumerate(probes[:n_probes])
        ]
        row[name] = float(np.mean(hits))
    row["rss_mb"] = psutil.Process().memory_info().rss / 2**20
    row["peak_rss_mb"] = peak_rss_mb()
    return row


# ------------------------------------------------------------------------------------ fusion
def partial(t: FingerprintTemplate, rng: np.random.Generator) -> FingerprintTemplate:
    """The minutiae of ``t`` within PARTIAL_RADIUS of one of them, chosen at random."""
    if t.count == 0:
        return t
    c = int(rng.integers(t.count))
    keep = np.hypot(t.x - t.x[c], t.y - t.y[c]) <= PARTIAL_RADIUS
    return replace(
        t,
        x=t.x[keep],
        y=t.y[keep],
        angle=t.angle[keep],
        kind=t.kind[keep],
        quality=t.quality[keep],
    )


def bench_fusion(subjects: int) -> dict[str, float]:
    raw = synthetic_templates(2 * subjects, 2, seed=77)
    path = CACHE / f"fusion-{subjects}"
    shutil.rmtree(path, ignore_errors=True)
    g = Gallery.create(path, fingerprint_schema())
    refs = [f"f{i}" for i in range(2 * subjects)]
    subs = [f"s{i // 2}" for i in range(2 * subjects)]
    gal = [match.prepare(f[0]) for f in track(raw, description="fusion gallery")]
    g.append(fingerprint_records(refs, subs, gal, [1 + i % 2 for i in range(2 * subjects)]))
    codes, names = g.subject_codes()
    rng = np.random.default_rng(5)
    mated: dict[int, list[float]] = {1: [], 2: []}
    non: dict[int, list[float]] = {1: [], 2: []}
    for s in track(range(subjects), description="fusion probes"):
        scores = np.stack(
            [
                fingerprint_scores(
                    g, match.prepare(partial(raw[2 * s + f][1], rng)), position=1 + f
                )
                for f in (0, 1)
            ]
        )
        me = int(np.searchsorted(names, f"s{s}".encode()))
        for f in (1, 2):
            fused = fuse(scores[:f], codes, names.shape[0], "fmr")
            mated[f].append(float(fused[me]))
            non[f].extend(np.delete(fused, me).tolist())
    g.close()
    shutil.rmtree(path, ignore_errors=True)
    return {
        "subjects": subjects,
        "partial_radius_px": PARTIAL_RADIUS,
        "fnmr_1finger_fmr1e-2": fnmr_at_fmr(mated[1], non[1], 0.01),
        "fnmr_2fingers_fmr1e-2": fnmr_at_fmr(mated[2], non[2], 0.01),
        "fnmr_1finger_fmr1e-3": fnmr_at_fmr(mated[1], non[1], 0.001),
        "fnmr_2fingers_fmr1e-3": fnmr_at_fmr(mated[2], non[2], 0.001),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--face", default="10000,100000,1000000")
    ap.add_argument("--neighbours", default="10000,100000")
    ap.add_argument("--fingerprint", default="10000,100000")
    ap.add_argument("--distinct", type=int, default=2000)
    ap.add_argument("--fusion-subjects", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--baseline-rev",
        help="git revision whose fingerprint kernel.py is timed against ours (per-core rate)",
    )
    args = ap.parse_args()
    if args.baseline_rev:
        global BASELINE_KERNEL
        BASELINE_KERNEL = baseline_kernel(args.baseline_rev)
    CACHE.mkdir(exist_ok=True)
    out: dict[str, list[dict[str, float]]] = {
        "face": [],
        "neighbours": [],
        "fingerprint": [],
        "fusion": [],
    }
    for n in [int(v) for v in args.face.split(",") if v]:
        out["face"].append(bench_face(n, args.repeats))
        print(json.dumps(out["face"][-1]), file=sys.stderr)
    for n in [int(v) for v in args.neighbours.split(",") if v]:
        out["neighbours"].append(bench_neighbours(n, args.repeats))
        print(json.dumps(out["neighbours"][-1]), file=sys.stderr)
    sizes = [int(v) for v in args.fingerprint.split(",") if v]
    if sizes:
        distinct, probes = distinct_fingers(args.distinct)
        for n in sizes:
            out["fingerprint"].append(bench_fingerprint(n, distinct, probes, args.repeats))
            print(json.dumps(out["fingerprint"][-1]), file=sys.stderr)
    if args.fusion_subjects:
        out["fusion"].append(bench_fusion(args.fusion_subjects))
        print(json.dumps(out["fusion"][-1]), file=sys.stderr)
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        for section, rows in out.items():
            for r in rows:
                print(section, " ".join(f"{k}={v:.4g}" for k, v in r.items()))


if __name__ == "__main__":
    main()
