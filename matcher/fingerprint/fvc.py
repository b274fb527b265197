"""FVC-protocol evaluation of extraction + comparison on a folder of FVC-layout images.

Protocol (FVC2002, Maio et al. 2002; figures in ISO/IEC 19795-1 terms, ``matcher.evaluation``):

* Genuine: every pair of impressions of the same finger, earlier impression as probe
  (10 fingers x 8 impressions -> 280).
* Impostor (cross-finger): every pair of impressions of different fingers (2,880), the base of
  EER, FNMR at FMR = 1% and 0.1%.
* Impostor (FVC 45-pair): first impression of each finger against the first impression of
  every other finger (45), reported as ``eer_45``.
* Rank-1: each impression as probe against a gallery holding one other impression of every
  finger. For offset ``o = 1 .. I-1`` the gallery entry of finger ``g`` is its impression at
  position ``(p + o) mod I_g`` (``p`` the probe's position in its own finger's sorted list),
  and the rate is averaged over all offsets: deterministic, and every impression serves as
  gallery entry equally often.
* Rank-1 by gallery impression (``rank1_by_gallery_impression``, when every finger has the same
  number I of impressions): for k = 1 .. I, the rate with every finger's k-th impression as its
  gallery entry and every other image as probe. Each trial of the averaged rank-1 is one of
  these (offset o from position p is impression k = p + o mod I), so their mean is ``rank1``;
  the spread shows how much the figure depends on which impression is enrolled.
* Rank-1 with the first impression enrolled (``rank1_first_impression``): every finger's first
  impression (in sorted order) is its gallery entry and every other impression a probe
  (FVC2002: 70 probes), as FVC-based identification experiments commonly enrol; with equal
  impression counts it is ``rank1_by_gallery_impression[0]``. The NBIS rank-1 figures the
  project compares against (91.4% = 64/70, 97.1% = 68/70) are fractions of 70 probes or of
  the averaged protocol's 560 trials; benchmarks/fingerprint_rank1_protocols.py measures
  which of the two a matcher of NBIS's EER can reach.
* A failure to extract is kept in the protocol as an empty template (it scores 0 against
  everything), as FVC counts enrolment failures against the algorithm.

All N x N scores come from the batch kernel (one ``score_many`` call per probe over the
packed dataset), never a Python double loop.

Speed figures are one-core figures: extraction, preparation and every timed comparison run with
BLAS/OpenMP pinned to one thread (threadpoolctl) and OpenCV to one thread, so CPU time
(``time.process_time``) is the CPU time of one core. ``extract_cpu_ms_median`` is the extraction
figure the per-core target is about; ``extract_wall_ms_median`` is the wall time beside it (it
grows with load on a shared machine). One untimed comparison runs before the timed ones, so
first-call overhead stays out of the rates.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from matcher import evaluation
from matcher.errors import BdxError, MatcherError
from matcher.fingerprint.match import pack, prepare, score_many
from matcher.fingerprint.match.types import SearchTemplate
from matcher.fingerprint.template import FingerprintTemplate
from matcher.imageio import IMAGE_SUFFIXES

_NAME = re.compile(r"^(?P<finger>[A-Za-z0-9]+)_(?P<impression>\d+)$")
#: Templates per packed block when scoring (bounds memory: ~ 4096 * M * d * 4 bytes).
BLOCK = 4096
#: Repeats of the 1:1 timing loop (median reported).
TIMING_REPEATS = 5

#: progress(stage, done, total) — stage is "extract" or "compare".
Progress = Callable[[str, int, int], None]


class DatasetError(MatcherError):
    """The folder holds no images, or files that do not follow ``<finger>_<impression>``, or
    none of its images could be extracted (``nothing_extracted``)."""

    default_reason = "bad_dataset"


@dataclass(frozen=True)
class Sample:
    path: Path
    finger: str
    impression: int


@dataclass(frozen=True)
class Report:
    """What ``bdx eval fingerprint`` prints (rates in [0, 1], times in ms)."""

    images: int
    fingers: int
    failures: list[tuple[str, str]]
    genuine: int
    impostor: int
    impostor_45: int
    eer: float
    eer_45: float | None
    fnmr_at_fmr_1pct: float
    fnmr_at_fmr_01pct: float
    rank1: float | None
    rank1_first_impression: float | None
    rank1_by_gallery_impression: list[float] | None
    extract_cpu_ms_median: float
    extract_wall_ms_median: float
    prepare_ms_median: float
    comparisons_per_cpu_s_1to1: float
    comparisons_per_cpu_s_batch: float
    minutiae_median: float

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["failures"] = [{"file": f, "reason": r} for f, r in self.failures]
        return d


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """BLAS/OpenMP (threadpoolctl) and OpenCV pinned to one thread, restored on exit."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        cv2.setNumThreads(before)


