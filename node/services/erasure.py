"""Erasure of deleted records' templates from the gallery files while the node serves.

A deletion (``DELETE /subjects/{id}``, an undone enrolment, reconcile) tombstones its records:
they are no search result from that moment, but their templates stay in the immutable segment
files until these are rewritten. :func:`erasing` runs, for the life of the node, a task that
rewrites the segments holding deleted records (:meth:`GallerySet.erase`) at start-up and then
every ``settings.gallery_erase_interval_s``: while the node runs, no gallery file keeps a
deleted template longer than that plus the rewrite (the search processes let go of the old
files within ``search_pool.FOLLOW_S``), and the face galleries' saved neighbour lists
(``<gallery>.neighbours.npz``: references, best scores and embedding sums, no templates) are
rewritten without the erased records. Searches go on during a rewrite. A shutdown waits for
the segment being rewritten and leaves the others to the next start (each rewrite is atomic;
a killed node erases at its next start too).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from node.services.galleries import GallerySet

logger = logging.getLogger(__name__)


async def _erase_loop(galleries: GallerySet, interval_s: float) -> None:
    while True:
        try:
            waiting = await anyio.to_thread.run_sync(galleries.awaiting_erasure)
            # Every round, even with nothing waiting: erase also removes the files of a
            # rewrite whose clean-up failed past its commit.
            rewritten = await anyio.to_thread.run_sync(galleries.erase)
            if waiting:
                logger.info(
                    "erased %d deleted records from the gallery files (%d segments rewritten)",
                    waiting,
                    rewritten,
                )
        except Exception:  # keep serving; the next round retries
            logger.exception("deleted records not erased from the gallery files")
        await anyio.sleep(interval_s)


@asynccontextmanager
async def erasing(galleries: GallerySet, interval_s: float) -> AsyncIterator[None]:
    """Erase deleted records' templates now and every ``interval_s`` while the block runs."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(_erase_loop, galleries, interval_s)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()
