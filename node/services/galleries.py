"""The node's galleries: one :class:`matcher.gallery.Gallery` per modality, template format and
version, in sub-directories of ``settings.gallery_dir``, opened writable by the serving process.

:class:`GallerySet` is the :class:`~node.services.records.GalleryIndex` the record service
keeps consistent with the database; :func:`gallery_writer` turns template arrays into the
gallery append of :meth:`~node.services.records.RecordService.enrol`. Searches share a
readers-writer lock: any number search at once, while an append, delete or close waits for them
and has the galleries to itself (the store takes one writer; the process serves requests on
several threads). A segment merge after an append holds them back only for its commit.

Face searches rank by CSLS (:mod:`matcher.search.neighbours`): the set keeps each face
gallery's neighbour lists in memory, brings them to the current snapshot when a search finds
them older (the records appended or deleted since cost one matrix product each against the
gallery) and has them ready when the node starts (:meth:`GallerySet.warm`): from the file
``<gallery>.neighbours.npz`` the set wrote when it was last closed, brought up to date, or
built from scratch when there is none or it cannot be read.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from matcher.errors import GalleryError
from matcher.gallery import FACE_POSITION, Gallery, GallerySchema, GalleryStats, RecordBatch
from matcher.gallery.errors import GalleryCorruptError
from matcher.gallery.files import WriterLock
from matcher.search import fingerprint as fingerprint_search
from matcher.search import neighbours
from matcher.search.face import gallery_embeddings
from matcher.search.upgrade import galleries_in
from node.db.models import Modality, RecordState, TemplateRecord
from node.errors import ConfigError
from node.repositories.records import RecordRepository
from node.service_errors import StoresDisagreeError, StoreUnavailableError
from node.services.records import GalleryWrite

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
#: File beside a face gallery's directory holding its neighbour lists between runs.
NEIGHBOURS_SUFFIX = ".neighbours.npz"

logger = logging.getLogger(__name__)


def gallery_name(schema: GallerySchema) -> str:
    """Directory name of the gallery holding ``schema``'s templates."""
    return _UNSAFE.sub("_", f"{schema.modality}-{schema.format}-v{schema.format_version}")


#: What :func:`subject_key` writes (row ids start at 1, written without leading zeros).
_SUBJECT_KEY = re.compile(r"s([1-9][0-9]*)")


def subject_key(subject_id: int) -> str:
    """The subject reference stored in the gallery: the row id, nothing personal."""
    return f"s{subject_id}"


def subject_id_of(key: str) -> int | None:
    """The subject row id a :func:`subject_key` names, or None for any other string."""
    found = _SUBJECT_KEY.fullmatch(key)
    return None if found is None else int(found.group(1))