def scan(directory: str | os.PathLike[str]) -> list[Sample]:
    """Images of ``directory`` in FVC layout, sorted by (finger, impression). An entry named
    as an image that is no regular file (a FIFO, device, socket, folder or broken link) is
    refused (``not_a_file``) before anything is read: passed over, it would change the
    protocol's counts unsaid; read, it would count as a failure to extract."""
    root = Path(directory)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder", reason="not_a_directory")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(
            f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {root}", reason="no_images"
        )
    samples = []
    for p in files:
        if not p.is_file():  # stat only: opening a FIFO waits for a writer
            raise DatasetError(
                f"{p.name}: not a regular file (a FIFO, device, socket, folder or broken link)",
                reason="not_a_file",
            )
        m = _NAME.match(p.stem)
        if m is None:
            raise DatasetError(
                f"{p.name}: expected <finger>_<impression>.<ext> (FVC layout)", reason="bad_layout"
            )
        samples.append(Sample(p, m["finger"], int(m["impression"])))
    samples.sort(key=lambda s: (s.finger, s.impression))
    keys = [(s.finger, s.impression) for s in samples]
    if len(set(keys)) != len(keys):
        raise DatasetError("two files share a finger and impression number", reason="bad_layout")
    if len({s.finger for s in samples}) < 2:
        raise DatasetError("need impressions of at least two fingers", reason="bad_layout")
    return samples


def extract_all(
    samples: list[Sample],
    extractor: Callable[[Path], FingerprintTemplate],
    progress: Progress | None = None,
) -> tuple[list[FingerprintTemplate | None], list[tuple[str, str]], list[float], list[float]]:
    """Templates (None on failure), failures (file, reason), per-image CPU milliseconds and
    per-image wall milliseconds."""
    templates: list[FingerprintTemplate | None] = []
    failures: list[tuple[str, str]] = []
    cpu_ms: list[float] = []
    wall_ms: list[float] = []
    for i, s in enumerate(samples):
        c0, t0 = time.process_time(), time.perf_counter()
        try:
            templates.append(extractor(s.path))
        except BdxError as exc:
            templates.append(None)
            failures.append((s.path.name, exc.reason))
        cpu_ms.append((time.process_time() - c0) * 1e3)
        wall_ms.append((time.perf_counter() - t0) * 1e3)
        if progress:
            progress("extract", i + 1, len(samples))
    return templates, failures, cpu_ms, wall_ms


def _empty_like() -> FingerprintTemplate:
    z = np.zeros(0, np.float32)
    return FingerprintTemplate(z, z, z, z.astype(np.uint8), z.astype(np.uint8), 1, 1)


def score_matrix(
    prepared: list[SearchTemplate], progress: Progress | None = None
) -> npt.NDArray[np.float32]:
    """(N, N) scores, probe i (row) against reference j (column), via the batch kernel."""
    n = len(prepared)
    blocks = [pack(prepared[s : s + BLOCK]) for s in range(0, n, BLOCK)]
    out = np.zeros((n, n), np.float32)
    for i, probe in enumerate(prepared):
        out[i] = np.concatenate([score_many(probe, b) for b in blocks])
        if progress:
            progress("compare", i + 1, n)
    return out


def _protocol(
    samples: list[Sample], s: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32], float]:
    fingers = np.array([x.finger for x in samples])
    n = len(samples)
    iu, ju = np.triu_indices(n, k=1)
    same = fingers[iu] == fingers[ju]
    genuine, impostor = s[iu[same], ju[same]], s[iu[~same], ju[~same]]
    names = sorted(set(fingers.tolist()))
    members = [np.flatnonzero(fingers == f) for f in names]
    firsts = np.array([m[0] for m in members])
    fi, fj = np.triu_indices(len(firsts), k=1)
    impostor_45 = s[firsts[fi], firsts[fj]]
    # Rank-1 averaged over gallery offsets (module docstring), vectorised over probes.
    sizes = np.array([m.size for m in members])
    table = np.zeros((len(members), int(sizes.max())), np.int64)  # (F, I) sample indices
    position = np.zeros(n, np.int64)
    for f, m in enumerate(members):
        table[f, : m.size] = m
        position[m] = np.arange(m.size)
    probe_finger = np.searchsorted(names, fingers)
    ok = sizes[probe_finger] > 1  # a probe needs another impression of its finger
    rates = []
    for o in range(1, int(sizes.max())):
        slot = (position[:, None] + o) % sizes[None, :]  # (n, F)
        gallery = table[np.arange(len(members))[None, :], slot]
        scores = np.take_along_axis(s, gallery, axis=1)[ok]
        rates.append(evaluation.rank1(scores, probe_finger[ok], np.arange(len(names))))
    return genuine, impostor, impostor_45, float(np.mean(rates)) if rates else float("nan")


def rank1_by_gallery_impression(
    samples: list[Sample], s: npt.NDArray[np.float32]
) -> list[float] | None:
    """Rank-1 with the k-th impression of every finger as the gallery, k = 1 .. I (module
    docstring); None unless every finger has the same number I >= 2 of impressions."""
    fingers = np.array([x.finger for x in samples])
    names = sorted(set(fingers.tolist()))
    members = [np.flatnonzero(fingers == f) for f in names]
    sizes = {m.size for m in members}
    if len(sizes) != 1 or (size := sizes.pop()) < 2:
        return None
    table = np.stack(members)  # (F, I) sample indices, impressions in sorted order
    probe_finger = np.searchsorted(names, fingers)
    rates = []
    for k in range(size):
        probes = np.delete(table, k, axis=1).ravel()
        scores = s[np.ix_(probes, table[:, k])]
        rates.append(evaluation.rank1(scores, probe_finger[probes], np.arange(len(names))))
    return rates


