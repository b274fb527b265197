"""Why rank-1 identification fails: every missed probe of a cached run, and summaries.

Same protocol as :func:`matcher.face.dataset_eval.score_sets` (leave-one-out over the enrolled
images that have an enrolled mate; a probe is missed when an image of another identity scores
at least as high as its best mate). Failures to enrol are not probes: they are reported as FTE,
as ISO/IEC 19795-1 asks, and ``probes_lost_to_fte`` counts enrolled images whose every mate
failed to enrol (so they could not be probes either).

Summaries split the misses by how many enrolled images the identity has (a person with two
images has one mate), by whether several faces were found in the probe (a wrong face may have
been chosen) and by face box width (small, low-resolution faces).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from matcher.face import hubness
from matcher.face import params as P
from matcher.face.eval_cache import EvalRecords


def rank1_misses(
    records: EvalRecords, worst: int = P.DIAGNOSE_WORST, *, csls_k: int | None = None
) -> dict[str, Any]:
    """Missed probes of ``records`` with summaries; ``worst`` lists the largest-margin misses.
    ``csls_k``: scores are CSLS scores as in :func:`matcher.face.dataset_eval.score_sets`."""
    ok = np.flatnonzero(records.enrolled)
    ident = records.identities[ok]
    _names, labels = np.unique(ident, return_inverse=True)
    counts = np.bincount(labels)
    e = records.embeddings[ok]
    n = ok.size
    csls = hubness.LeaveOneOutOffsets(e, csls_k) if csls_k is not None else None
    best_mate = np.full(n, -np.inf, np.float32)
    best_other = np.full(n, -np.inf, np.float32)
    other_at = np.zeros(n, np.int64)
    for start in range(0, n, P.SCORE_BLOCK_ROWS):
        rows = np.arange(start, min(n, start + P.SCORE_BLOCK_ROWS))
        s = e[rows] @ e.T  # (block, n)
        if csls is not None:
            s = csls.csls(rows, s)
        s[np.arange(rows.size), rows] = -np.inf  # leave-one-out
        same = labels[rows, None] == labels[None, :]
        best_mate[rows] = np.where(same, s, -np.inf).max(axis=1)
        others = np.where(same, -np.inf, s)
        other_at[rows] = others.argmax(axis=1)
        best_other[rows] = others[np.arange(rows.size), other_at[rows]]
    probe = counts[labels] > 1
    miss = probe & (best_other >= best_mate)
    width = records.boxes[ok, 2] - records.boxes[ok, 0] + 1
    multi = records.faces_found[ok] > 1
    all_counts = np.unique(records.identities, return_counts=True)
    per_ident = dict(zip(all_counts[0].tolist(), all_counts[1].tolist(), strict=True))
    lost = int(np.sum(~probe & (np.array([per_ident[i] for i in ident]) > 1)))

    def split(mask: np.ndarray) -> dict[str, int | float]:
        p, m = int(np.sum(probe & mask)), int(np.sum(miss & mask))
        return {"probes": p, "misses": m, "miss_rate": round(m / p, 4) if p else 0.0}

    mates = counts[labels] - 1
    order = np.flatnonzero(miss)[np.argsort(-(best_other - best_mate)[miss])][:worst]
    return {
        "probes": int(probe.sum()),
        "misses": int(miss.sum()),
        "rank1": round(1.0 - miss.sum() / probe.sum(), 5) if probe.any() else float("nan"),
        "probes_lost_to_fte": lost,
        "by_mates": {
            "1": split(mates == 1),
            "2-4": split((mates >= 2) & (mates <= 4)),
            "5+": split(mates >= 5),
        },
        "several_faces_in_probe": split(multi),
        "one_face_in_probe": split(~multi),
        "by_box_width": {
            f"<{P.DIAGNOSE_SMALL_FACE_PX}px": split(width < P.DIAGNOSE_SMALL_FACE_PX),
            f">={P.DIAGNOSE_SMALL_FACE_PX}px": split(width >= P.DIAGNOSE_SMALL_FACE_PX),
        },
        "worst": [
            {
                "probe": str(records.files[ok[k]]),
                "mates": int(mates[k]),
                "best_mate": round(float(best_mate[k]), 4),
                "best_other": round(float(best_other[k]), 4),
                "other": str(records.files[ok[other_at[k]]]),
                "faces_found": int(records.faces_found[ok[k]]),
                "box_width": int(width[k]),
                "notes": str(records.notes[ok[k]]),
            }
            for k in order
        ],
    }
