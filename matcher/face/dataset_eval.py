"""Accuracy and speed of the face pipeline on a DIR/<identity>/<image> dataset.

Protocol (ISO/IEC 19795-1 terms, scores are cosine similarities):

* Failure to enrol (FTE): images for which no template could be made, counted by reason.
  Accuracy is computed on the enrolled templates.
* Genuine comparisons: every pair of enrolled images of one identity.
* Impostor comparisons: every pair of images of different identities, or, above
  MAX_IMPOSTOR_PAIRS, a deterministic random sample (the report says which).
* EER; TAR (= 1 - FNMR) at FAR (= FMR) of 1% and 0.1%, with the thresholds.
* Rank-1 (closed set, leave-one-out): every enrolled image whose identity has another
  enrolled image is a probe against all other enrolled images, ranked as the node's search
  ranks them: by CSLS with ``CSLS_K`` neighbours (:mod:`matcher.face.hubness`; offsets of the
  gallery without the probe), or by cosine (``csls_k=None``); ``rank1_cosine`` is always
  reported too. Genuine and impostor scores stay cosines (thresholds are set on them).
* Speed: median milliseconds per image of decode, detect, align (landmarks + chip), embed and
  detect + align + embed, measured inside each worker (one process per core, one thread each):
  ``median_ms`` wall clock (inflated when the cores are shared), ``median_cpu_ms`` CPU time of
  the worker (the one-core cost).

Score matrices are computed block by block as matrix products (SCORE_BLOCK_ROWS rows at a time).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from matcher import evaluation
from matcher.face import eval_cache, hubness
from matcher.face import params as P
from matcher.face.batch import BatchItem, extract_batch
from matcher.face.diagnose import rank1_misses
from matcher.face.errors import DatasetError, DatasetNotFound
from matcher.face.eval_cache import EvalRecords
from matcher.face.pipeline import ExtractOptions
from matcher.imageio import IMAGE_SUFFIXES


def scan_dataset(
    root: str | os.PathLike[str], limit_identities: int | None = None
) -> list[tuple[Path, str]]:
    """(path, identity) of every image under ``root``/<identity>/, sorted by identity then name.

    ``limit_identities`` keeps the first N identities in sorted order (deterministic subsets).
    """
    base = Path(root)
    if not base.is_dir():
        raise DatasetNotFound(f"dataset folder {base} does not exist")
    if limit_identities is not None and limit_identities < 1:
        raise DatasetError("--limit-identities must be at least 1", reason="bad_limit")
    folders = sorted(p for p in base.iterdir() if p.is_dir())
    if limit_identities is not None:
        folders = folders[:limit_identities]
    items = [
        (f, folder.name)
        for folder in folders
        for f in sorted(folder.iterdir(), key=lambda p: (len(p.name), p.name))
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not items:
        raise DatasetError(
            f"no images found under {base}/<identity>/ (expected a folder per identity)",
            reason="dataset_empty",
        )
    return items


def score_sets(
    embeddings: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    *,
    csls_k: int | None = None,
    csls_pairs: bool = False,
) -> dict[str, Any]:
    """Genuine and impostor scores and rank-1 of unit ``embeddings`` (n, d), ``labels`` (n,).

    With ``csls_k`` rank-1 ranks by the hubness-aware score a search gives with CSLS
    (:mod:`matcher.face.hubness`): the row image is the probe, searched against a gallery of
    all the other enrolled images, ``score = cos(q, g) - (r_q + r_g) / 2`` with ``r_q`` the
    mean of the probe's ``csls_k`` best scores against that gallery and ``r_g`` the mean cosine
    of ``g`` to its ``csls_k`` nearest records of that gallery (so without the probe); ``r_q``
    is constant per probe, so the ranking is by ``cos - r_g / 2``. ``rank1_cosine`` ranks by
    the cosine. Pairs are cosines, or with ``csls_pairs`` CSLS scores too (pairs (i < j) scored
    with image i as the probe).
    """
    e = np.ascontiguousarray(embeddings, dtype=np.float32)
    n = e.shape[0]
    csls = hubness.LeaveOneOutOffsets(e, csls_k) if csls_k is not None else None
    counts = np.bincount(labels)
    n_pairs = n * (n - 1) // 2
    n_genuine = int(np.sum(counts * (counts - 1) // 2))
    n_impostor = n_pairs - n_genuine
    keep_p = min(1.0, P.MAX_IMPOSTOR_PAIRS / max(n_impostor, 1))
    rng = np.random.default_rng(P.IMPOSTOR_SAMPLE_SEED)
    genuine: list[np.ndarray] = []
    impostor: list[np.ndarray] = []
    hits, hits_cos, probes = 0.0, 0.0, 0
    cols = np.arange(n)
    for start in range(0, n, P.SCORE_BLOCK_ROWS):
        rows = np.arange(start, min(n, start + P.SCORE_BLOCK_ROWS))
        cos = e[rows] @ e.T  # (block, n)
        ranked = csls.csls(rows, cos) if csls is not None else cos
        s = ranked if csls_pairs else cos
        same = labels[rows, None] == labels[None, :]
        upper = cols[None, :] > rows[:, None]
        genuine.append(s[upper & same])
        imp = s[upper & ~same]
        if keep_p < 1.0:
            imp = imp[rng.random(imp.size) < keep_p]
        impostor.append(imp)
        has_mate = counts[labels[rows]] > 1
        if np.any(has_mate):
            k, mine = int(has_mate.sum()), (np.arange(rows.size), rows)
            cos[mine] = -np.inf  # leave-one-out (the pairs are taken already)
            ranked[mine] = -np.inf
            hits_cos += k * evaluation.rank1(cos[has_mate], labels[rows][has_mate], labels)
            hits += k * evaluation.rank1(ranked[has_mate], labels[rows][has_mate], labels)
            probes += k
    return {
        "genuine": np.concatenate(genuine) if genuine else np.zeros(0, np.float32),
        "impostor": np.concatenate(impostor) if impostor else np.zeros(0, np.float32),
        "impostor_pairs_total": n_impostor,
        "impostor_sampled": keep_p < 1.0,
        "rank1": hits / probes if probes else float("nan"),
        "rank1_cosine": hits_cos / probes if probes else float("nan"),
        "rank1_probes": probes,
        "ranking": f"csls k={csls_k}" if csls_k is not None else "cosine",
        "score": f"csls k={csls_k}" if csls_k is not None and csls_pairs else "cosine",
    }


def _medians(items: list[BatchItem], clock: str) -> dict[str, float | None]:
    """Median per stage of ``FaceExtraction.<clock>`` and of detect + align + embed."""
    stages = ("decode", "detect", "align", "embed")
    rows = [getattr(i.extraction, clock) for i in items if i.extraction is not None]
    out: dict[str, float | None] = {}
    for stage in (*stages, "detect_align_embed"):
        parts = stages[1:] if stage == "detect_align_embed" else (stage,)
        values = [sum(r[p] for p in parts) for r in rows]
        out[stage] = round(float(np.median(values)), 2) if values else None
    return out


def _options_meta(options: ExtractOptions, workers: int | None) -> dict[str, Any]:
    return {
        "detector": options.detector,
        "multiple_faces": options.multiple_faces,
        "whole_image_is_face": options.whole_image_is_face,
        "check_quality": options.check_quality,
        "workers": workers,
    }


def extract_records(
    images: list[tuple[Path, str]],
    options: ExtractOptions,
    *,
    workers: int | None = None,
    progress: bool = False,
    previous: EvalRecords | None = None,
) -> EvalRecords:
    """Extract every image (path, identity); with ``previous`` (same files), re-extract only the
    images it did not enrol or in which it found several faces, and keep the others."""
    n = len(images)
    files = np.array([str(p) for p, _ in images], dtype=np.str_)
    todo = list(range(n))
    if previous is not None:
        if previous.files.shape != files.shape or not np.array_equal(previous.files, files):
            raise DatasetError("the cache was made on other files", reason="cache_mismatch")
        todo = np.flatnonzero(~previous.enrolled | (previous.faces_found > 1)).tolist()
    results = extract_batch(
        [images[k][0] for k in todo], options, workers=workers, progress=progress
    )
    if previous is not None:
        reasons, emb = previous.reasons.astype(object), previous.embeddings.copy()
        boxes, found = previous.boxes.copy(), previous.faces_found.copy()
        whole, notes = previous.whole_image.copy(), previous.notes.astype(object)
    else:
        reasons, notes = np.full(n, "", dtype=object), np.full(n, "", dtype=object)
        emb = np.zeros((n, P.EMBEDDING_DIM), np.float32)
        boxes, found = np.full((n, 4), -1, np.int32), np.zeros(n, np.int32)
        whole = np.zeros(n, bool)
    for r in results:
        k = todo[r.index]
        x = r.extraction
        if x is None:
            reasons[k], emb[k], boxes[k], found[k] = r.reason or "unknown", 0.0, -1, 0
            whole[k], notes[k] = False, ""
        else:
            reasons[k], emb[k], boxes[k] = "", x.template.embedding, x.box
            found[k], whole[k], notes[k] = x.faces_found, x.whole_image, "; ".join(x.notes)
    ok = [r for r in results if r.ok]
    meta = {
        "options": _options_meta(options, workers),
        "median_ms": _medians(ok, "timings_ms"),
        "median_cpu_ms": _medians(ok, "cpu_ms"),
        "re_extracted": len(todo),
    }
    return EvalRecords(
        files=files,
        identities=np.array([ident for _, ident in images], dtype=np.str_),
        reasons=reasons.astype(np.str_),
        embeddings=emb,
        boxes=boxes,
        faces_found=found,
        whole_image=whole,
        notes=notes.astype(np.str_),
        meta=meta,
    )


def report_from_records(
    records: EvalRecords,
    dataset: str,
    *,
    csls_k: int | None = P.CSLS_K,
    csls_pairs: bool = False,
) -> dict[str, Any]:
    """The accuracy report (FTE, pairs, EER, TAR at FAR, rank-1) of extracted ``records``;
    ``csls_k``: rank-1 ranks by CSLS (``None``: by cosine), ``csls_pairs``: pairs are CSLS
    scores too (see :func:`score_sets`)."""
    ok = records.enrolled
    n = int(ok.size)
    reasons = Counter(records.reasons[~ok].tolist())
    _names, labels = np.unique(records.identities[ok], return_inverse=True)
    labels = labels.astype(np.int64)
    report: dict[str, Any] = {
        "dataset": dataset,
        "identities": len(set(records.identities.tolist())),
        "images": n,
        "enrolled": int(ok.sum()),
        "failures_to_enrol": int(n - ok.sum()),
        "fte_rate": round(float(n - ok.sum()) / n, 5) if n else 0.0,
        "fte_reasons": dict(sorted(reasons.items())),
        "whole_image_fallbacks": int(records.whole_image[ok].sum()),
        "multiple_face_images": int((records.faces_found[ok] > 1).sum()),
        **{k: records.meta.get(k) for k in ("options", "median_ms", "median_cpu_ms")},
    }
    if ok.sum() >= 2:
        sets = score_sets(records.embeddings[ok], labels, csls_k=csls_k, csls_pairs=csls_pairs)
        report["score"] = sets["score"]
        report["ranking"] = sets["ranking"]
        g, i = sets["genuine"], sets["impostor"]
        report["genuine_pairs"] = int(g.size)
        report["impostor_pairs"] = int(i.size)
        report["impostor_pairs_total"] = sets["impostor_pairs_total"]
        report["impostor_selection"] = "random sample" if sets["impostor_sampled"] else "all"
        if g.size and i.size:
            report["eer"] = round(evaluation.eer(g, i), 5)
            for fmr in P.REPORT_FMRS:
                key = f"{fmr:.1%}".replace(".0%", "%")
                report[f"tar_at_far_{key}"] = round(1.0 - evaluation.fnmr_at_fmr(g, i, fmr), 5)
                report[f"threshold_at_far_{key}"] = round(evaluation.threshold_at_fmr(i, fmr), 5)
            report["thresholds"] = [
                {
                    "far": fmr,
                    "threshold": round(evaluation.threshold_at_fmr(i, fmr), 5),
                    "tar": round(1.0 - evaluation.fnmr_at_fmr(g, i, fmr), 5),
                }
                for fmr in P.TABLE_FMRS
                if fmr * i.size >= P.TABLE_MIN_ABOVE
            ]
        report["rank1"] = round(sets["rank1"], 5)
        report["rank1_cosine"] = round(sets["rank1_cosine"], 5)
        report["rank1_probes"] = sets["rank1_probes"]
    return report


def evaluate_dataset(
    root: str | os.PathLike[str],
    options: ExtractOptions,
    *,
    limit_identities: int | None = None,
    workers: int | None = None,
    progress: bool = False,
    cache: str | os.PathLike[str] | None = None,
    refresh: bool = False,
    diagnose: bool = False,
    csls_k: int | None = P.CSLS_K,
    csls_pairs: bool = False,
) -> dict[str, Any]:
    """Extract every image, compare all pairs, and return the report as a JSON-able dict.

    With ``cache``: when the file exists its records are used (no extraction) unless
    ``refresh``, which re-extracts only the images not enrolled or with several faces (after a
    change to face choice or detection) and rewrites the cache; when it does not exist, the
    run's records are written to it. ``diagnose`` adds the rank-1 misses
    (:func:`matcher.face.diagnose.rank1_misses`) under ``"diagnosis"``. ``csls_k``: rank-1
    and the diagnosis rank by the hubness-aware CSLS score with that many neighbours, as the
    node's search does (``None``: by cosine); ``csls_pairs`` scores the pairs by it too
    (:func:`score_sets`); extraction and cache are the same.
    """
    if csls_k is not None and csls_k < 1:
        raise DatasetError("--csls-k must be at least 1", reason="bad_csls_k")
    if csls_pairs and csls_k is None:
        raise DatasetError("--csls-pairs needs --csls-k of at least 1", reason="bad_csls_k")
    t0 = time.perf_counter()
    images = scan_dataset(root, limit_identities)
    cached = eval_cache.load(cache) if cache is not None and Path(cache).exists() else None
    if cached is None or refresh:
        records = extract_records(
            images, options, workers=workers, progress=progress, previous=cached
        )
        if cache is not None:
            eval_cache.save(cache, records)
    else:
        records = cached
        if not np.array_equal(records.files, np.array([str(p) for p, _ in images], np.str_)):
            raise DatasetError(f"{cache} was made on other files", reason="cache_mismatch")
    report = report_from_records(records, str(root), csls_k=csls_k, csls_pairs=csls_pairs)
    if diagnose and records.enrolled.sum() >= 2:
        report["diagnosis"] = rank1_misses(records, csls_k=csls_k)
    report["elapsed_s"] = round(time.perf_counter() - t0, 1)
    return report