class ReadWriteLock:
    """Any number of readers at once, or one writer. A waiting writer holds new readers back, so
    a steady stream of searches cannot starve an append. Not re-entrant."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writing or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


def gallery_root(root: Path) -> Path:
    """``root`` (a node's ``gallery_dir``), refused when something other than a folder is in
    its place (a file): ``bdx gallery stats`` read it as a node without galleries yet (exit
    0), and serve, load, reconcile and erase as ``file_exists``; a setting's folder that
    cannot be used is :class:`ConfigError` (exit 2). A folder not made yet holds none."""
    if root.exists() and not root.is_dir():
        raise ConfigError(f"gallery_dir {root} is not a directory", reason="not_a_directory")
    return root


class GallerySet:
    """Every gallery under one directory, opened writable (holds their writer locks)."""

    def __init__(self, root: Path, galleries: dict[str, Gallery]) -> None:
        self.root = root
        self._galleries = galleries
        self._lock = ReadWriteLock()
        # Writers take this first, then the lock: a merge writes its segment holding only this
        # (searches go on) and takes the lock for its commit (see :meth:`append`).
        self._write_mutex = threading.Lock()
        # Set when close() begins: an erasure in progress stops after its current segment.
        self._closing = threading.Event()
        self._root_lock: WriterLock | None = None  # set by open()
        self._neighbours: dict[str, tuple[neighbours.NeighbourLists, np.ndarray]] = {}
        self._neighbours_lock = threading.Lock()
        self._unsettled_marks: Counter[str] = Counter()
        self._unsettled: frozenset[str] = frozenset()
        self._unsettled_lock = threading.Lock()

    # Records between their two commits (an enrolment's pending rows, a deletion's deleting
    # rows) are never search results. The record service reports them here as it goes, so
    # the hot path (peer searches) reads a set instead of querying the database: every
    # change of a record's state in a running node goes through this object (the gallery's
    # writer lock keeps other processes out), and reconcile settles what a crash left. Marks
    # are counted: an enrolment and a subject's deletion in flight over the same references
    # each settle their own mark, and the records stay out until both have.
    def unsettle(self, references: Sequence[str]) -> None:
        """Mark ``references`` as between commits (not search results)."""
        with self._unsettled_lock:
            self._unsettled_marks.update(references)
            self._unsettled = frozenset(self._unsettled_marks)

    def settle(self, references: Sequence[str]) -> None:
        """Take back one mark of each of ``references`` (none is taken below zero: reconcile
        settles what a crash left, unmarked in this process)."""
        with self._unsettled_lock:
            for reference in references:
                left = self._unsettled_marks.get(reference, 0) - 1
                if left > 0:
                    self._unsettled_marks[reference] = left
                else:
                    self._unsettled_marks.pop(reference, None)
            self._unsettled = frozenset(self._unsettled_marks)

    def unsettled(self) -> frozenset[str]:
        """The references with a mark of :meth:`unsettle` not settled yet."""
        return self._unsettled

    @classmethod
    def open(cls, root: Path, *, verify: bool = True) -> GallerySet:
        """Open (creating ``root`` owner-only if needed) every gallery in ``root``, holding
        ``root``'s own writer lock: one process at a time has the set, galleries it has yet
        to create included (a second one refuses with ``gallery_locked``)."""
        gallery_root(root).mkdir(parents=True, exist_ok=True, mode=0o700)
        root_lock = WriterLock(root)
        galleries: dict[str, Gallery] = {}
        try:
            for sub in galleries_in(root):  # an interrupted `bdx gallery upgrade` recovered
                try:
                    galleries[sub.name] = Gallery.open(sub, writable=True, verify=verify)
                except GalleryError as exc:
                    if exc.reason != "no_gallery":
                        raise
        except BaseException:
            for gallery in galleries.values():
                gallery.close()
            root_lock.release()
            raise
        opened = cls(root, galleries)
        opened._root_lock = root_lock
        return opened

    def close(self) -> None:
        self._closing.set()
        with self._write_mutex, self._lock.writing():
            try:
                self._save_lists()
            finally:
                for gallery in self._galleries.values():
                    gallery.close()
                self._galleries.clear()
                if self._root_lock is not None:
                    self._root_lock.release()
                    self._root_lock = None

    def __enter__(self) -> GallerySet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def galleries(self) -> Mapping[str, Gallery]:
        return dict(self._galleries)

    def stats(self) -> dict[str, GalleryStats]:
        with self._lock.reading():
            return {name: g.stats() for name, g in self._galleries.items()}

    @contextmanager
    def reading(self, schema: GallerySchema) -> Iterator[Gallery | None]:
        """The gallery of ``schema`` (``None`` if it has none yet), held still while in use.

        Holds the set's lock as a reader: searches run side by side, and no append or delete
        changes the snapshot during one.
        """
        with self._lock.reading():
            yield self._galleries.get(gallery_name(schema))

    def face_offsets(self, gallery: Gallery) -> np.ndarray:
        """CSLS offsets (size,) float32 of face ``gallery``'s snapshot, by global id; call it
        while :meth:`reading` the gallery. Brings the kept neighbour lists up to date first."""
        name = gallery.directory.name
        with self._neighbours_lock:
            held = self._neighbours.get(name)
            if held is None or held[0].generation != gallery.generation:
                previous = held[0] if held else self._saved_lists(name)
                lists = neighbours.refresh(previous, gallery, gallery_embeddings(gallery))
                held = (lists, lists.offsets())
                self._neighbours[name] = held
            return held[1]

    def _lists_path(self, name: str) -> Path:
        return self.root / f"{name}{NEIGHBOURS_SUFFIX}"

    def _saved_lists(self, name: str) -> neighbours.NeighbourLists | None:
        try:
            return neighbours.load(self._lists_path(name))
        except FileNotFoundError:
            return None
        except ValueError as exc:
            logger.warning("face neighbour lists of %s not reused, rebuilt: %s", name, exc)
            return None

    def _save_lists(self, *, refresh: bool = False) -> None:
        """Write the face galleries' neighbour lists held in memory: at close, as they are (the
        next start brings them up to date). With ``refresh`` (before an erasure), the lists
        held or only saved are first brought to the current snapshot, so that the file no
        longer names the records deleted since or keeps their scores (a saved file that cannot
        be read is removed). A file that cannot be written is removed too: the next start
        rebuilds it, nothing else is lost. Call it holding the set's lock (reading or
        writing)."""
        if refresh:
            for name, gallery in self._galleries.items():
                if gallery.schema.modality != "face":
                    continue
                if name not in self._neighbours:
                    if not self._lists_path(name).exists():
                        continue
                    if self._saved_lists(name) is None:
                        self._drop_lists_file(name)
                        continue
                self.face_offsets(gallery)
        with self._neighbours_lock:
            for name, (lists, _) in self._neighbours.items():
                try:
                    neighbours.save(lists, self._lists_path(name))
                except OSError as exc:
                    logger.warning("face neighbour lists of %s not saved: %s", name, exc)
                    self._drop_lists_file(name)

    def _drop_lists_file(self, name: str) -> None:
        try:
            self._lists_path(name).unlink(missing_ok=True)
        except OSError as exc:
            logger.error("face neighbour lists of %s: stale file not removed: %s", name, exc)

    def warm(self) -> None:
        """Build the neighbour lists of every face gallery and the search layouts of every
        fingerprint gallery (the node does it on start-up, so that no search waits for them)."""
        with self._lock.reading():
            for gallery in self._galleries.values():
                if gallery.schema.modality == "face":
                    self.face_offsets(gallery)
                elif gallery.schema.modality == "fingerprint":
                    fingerprint_search.prepare_layouts(gallery)

    def append(self, schema: GallerySchema, batch: RecordBatch) -> None:
        """Append ``batch`` to the gallery of ``schema``, creating that gallery if needed, then
        merge small trailing segments (:meth:`~matcher.gallery.Gallery.tidy`): one enrolment
        is one segment, and each holds open files while the gallery is open.

        Searches wait only for the append's commit and for each merge's commit, not while a
        merge rewrites its records (the largest rewrite the whole gallery). A merge that fails
        leaves the committed append standing: it is logged and the next append merges again.
        An append the file system refuses raises :class:`StoreUnavailableError`.
        """
        name = gallery_name(schema)
        with self._write_mutex:
            with self._lock.writing(), _storage_errors():
                gallery = self._galleries.get(name)
                if gallery is None:
                    gallery = Gallery.create(self.root / name, schema)
                    self._galleries[name] = gallery
                gallery.append(batch)
            try:
                gallery.tidy(swap=self._lock.writing)
            except (GalleryError, OSError) as exc:
                logger.warning(
                    "gallery %s: segments not merged (the append stands; the next one retries): %s",
                    name,
                    exc,
                )
                self._catch_up(name, gallery)

    def _catch_up(self, name: str, gallery: Gallery) -> None:
        """After a failed write: bring the handle to the generation on disk, which a failure
        past the commit left ahead of it (the search processes, which refresh to the node's
        generation, would otherwise refuse every search as ``stale_gallery``)."""
        try:
            with self._lock.writing():
                gallery.catch_up()
        except (GalleryError, OSError) as exc:
            logger.error("gallery %s: not re-read after a failed write: %s", name, exc)

    def awaiting_erasure(self) -> int:
        """Deleted records whose templates are still in the gallery files."""
        with self._lock.reading():
            return sum(g.stats().deleted for g in self._galleries.values())

    def erase(self) -> int:
        """Erase deleted records' templates from every gallery's files
        (:meth:`~matcher.gallery.Gallery.erase`); returns the segments rewritten. Searches go
        on meanwhile: each rewrite holds them back only for its commit."""
        rewritten = 0
        failed: list[BaseException] = []
        with self._write_mutex:
            # The face neighbour lists first, from the snapshot without the deleted records: a
            # node killed between the two then leaves the tombstones, and the next round
            # does both again (the other way round the lists would keep them for good).
            with self._lock.reading():
                if any(
                    g.schema.modality == "face" and g.stats().deleted
                    for g in self._galleries.values()
                ):
                    try:
                        self._save_lists(refresh=True)
                    except Exception:  # the templates are erased all the same, and no file
                        # that may name the deleted records is left
                        logger.exception("face neighbour lists not refreshed before erasure")
                        for name, gallery in self._galleries.items():
                            if gallery.schema.modality == "face":
                                self._drop_lists_file(name)
            for name, gallery in list(self._galleries.items()):
                try:
                    rewritten += gallery.erase(swap=self._lock.writing, stop=self._closing.is_set)
                except (GalleryError, OSError) as exc:  # the other galleries are erased still
                    self._catch_up(name, gallery)
                    failed.append(exc)
        if failed:
            raise failed[0]
        return rewritten

    def references(self) -> set[str]:
        """Every live reference of every gallery."""
        out: set[str] = set()
        with self._lock.reading():
            for gallery in self._galleries.values():
                out.update(gallery.references())
        return out

    def remove(self, references: Sequence[str]) -> None:
        """Delete the live ``references`` from whichever gallery holds them; ignore the rest.
        A removal the file system refuses raises :class:`StoreUnavailableError`."""
        refs = list(dict.fromkeys(references))
        if not refs:
            return
        with self._write_mutex, self._lock.writing(), _storage_errors():
            for gallery in self._galleries.values():
                gallery.catch_up()  # after a write that failed past its commit
                ids = gallery.locate(refs)
                present = [r for r, i in zip(refs, ids.tolist(), strict=True) if i >= 0]
                if present:
                    gallery.delete(present)


@contextmanager
def _storage_errors() -> Iterator[None]:
    """A gallery write the file system refuses (no permission, disk full, I/O error), or
    gallery files it finds damaged or cannot read back, is the node's storage failing, not
    the request: :class:`StoreUnavailableError` ``storage_error`` (HTTP 503, exit 7). It was a
    raw OSError: a 500 with a traceback in the log, exit 1."""
    try:
        yield
    except OSError as exc:
        raise StoreUnavailableError(
            f"the gallery could not be written: {exc.strerror or type(exc).__name__}",
            reason="storage_error",
        ) from exc
    except GalleryCorruptError as exc:
        raise storage_failure(exc) from exc


def storage_failure(exc: GalleryCorruptError) -> StoreUnavailableError:
    """``exc`` (gallery files damaged or unreadable) as the request's failure: HTTP 503
    ``storage_error``, its own reason kept in the message."""
    return StoreUnavailableError(
        f"the gallery's files cannot be used: {exc.message} [{exc.reason}]",
        reason="storage_error",
    )


def require_galleries(session: Session, galleries: GallerySet) -> None:
    """Refuse (:class:`StoresDisagreeError` ``missing_gallery``, exit 7) a gallery set without
    a gallery of a modality the database holds active records of: a gallery folder lost or
    moved, or a database of another data_dir. Served, every search of that modality would be
    a no-hit, and reconcile only reports such records (``missing_from_gallery``); the node's
    start-up and ``bdx gallery load`` run this first."""
    held = {gallery.schema.modality for gallery in galleries.galleries().values()}
    lacking: Counter[str] = Counter()
    for modality, state, _, count in RecordRepository(session).counts():
        if state is RecordState.ACTIVE and modality.value not in held:
            lacking[modality.value] += count
    if lacking:
        what = " and ".join(f"{n} active {m} records" for m, n in sorted(lacking.items()))
        raise StoresDisagreeError(
            f"the database holds {what}, but {galleries.root} has no gallery of them (the "
            "gallery folder was lost or moved, or the database is another node's): restore "
            "the folder or check data_dir and database_url; nothing was changed",
            reason="missing_gallery",
        )


def gallery_writer(
    galleries: GallerySet,
    schema: GallerySchema,
    arrays: Mapping[str, Iterable[object] | np.ndarray],
) -> GalleryWrite:
    """The enrol step that appends ``arrays`` (one row per new record, in order)."""

    def write(rows: Sequence[TemplateRecord]) -> None:
        positions = [
            FACE_POSITION if row.modality is Modality.FACE else (row.finger_position or 0)
            for row in rows
        ]
        batch = RecordBatch.build(
            [row.reference for row in rows],
            [subject_key(row.subject_id) for row in rows],
            positions,
            dict(arrays),
            format=schema.format,
            format_version=schema.format_version,
        )
        galleries.append(schema, batch)

    return write
