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

Each round first finishes deletions that failed after their first commit because the gallery
could not be written (rows left ``deleting``, out of every search;
:meth:`~node.services.records.RecordService.finish_stranded_deletions`), at most
``params.STRANDED_DELETIONS_PER_ROUND`` records a round: such a deletion completes once the
gallery is writable again, without an operator's retry or a restart. Failures are logged
with counts and reasons only, never a subject id or a reference.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from sqlalchemy.orm import Session, sessionmaker

from matcher.errors import BdxError, GalleryError
from node.services import params
from node.services.galleries import GallerySet
from node.services.records import RecordService

logger = logging.getLogger(__name__)


def finish_deletions(galleries: GallerySet, sessions: sessionmaker[Session]) -> int:
    """Finish deletions whose gallery write failed (see the module doc); returns the records
    finished. A failure is logged in one line (the next round retries) and returns 0."""
    try:
        with sessions() as session:
            done = RecordService(session, galleries).finish_stranded_deletions(
                limit=params.STRANDED_DELETIONS_PER_ROUND
            )
    except Exception as exc:  # keep serving; the next round retries
        # The reason only: a database error's text holds its statement's parameters.
        why = f"{exc.message} [{exc.reason}]" if isinstance(exc, BdxError) else type(exc).__name__
        logger.warning("deletions whose gallery write failed not finished yet: %s", why)
        return 0
    if done:
        logger.info("finished the deletion of %d records whose gallery write had failed", done)
    return done


async def _erase_loop(
    galleries: GallerySet, sessions: sessionmaker[Session] | None, interval_s: float
) -> None:
    while True:
        if sessions is not None:
            await anyio.to_thread.run_sync(finish_deletions, galleries, sessions)
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
        except (GalleryError, OSError) as exc:  # the gallery's files: one line, no traceback
            why = f"{exc.message} [{exc.reason}]" if isinstance(exc, GalleryError) else exc
            logger.error(
                "deleted records not erased from the gallery files (the next round retries): %s",
                why,
            )
        except Exception:  # keep serving; the next round retries
            logger.exception("deleted records not erased from the gallery files")
        await anyio.sleep(interval_s)


@asynccontextmanager
async def erasing(
    galleries: GallerySet,
    interval_s: float,
    sessions: sessionmaker[Session] | None = None,
) -> AsyncIterator[None]:
    """Erase deleted records' templates now and every ``interval_s`` while the block runs,
    each round after finishing the deletions of ``sessions``' database whose gallery write
    failed (when ``sessions`` is given)."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(_erase_loop, galleries, sessions, interval_s)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()
