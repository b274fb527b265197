"""Fingerprint searches in worker processes, so that a node answering peer queries uses every
core.

In one process, everything a query does outside the compiled kernels holds the interpreter's
lock (GIL): the request path (TLS, HTTP, JWS, database, exchange log) and the search's own
Python steps (probe preparation, block and candidate bookkeeping). On 2 cores the peer listener
then used ~1.5 of them, whatever the number of threads or queries in flight (benchmarks/README,
"Exchange"). A :class:`SearchPool` runs the searches in ``search_processes`` spawned workers
instead, each with its own interpreter:

* a worker opens the node's fingerprint gallery **read-only** (its memory maps share the page
  cache with the node's), loads the compiled stages and builds the gallery's search layouts
  when it starts, and searches on one thread (the workers are the parallelism);
* a search is sent as (gallery directory, generation, probes, k). The node holds the gallery
  set's read lock while the worker searches, so no append or delete lands meanwhile; a worker
  whose handle is of another generation refreshes it first, and refuses to search a snapshot
  other than the node's (``stale_gallery``);
* probes travel through a pipe and are only ever held in memory, as in the node;
* an idle worker re-reads the gallery when its generation moved on (every ``FOLLOW_S``), so
  that it lets go of the files a merge or an erasure replaced;
* a worker exits when the node's process is gone (it checks its parent every
  ``PARENT_CHECK_S``): a node killed outright leaves no searching processes behind;
* a worker that dies (killed, out of memory) fails the searches in flight with
  ``search_unavailable``; the next search starts a new pool (a search that finds the pool
  broken before it was sent is not failed: it runs on the new pool). Workers that cannot start (a
  gallery they cannot open) raise ``search_unavailable`` too, at the node's start-up.

Results are those of :func:`node.services.search.fingerprint_candidates` in the node: the same
function on the same files.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from matcher.fingerprint.template import FingerprintTemplate
from matcher.gallery import Gallery
from matcher.gallery.errors import GalleryCorruptError, GalleryError
from matcher.gallery.manifest import MANIFEST_NAME
from matcher.gallery.manifest import read as read_manifest
from matcher.search import fingerprint as fingerprint_search
from matcher.search.fusion import SubjectCandidate
from node.hardening import no_core_dumps
from node.service_errors import StoreUnavailableError
from node.services.galleries import storage_failure
from node.services.search import fingerprint_candidates

logger = logging.getLogger(__name__)

#: Threads per worker search: the workers themselves use the cores.
WORKER_THREADS = 1
#: Seconds between a worker's checks that the node's process still runs.
PARENT_CHECK_S = 1.0
#: Seconds between an idle worker's checks for a newer gallery generation: a rewrite (a merge,
#: an erasure) unlinks the old segment files, but a worker that maps them keeps their blocks,
#: deleted templates included, until it lets go of them.
FOLLOW_S = 5.0

_GALLERIES: dict[str, Gallery] = {}
#: Held while a worker's handle is searched or re-read (the search and the follower thread).
_HANDLES = threading.Lock()


def _worker_start(directory: str, follow_s: float, node: int) -> None:
    """Worker initialiser: ignore Ctrl-C (the node stops its workers), load the compiled stages
    and open and lay out the gallery, so that no query waits for either. ``node`` is the
    node's process id, given by the node: a worker still importing when the node was killed
    would otherwise take its new parent (init) for the node and never exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    no_core_dumps()  # it holds probes (node.hardening); a node run otherwise than by serve too
    threading.Thread(target=_exit_with, args=(node,), daemon=True).start()
    fingerprint_search.warm_up()
    if (Path(directory) / MANIFEST_NAME).exists():
        with _HANDLES:
            fingerprint_search.prepare_layouts(_gallery(directory, None))
    threading.Thread(target=_follow, args=(directory, follow_s), daemon=True).start()