def rank1_first_impression(samples: list[Sample], s: npt.NDArray[np.float32]) -> float | None:
    """Rank-1 with every finger's first impression (sorted order) as its gallery entry and
    every other impression as a probe (module docstring); ``s`` is the (n, n) score matrix
    over ``samples``, probe rows. None when no finger has a second impression."""
    fingers = np.array([x.finger for x in samples])
    names = sorted(set(fingers.tolist()))
    members = [np.flatnonzero(fingers == f) for f in names]
    gallery = np.array([m[0] for m in members])  # (F,) sample indices
    probes = np.concatenate([m[1:] for m in members])
    if probes.size == 0:
        return None
    probe_finger = np.searchsorted(names, fingers[probes])
    return evaluation.rank1(s[np.ix_(probes, gallery)], probe_finger, np.arange(len(names)))


def _time_1to1(prepared: list[SearchTemplate]) -> float:
    """Comparisons per CPU second of the 1:1 path (prepared templates, one-template blocks),
    median of TIMING_REPEATS. CPU time, not wall time: a per-core figure that other processes
    on a shared machine do not distort, as long as the caller pins threads (:func:`one_thread`)."""
    pairs = min(len(prepared), 64)
    singles = [pack([t]) for t in prepared[:pairs]]
    rates = []
    for _ in range(TIMING_REPEATS):
        t0 = time.process_time()
        for k in range(pairs):
            score_many(prepared[(k + 1) % pairs], singles[k])
        rates.append(pairs / max(time.process_time() - t0, 1e-9))
    return float(np.median(rates))


def evaluate(
    directory: str | os.PathLike[str],
    extractor: Callable[[Path], FingerprintTemplate],
    progress: Progress | None = None,
) -> Report:
    """Run the whole protocol on ``directory`` (see the module docstring)."""
    return evaluate_scores(directory, extractor, progress)[0]


def evaluate_scores(
    directory: str | os.PathLike[str],
    extractor: Callable[[Path], FingerprintTemplate],
    progress: Progress | None = None,
) -> tuple[Report, npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """:func:`evaluate`, also returning the genuine (ng,) and cross-finger impostor (ni,) scores."""
    samples = scan(directory)
    with one_thread():
        templates, failures, cpu_ms, wall_ms = extract_all(samples, extractor, progress)
        extracted = [t is not None for t in templates]
        if not any(extracted):
            # every score would be a failure's 0: no EER, rank-1 or speed to report
            why = ", ".join(f"{n} {r}" for r, n in Counter(r for _, r in failures).most_common())
            raise DatasetError(
                f"no image of {len(samples)} could be extracted ({why})", reason="nothing_extracted"
            )
        usable = [t if t is not None else _empty_like() for t in templates]
        prep_ms = []
        prepared = []
        for t in usable:
            t0 = time.perf_counter()
            prepared.append(prepare(t))
            prep_ms.append((time.perf_counter() - t0) * 1e3)
        # Untimed warm-up: first-call overhead (imports, caches) stays out of both rates.
        score_many(prepared[0], pack(prepared[:1]))
        t0 = time.process_time()
        s = score_matrix(prepared, progress)
        batch_rate = s.size / max(time.process_time() - t0, 1e-9)
        # timed on the templates extracted: a failure's empty template compares in no time
        rate_1to1 = _time_1to1([p for p, ok in zip(prepared, extracted, strict=True) if ok])
    genuine, impostor, impostor_45, r1 = _protocol(samples, s)
    if genuine.size == 0:
        raise DatasetError("no finger has two impressions: no genuine pairs", reason="bad_layout")
    report = Report(
        images=len(samples),
        fingers=len({x.finger for x in samples}),
        failures=failures,
        genuine=int(genuine.size),
        impostor=int(impostor.size),
        impostor_45=int(impostor_45.size),
        eer=evaluation.eer(genuine, impostor),
        eer_45=evaluation.eer(genuine, impostor_45) if impostor_45.size else None,
        fnmr_at_fmr_1pct=evaluation.fnmr_at_fmr(genuine, impostor, 0.01),
        fnmr_at_fmr_01pct=evaluation.fnmr_at_fmr(genuine, impostor, 0.001),
        rank1=None if np.isnan(r1) else r1,
        rank1_first_impression=rank1_first_impression(samples, s),
        rank1_by_gallery_impression=rank1_by_gallery_impression(samples, s),
        extract_cpu_ms_median=float(np.median(cpu_ms)),
        extract_wall_ms_median=float(np.median(wall_ms)),
        prepare_ms_median=float(np.median(prep_ms)),
        comparisons_per_cpu_s_1to1=rate_1to1,
        comparisons_per_cpu_s_batch=float(batch_rate),
        minutiae_median=float(np.median([t.count for t in templates if t is not None])),
    )
    return report, genuine, impostor
