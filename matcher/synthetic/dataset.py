"""Write an FVC-style synthetic database: ``<finger>_<impression>.<fmt>``, fingers from 1.

Finger ``f`` (1-based) of a dataset seeded ``seed`` uses master seed
``SeedSequence([seed, f]).generate_state(1)[0]`` and impressions ``1..n`` use impression seeds
``1..n``, so a dataset is reproducible file for file and growing ``fingers`` keeps the existing
files identical. Larger sets run on a process pool (one finger per task).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from matcher.synthetic.errors import SyntheticParameterError, check_count
from matcher.synthetic.impression import ImpressionProfile, make_impression, resolve_profile
from matcher.synthetic.master import check_seed, make_master
from matcher.synthetic.params import MASTER_SHAPE
from matcher.workers import exit_with_parent

FORMATS = ("png", "tif", "bmp")
#: Below this many images a process pool costs more (start-up, imports) than it saves.
PARALLEL_MIN_IMAGES = 24
#: Worker processes: the project's machines have 2 cores.
MAX_WORKERS = 2

Progress = Callable[[int, int], None]


def finger_seed(seed: int, finger: int) -> int:
    """Master seed of finger ``finger`` (1-based) in a dataset seeded ``seed``."""
    return int(np.random.SeedSequence([seed, finger]).generate_state(1)[0])


def _write_finger(
    directory: str,
    seed: int,
    finger: int,
    impressions: int,
    fmt: str,
    profile: ImpressionProfile,
    master_shape: tuple[int, int],
) -> list[str]:
    master = make_master(finger_seed(seed, finger), shape=master_shape)
    paths = []
    for i in range(1, impressions + 1):
        path = os.path.join(directory, f"{finger}_{i}.{fmt}")
        if not cv2.imwrite(path, make_impression(master, i, profile=profile)):
            raise SyntheticParameterError(f"could not write {path}", reason="write_failed")
        paths.append(path)
    return paths


def write_dataset(
    directory: str | os.PathLike[str],
    fingers: int,
    impressions: int,
    seed: int = 0,
    *,
    fmt: str = "png",
    profile: str | ImpressionProfile = "typical",
    progress: Progress | None = None,
    workers: int | None = None,
    master_shape: tuple[int, int] = MASTER_SHAPE,
) -> list[Path]:
    """Write ``fingers × impressions`` images; return their paths, finger-major.

    ``progress(done_fingers, fingers)`` is called after each finger (e.g. to drive a
    ``rich.progress`` bar). ``workers`` overrides the pool size (1 = in process);
    ``master_shape`` the masters' canvas (small ones make fast tests). The pool uses the
    ``spawn`` start method, so a script calling this must guard its entry point with
    ``if __name__ == "__main__":``.
    """
    fingers = check_count(fingers, "fingers", minimum=1)
    impressions = check_count(impressions, "impressions", minimum=1)
    seed = check_seed(seed)
    if fmt not in FORMATS:
        raise SyntheticParameterError(
            f"unknown image format {fmt!r}; expected one of {', '.join(FORMATS)}",
            reason="unknown_format",
        )
    prof = resolve_profile(profile)
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SyntheticParameterError(
            f"cannot create dataset directory {out}: {exc.strerror}", reason="bad_directory"
        ) from exc
    n_workers = workers or (MAX_WORKERS if fingers * impressions >= PARALLEL_MIN_IMAGES else 1)
    results: dict[int, list[str]] = {}
    if n_workers <= 1:
        for f in range(1, fingers + 1):
            results[f] = _write_finger(str(out), seed, f, impressions, fmt, prof, master_shape)
            if progress:
                progress(f, fingers)
    else:
        # spawn, not fork: forking a process whose OpenCV/BLAS thread pools are running is unsafe.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=n_workers, mp_context=context, initializer=exit_with_parent
        ) as pool:
            futures = {
                f: pool.submit(
                    _write_finger, str(out), seed, f, impressions, fmt, prof, master_shape
                )
                for f in range(1, fingers + 1)
            }
            for done, f in enumerate(futures, start=1):
                results[f] = futures[f].result()
                if progress:
                    progress(done, fingers)
    return [Path(p) for f in range(1, fingers + 1) for p in results[f]]
