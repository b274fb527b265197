"""Batch extraction over a process pool: results in input order, one error per bad item.

Each worker loads the models once (pool initializer) and processes items independently; an
error in one item (bad file, no face, a crash of the worker) is recorded against that item and
never stops the batch. With ``workers=1`` the items are processed in this process (no pool).
Workers are started with the ``spawn`` method: no state (threads, locks, open files) is
inherited from the caller.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from matcher.errors import BdxError
from matcher.face import models
from matcher.face.pipeline import ExtractOptions, FaceExtraction, extract_face
from matcher.imageio import Source
from matcher.workers import exit_with_parent, usable_cpus


@dataclass(frozen=True)
class BatchItem:
    """Outcome for input ``index``: ``extraction`` or an error ``reason`` and ``message``."""

    index: int
    extraction: FaceExtraction | None
    reason: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.extraction is not None


_options: ExtractOptions | None = None


def _init_worker(options: ExtractOptions) -> None:
    global _options
    exit_with_parent()
    _options = options
    models.warm_up(options.detector)


def _one(index: int, source: Source, options: ExtractOptions) -> BatchItem:
    try:
        return BatchItem(index, extract_face(source, options))
    except BdxError as exc:  # typed refusals: bad image, quality, model
        return BatchItem(index, None, exc.reason, exc.message)
    except Exception as exc:  # never let one item kill the batch
        return BatchItem(index, None, "internal_error", f"{type(exc).__name__}: {exc}")


def _work(index: int, source: Source) -> BatchItem:
    assert _options is not None, "worker not initialised"
    return _one(index, source, _options)


def default_workers() -> int:
    """One worker per usable CPU core."""
    return usable_cpus()


def extract_batch(
    sources: Sequence[Source],
    options: ExtractOptions | None = None,
    *,
    workers: int | None = None,
    progress: bool = False,
    on_item: Callable[[BatchItem], None] | None = None,
) -> list[BatchItem]:
    """Extract every source; returns one :class:`BatchItem` per source, in input order."""
    opts = options or ExtractOptions()
    n_workers = workers or default_workers()
    if n_workers < 1:
        raise ValueError("workers must be at least 1")
    results: list[BatchItem | None] = [None] * len(sources)
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not progress,
        transient=False,
    )

    def done(item: BatchItem) -> None:
        results[item.index] = item
        bar.advance(task)
        if on_item is not None:
            on_item(item)

    with bar:
        task = bar.add_task("face templates", total=len(sources))
        if n_workers == 1 or len(sources) <= 1:
            models.warm_up(opts.detector)
            for i, src in enumerate(sources):
                done(_one(i, src, opts))
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                max_workers=n_workers, mp_context=ctx, initializer=_init_worker, initargs=(opts,)
            ) as pool:
                futures: dict[Future[BatchItem], int] = {
                    pool.submit(_work, i, src): i for i, src in enumerate(sources)
                }
                for fut in as_completed(futures):
                    try:
                        item = fut.result()
                    except BrokenProcessPool as exc:
                        item = BatchItem(futures[fut], None, "worker_crashed", str(exc))
                    done(item)
    return [r for r in results if r is not None]
