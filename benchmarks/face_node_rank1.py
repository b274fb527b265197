"""Rank-1 of the node's own face search on an evaluation cache, leave-one-out, end to end.

    .venv/bin/python benchmarks/face_node_rank1.py benchmarks/cache/lfw_a_to_m-lm68.npz

``bdx eval face`` computes rank-1 from the embeddings with matrix products. This replays the
same protocol through what the node runs: every enrolled image is a record of a durable
gallery (``matcher.gallery``); for each probe (an image whose identity has another enrolled
image) its record is deleted, the kept neighbour lists are refreshed
(``matcher.search.neighbours.refresh``: incremental, as the node does after a deletion), the
probe is searched with ``search_face`` ranked by the CSLS offsets, and the record is appended
back (under a new reference) and the lists refreshed again. Reported: rank-1 by subject of the
top candidate; with the node's FMR 0.1% and 1% cosine thresholds (``node.thresholds``), the
detect-and-identify rate (top candidate a mate *and* at or above the threshold); and the same
without offsets (cosine ranking). It should equal ``bdx eval face``'s ``rank1`` and
``rank1_cosine`` on the same cache.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.progress import track

from matcher.face import eval_cache
from matcher.face.template import DEFAULT_FORMAT, FORMAT_VERSION
from matcher.gallery import Gallery
from matcher.search import neighbours
from matcher.search.face import face_records, face_schema, gallery_embeddings, search_face
from node.thresholds import face_threshold

#: Commit a compaction every this many probes (each probe adds a segment and a tombstone).
COMPACT_EVERY = 200


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("cache", type=Path)
    ap.add_argument("--limit", type=int, default=0, help="first N probes only (0: all)")
    args = ap.parse_args()
    records = eval_cache.load(args.cache)
    ok = records.enrolled
    e = records.embeddings[ok].astype(np.float32)
    ident = records.identities[ok]
    counts = dict(zip(*np.unique(ident, return_counts=True), strict=True))
    probes = [i for i in range(len(ident)) if counts[ident[i]] > 1]
    if args.limit:
        probes = probes[: args.limit]
    thresholds = {fmr: face_threshold(fmr)[0] for fmr in (0.001, 0.01)}
    schema = face_schema(DEFAULT_FORMAT, FORMAT_VERSION)
    fmt = {"format": DEFAULT_FORMAT, "format_version": FORMAT_VERSION}
    right = {"csls": 0, "cosine": 0, **{f"csls_hit_{f}": 0 for f in thresholds}}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, Gallery.create(Path(tmp) / "g", schema) as g:
        refs = [f"r{i}" for i in range(len(ident))]
        g.append(face_records(refs, list(ident), e, schema=schema, **fmt))
        lists = neighbours.refresh(None, g, gallery_embeddings(g))
        current = list(refs)
        for n, i in enumerate(track(probes, description="probes")):
            g.delete([current[i]])
            lists = neighbours.refresh(lists, g, gallery_embeddings(g))
            offsets = lists.offsets()
            q = e[i][None, :]
            (plain,) = search_face(g, q, k=1, **fmt)
            right["cosine"] += plain.candidates[0].subject == ident[i]
            (ranked,) = search_face(g, q, k=1, offsets=offsets, **fmt)
            right["csls"] += ranked.candidates[0].subject == ident[i]
            for fmr, thr in thresholds.items():
                (hit,) = search_face(g, q, k=1, offsets=offsets, threshold=thr, **fmt)
                top = hit.candidates[0]
                right[f"csls_hit_{fmr}"] += bool(hit.hit) and top.subject == ident[i]
            current[i] = f"r{i}.{n}"
            g.append(face_records([current[i]], [str(ident[i])], q, schema=schema, **fmt))
            lists = neighbours.refresh(lists, g, gallery_embeddings(g))
            if (n + 1) % COMPACT_EVERY == 0:
                g.compact()  # global ids change: the lists follow by reference
                lists = neighbours.refresh(lists, g, gallery_embeddings(g))
        fresh = neighbours.refresh(None, g, gallery_embeddings(g))
        drift = float(np.max(np.abs(fresh.offsets() - lists.offsets()), initial=0.0))
    out = {
        "cache": str(args.cache),
        "records": len(ident),
        "probes": len(probes),
        **{
            f"rank1_{k}" if "hit" not in k else k: round(v / len(probes), 5)
            for k, v in right.items()
        },
        "thresholds": thresholds,
        "offsets_drift_vs_fresh_build": drift,
        "elapsed_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