def _exit_with(parent: int) -> None:
    """Exit this worker once ``parent`` (the node) is gone: its pipes would otherwise keep a
    killed node's workers waiting for work forever (they hold both ends of the task queue)."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def _follow(directory: str, follow_s: float) -> None:
    """Re-read this worker's handle every ``follow_s`` when the gallery on disk moved on, so
    that an idle worker does not keep a rewritten gallery's old files (and the deleted
    records in them) mapped until its next search. A failure is logged once until the next
    success (the next search re-reads the gallery in any case); the thread goes on."""
    failing = False
    while True:
        time.sleep(follow_s)
        try:
            with _HANDLES:
                gallery = _GALLERIES.get(directory)
                if gallery is not None and read_manifest(Path(directory)).generation != (
                    gallery.generation
                ):
                    gallery.refresh()
            failing = False
        except Exception as exc:
            if not failing:
                logger.warning("search process: gallery not re-read: %s", exc)
            failing = True


def _gallery(directory: str, generation: int | None) -> Gallery:
    """This worker's read-only handle on ``directory``, at ``generation`` (any when None)."""
    gallery = _GALLERIES.get(directory)
    if gallery is None:
        gallery = Gallery.open(directory, verify=False)  # the node verified it when it opened it
        _GALLERIES[directory] = gallery
    if generation is not None and gallery.generation != generation:
        gallery.refresh()
        if gallery.generation != generation:
            raise GalleryError(
                f"the gallery is at generation {gallery.generation}, the node's at {generation}",
                reason="stale_gallery",
            )
    return gallery


def _ready() -> None:
    """A task that only makes the executor start a worker."""


def _search(
    directory: str,
    generation: int,
    probes: list[FingerprintTemplate],
    k: int,
    exclude: list[str],
) -> list[SubjectCandidate]:
    with _HANDLES:
        gallery = _gallery(directory, generation)
        return fingerprint_candidates(gallery, probes, k, threads=WORKER_THREADS, exclude=exclude)


class SearchPool:
    """``processes`` worker processes searching fingerprint galleries; each opens and lays out
    the one at ``directory`` (the node's, which need not exist yet) when it starts."""

    def __init__(self, directory: Path, processes: int, *, follow_s: float = FOLLOW_S) -> None:
        if processes < 1:
            raise ValueError("a search pool needs at least one process")
        self.directory = str(directory)
        self.processes = processes
        self.follow_s = follow_s
        self._lock = threading.Lock()
        self._closed = False
        self._executor: ProcessPoolExecutor | None = self._start()

    def _start(self) -> ProcessPoolExecutor:
        """A pool whose workers have all started (and warmed up) before it is returned."""
        executor = ProcessPoolExecutor(
            self.processes,
            mp_context=multiprocessing.get_context("spawn"),  # no fork of a threaded server
            initializer=_worker_start,
            initargs=(self.directory, self.follow_s, os.getpid()),
        )
        try:
            for future in [executor.submit(_ready) for _ in range(self.processes)]:
                future.result()
        except BrokenProcessPool:
            executor.shutdown(wait=True, cancel_futures=True)
            raise StoreUnavailableError(
                "the search processes did not start (see the node's log)",
                reason="search_unavailable",
            ) from None
        return executor

    def _running(self) -> ProcessPoolExecutor:
        """The pool, started again if the last one broke."""
        with self._lock:
            if self._closed:
                raise StoreUnavailableError("the node is stopping", reason="search_unavailable")
            if self._executor is None:
                logger.warning("starting new search processes")
                self._executor = self._start()
            return self._executor

    def fingerprint(
        self,
        gallery: Gallery,
        probes: Sequence[FingerprintTemplate],
        k: int,
        exclude: Sequence[str] = (),
    ) -> list[SubjectCandidate]:
        """:func:`~node.services.search.fingerprint_candidates` in a worker, on ``gallery``'s
        files at its generation (the caller holds it still); raises its typed errors, or
        :class:`StoreUnavailableError`: ``search_unavailable`` when the worker died,
        ``storage_error`` when it could not read the gallery's files."""
        job = (str(gallery.directory), gallery.generation, list(probes), k, list(exclude))
        executor = self._running()
        try:
            future = executor.submit(_search, *job)
        except BrokenProcessPool:  # it broke before this search was sent (a worker died idle)
            self._drop(executor)
            executor = self._running()
            try:
                future = executor.submit(_search, *job)
            except BrokenProcessPool:
                self._drop(executor)
                raise StoreUnavailableError(
                    "the search processes stopped as they started", reason="search_unavailable"
                ) from None
        try:
            return future.result()
        except GalleryCorruptError as exc:  # a file the worker could not read back
            raise storage_failure(exc) from None
        except BrokenProcessPool:
            self._drop(executor)
            raise StoreUnavailableError(
                "a search process stopped; the query was not answered", reason="search_unavailable"
            ) from None

    def _drop(self, executor: ProcessPoolExecutor) -> None:
        """Forget a broken pool (the next search starts a new one)."""
        with self._lock:
            if self._executor is executor:  # not dropped already by another search
                logger.error("a search process stopped; the pool is dropped")
                self._executor = None
        executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        with self._lock:
            executor, self._executor, self._closed = self._executor, None, True
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
