"""Searches while an enrolment's append merges the whole fingerprint gallery.

    .venv/bin/python benchmarks/gallery_merge.py [--segment 4096] [--rounds 3] [--json]

Each round builds a gallery set of ``MERGE_FANIN - 1`` segments of ``--segment`` records
(synthetic templates, prepared once and tiled, as in ``benchmarks/search.py``), starts a thread
that searches it without pause (one probe, k = 10, one thread: the node's local search; one
untimed warm-up search runs first), and once at least ``IDLE_S`` has passed and
``MIN_IDLE_SEARCHES`` searches have finished appends one more segment, which merges all
``MERGE_FANIN`` segments into one (a rewrite of the whole gallery, the largest merge there
is). Two ways, alternating in one process:

* ``split`` (the node, ``GallerySet.append``): the merged segment is written while searches go
  on; they wait only for the append's commit and the merge's.
* ``held`` (the node before ``b7ac8cb``, replayed here): append and merge inside the exclusive
  lock, so every search waits for the whole rewrite.

Per way: the append's wall time (append + merge), the searches' median latency while idle and
the longest a search took that overlapped the append; then one record is deleted and its
template erased (``GallerySet.erase``: the whole segment rewritten; ``held``: inside the lock),
with the same figures; medians over the rounds. After the append and after the erase it waits
for ``MIN_IDLE_SEARCHES`` searches that start afterwards, so every search that overlapped is
counted; a longest-search figure with no overlapping search is 0 (``searches_during`` says so).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from matcher.fingerprint import match
from matcher.fingerprint.template import FingerprintTemplate
from matcher.gallery import RecordBatch, params
from matcher.search.fingerprint import fingerprint_records, fingerprint_schema
from matcher.synthetic.templates import synthetic_templates
from node.services.galleries import GallerySet, gallery_name
from node.services.search import fingerprint_candidates

DISTINCT = 256
#: Least idle time before the append (and, halved, after the append and the erase).
IDLE_S = 1.0
#: Searches that must finish before the append, and start after the append / erase.
MIN_IDLE_SEARCHES = 5


def wait_for_searches(
    times: list[tuple[float, float]], since: float, n: int, searcher: threading.Thread
) -> None:
    """Block until ``n`` searches that started at or after ``since`` have finished."""
    while sum(t0 >= since for t0, _ in list(times)) < n:
        if not searcher.is_alive():
            raise RuntimeError("the search thread stopped")
        time.sleep(0.001)


def tiled(base: RecordBatch, n: int, tag: str) -> RecordBatch:
    """``n`` records copied from ``base`` (cycled), with references of their own."""
    take = np.arange(n) % len(base)
    return RecordBatch(
        np.array([f"{tag}-{i}".encode() for i in range(n)]),
        base.subjects[take],
        base.positions[take],
        {k: v[take] for k, v in base.arrays.items()},
        base.format,
        base.format_version,
    )


def one_round(
    base: RecordBatch, probe: FingerprintTemplate, segment: int, held: bool
) -> dict[str, float]:
    schema = fingerprint_schema()
    with tempfile.TemporaryDirectory() as tmp, GallerySet.open(Path(tmp)) as galleries:
        for s in range(params.MERGE_FANIN - 1):
            galleries.append(schema, tiled(base, segment, f"s{s}"))
        last = tiled(base, segment, "last")
        times: list[tuple[float, float]] = []
        stop = threading.Event()

        def one_search() -> None:
            with galleries.reading(schema) as gallery:
                assert gallery is not None
                fingerprint_candidates(gallery, [probe], 10, threads=1)

        def search() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                one_search()
                times.append((t0, time.perf_counter()))

        one_search()  # untimed warm-up: first-call overhead stays out of the idle figure
        searcher = threading.Thread(target=search)
        start = time.perf_counter()
        searcher.start()
        time.sleep(IDLE_S)
        wait_for_searches(times, start, MIN_IDLE_SEARCHES, searcher)
        gallery = galleries.galleries()[gallery_name(schema)]
        a = time.perf_counter()
        if held:  # the node's append before b7ac8cb
            with galleries._write_mutex, galleries._lock.writing():
                gallery.append(last)
                gallery.tidy()
        else:
            galleries.append(schema, last)
        b = time.perf_counter()
        assert gallery.stats().segments == 1 and len(gallery) == params.MERGE_FANIN * segment
        time.sleep(IDLE_S / 2)
        wait_for_searches(times, b, MIN_IDLE_SEARCHES, searcher)
        galleries.remove(["last-0"])  # then its template is erased: the segment rewritten
        c = time.perf_counter()
        if held:
            with galleries._write_mutex, galleries._lock.writing():
                gallery.erase()
        else:
            galleries.erase()
        d = time.perf_counter()
        assert gallery.stats().deleted == 0
        time.sleep(IDLE_S / 2)
        wait_for_searches(times, d, MIN_IDLE_SEARCHES, searcher)
        stop.set()
        searcher.join()
    idle = [t1 - t0 for t0, t1 in times if t1 < a]
    during = [t1 - t0 for t0, t1 in times if t0 < b and t1 > a]
    erasing = [t1 - t0 for t0, t1 in times if t0 < d and t1 > c]
    return {
        "append_s": b - a,
        "idle_search_ms": 1e3 * statistics.median(idle),
        "longest_search_during_ms": 1e3 * max(during, default=0.0),
        "searches_during": float(len(during)),
        "erase_s": d - c,
        "longest_search_during_erase_ms": 1e3 * max(erasing, default=0.0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segment", type=int, default=4096, help="records per segment")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    raw = synthetic_templates(DISTINCT, 2, seed=2026)
    prepared = [match.prepare(f[0]) for f in raw]
    base = fingerprint_records(
        [f"x{i}" for i in range(DISTINCT)], [f"F{i}" for i in range(DISTINCT)], prepared
    )
    probe = raw[0][1]
    rows: dict[str, list[dict[str, float]]] = {"held": [], "split": []}
    for r in range(args.rounds):
        for way in ("held", "split") if r % 2 == 0 else ("split", "held"):
            rows[way].append(one_round(base, probe, args.segment, way == "held"))
            print(f"round {r + 1} {way}: {rows[way][-1]}", file=sys.stderr)
    out = {
        "records": params.MERGE_FANIN * args.segment,
        "rounds": args.rounds,
        **{
            way: {k: statistics.median(x[k] for x in got) for k in got[0]}
            for way, got in rows.items()
        },
    }
    print(json.dumps(out, indent=2) if args.json else out)


if __name__ == "__main__":
    main()
