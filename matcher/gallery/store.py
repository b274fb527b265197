"""The gallery store: durable, crash-consistent, memory-mapped template records.

Directory layout: ``MANIFEST.json`` (see :mod:`matcher.gallery.manifest`), immutable segment
files ``seg-<id>.<column>.npy``, at most one tombstone file ``tomb-<generation>.npy`` (an
(t, 2) int64 array of [segment id, row]) and ``LOCK``. Every write creates new files under
temp names, fsyncs and renames them, fsyncs the directory, then commits a new manifest; files
the current manifest does not name are garbage from an interrupted or superseded write and
are deleted by the next writer. A writable handle holds an ``fcntl`` lock for its lifetime.

A handle is a snapshot of one generation; global row ids (``0 .. size``) index that snapshot,
deleted rows included (``alive`` says which count). Readers call :meth:`Gallery.refresh`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from matcher.gallery import manifest as mf
from matcher.gallery import params, segment
from matcher.gallery.errors import (
    DuplicateReferenceError,
    GalleryCorruptError,
    GalleryError,
    UnknownReferenceError,
)
from matcher.gallery.files import (
    LOCK_NAME,
    TEMP_PREFIX,
    WriterLock,
    collect_garbage,
    fsync_dir,
    load_array,
    save_array,
)
from matcher.gallery.schema import GallerySchema, RecordBatch, encode_references
from matcher.gallery.segment import Segment


@dataclass(frozen=True, eq=False)
class Record:
    """One record read back: its arrays are copies (per-record shapes)."""

    reference: str
    subject: str
    position: int
    arrays: Mapping[str, np.ndarray]


@dataclass(frozen=True, eq=False)
class Block:
    """Rows ``start .. start+n`` (global ids) of one segment: field arrays (n, ...) as
    read-only views, positions (n,) int8, alive (n,) bool; ``segment`` and ``row``, the
    block's first row in it."""

    start: int
    arrays: Mapping[str, np.ndarray]
    positions: np.ndarray
    alive: np.ndarray
    segment: Segment
    row: int

    def __len__(self) -> int:
        return int(self.alive.shape[0])


@dataclass(frozen=True)
class GalleryStats:
    generation: int
    records: int
    deleted: int
    segments: int
    bytes: int


def _content(entry: mf.SegmentEntry) -> tuple[int, tuple[tuple[str, str], ...]]:
    """A segment entry's identity: its id and every file's digest."""
    return entry.id, tuple(sorted((k, f.sha256) for k, f in entry.files.items()))


class Gallery:
    """A gallery directory; use :meth:`create` or :meth:`open`, then close (or ``with``)."""

    def __init__(self, directory: Path, lock: WriterLock | None) -> None:
        self.directory = directory
        self._lock = lock
        self._subject_codes: tuple[np.ndarray, np.ndarray] | None = None
        self._segments: list[Segment] = []

    # ----------------------------------------------------------------- opening
    @classmethod
    def create(cls, directory: str | os.PathLike[str], schema: GallerySchema) -> Gallery:
        """Create an empty gallery. The directory may exist, holding nothing but a lock and
        temporary files (what an interrupted create leaves): the first commit deletes every
        file the manifest does not name. Raises :class:`GalleryError` ``gallery_exists``,
        :class:`GalleryCorruptError` (``missing_manifest``, ``not_empty``)."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        lock = WriterLock(path)
        try:
            if (path / mf.MANIFEST_NAME).exists():
                raise GalleryError(f"a gallery already exists at {path}", reason="gallery_exists")
            _refuse_unless_empty(path)
            mf.commit(path, mf.Manifest(schema=schema))
            gallery = cls(path, lock)
            gallery._load(verify=False)
        except BaseException:
            lock.release()
            raise
        return gallery

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        writable: bool = False,
        verify: bool = True,
        schema: GallerySchema | None = None,
    ) -> Gallery:
        """Open a gallery; ``verify`` checks every file's SHA-256 (about 1.5 GB/s per core).

        ``schema``, when given, must equal the stored one (format, version, fields).
        Raises :class:`GalleryCorruptError`, :class:`GalleryLockedError`, :class:`GalleryError`
        (``no_gallery`` for a folder without a manifest or any segment or tombstone file).
        """
        path = Path(directory)
        if not (path / mf.MANIFEST_NAME).exists():
            raise mf.absent(path)  # or missing_manifest: segment files and no manifest
        lock = WriterLock(path) if writable else None
        gallery = cls(path, lock)
        try:
            gallery._load(verify=verify)
            if schema is not None and schema != gallery.schema:
                gallery.schema.check_format(schema.format, schema.format_version)
                raise GalleryError(
                    "gallery fields differ from the expected schema", reason="schema_mismatch"
                )
            if writable:
                collect_garbage(path, gallery._manifest.file_names())
        except BaseException:
            gallery.close()
            raise
        return gallery

    def _load(self, *, verify: bool) -> None:
        for attempt in range(params.OPEN_RETRIES):
            man = mf.read(self.directory)
            try:
                if verify:
                    segment.verify(self.directory, man)
                self._install(man)
                return
            except FileNotFoundError as exc:
                if attempt == params.OPEN_RETRIES - 1 or self._lock is not None:
                    raise GalleryCorruptError(
                        f"a file the manifest names is missing: {Path(str(exc.filename)).name}",
                        reason="missing_file",
                    ) from None

    def _install(self, man: mf.Manifest) -> None:
        segs, offset = [], 0
        # Segment files never change, so what readers derived from a segment still holds for
        # its next view: handed on when the manifest names the same files (same digests).
        before = {
            _content(e): s.derived for e, s in zip(self._entries(), self._segments, strict=True)
        }
        for entry in man.segments:
            seg = segment.load(self.directory, man.schema, entry, offset)
            seg.derived.update(before.get(_content(entry), {}))
            segs.append(seg)
            offset += entry.count
        alive = np.ones(offset, dtype=bool)
        tombs = np.zeros((0, 2), dtype=np.int64)
        if man.tombstones is not None:
            name = man.tombstones.name
            # mapped until its shape is checked: read, a header's claim was allocated first
            mapped = load_array(self.directory, name, "bad_tombstones", mmap=True)
            if mapped.shape != (man.tombstone_count, 2) or mapped.dtype != np.int64:
                raise GalleryCorruptError(f"{name}: bad tombstone file", reason="bad_tombstones")
            tombs = np.array(mapped)
            starts = {s.id: s.offset for s in segs}
            try:
                alive[np.array([starts[i] for i in tombs[:, 0]], dtype=np.int64) + tombs[:, 1]] = 0
            except (KeyError, IndexError) as exc:
                raise GalleryCorruptError(
                    "tombstone names no record", reason="bad_tombstones"
                ) from exc
        self._manifest, self._segments, self._alive, self._tombs = man, segs, alive, tombs
        self._subject_codes = None

    def _entries(self) -> tuple[mf.SegmentEntry, ...]:
        """The installed manifest's segment entries (none before the first install)."""
        man = getattr(self, "_manifest", None)
        return man.segments if man is not None else ()

    def refresh(self) -> None:
        """Re-read the manifest (readers: see the writer's latest committed generation)."""
        self._load(verify=False)

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- reading
    @property
    def schema(self) -> GallerySchema:
        return self._manifest.schema

    @property
    def generation(self) -> int:
        return self._manifest.generation

    @property
    def user(self) -> Mapping[str, Any]:
        """Caller metadata committed atomically with the last write."""
        return self._manifest.user

    @property
    def size(self) -> int:
        """Rows in this snapshot, deleted ones included (global ids are ``0 .. size``)."""
        return int(self._alive.shape[0])

    @property
    def alive(self) -> np.ndarray:
        """(size,) bool: which global ids are live records."""
        return self._alive

    def __len__(self) -> int:
        return int(np.count_nonzero(self._alive))

    def stats(self) -> GalleryStats:
        files = [f for s in self._manifest.segments for f in s.files.values()]
        return GalleryStats(
            self.generation,
            len(self),
            self.size - len(self),
            len(self._segments),
            sum(f.size for f in files),
        )

    def locate(self, references: Iterable[str]) -> np.ndarray:
        """Global id of each live reference (m,) int64, -1 where none is live."""
        refs = encode_references(references, "reference")
        out = np.full(refs.shape[0], -1, dtype=np.int64)
        for seg in self._segments:
            rows = seg.find(refs)
            ids = seg.offset + rows
            live = (rows >= 0) & self._alive[np.where(rows >= 0, ids, 0)]
            out[live] = ids[live]
        return out

    def references(self) -> list[str]:
        """References of every live record, in global-id order."""
        refs: list[str] = []
        for seg in self._segments:
            live = self._alive[seg.offset : seg.offset + len(seg)]
            refs.extend(r.decode() for r in np.asarray(seg.references)[live])
        return refs

    def lookup(self, reference: str) -> Record:
        """The live record with ``reference``; :class:`UnknownReferenceError` if none."""
        gid = int(self.locate([reference])[0])
        if gid < 0:
            raise UnknownReferenceError("no record with this reference")
        seg, row = self._segment_of(gid)
        arrays = {k: np.array(v[row]) for k, v in seg.arrays.items()}
        return Record(
            seg.references[row].decode(),
            seg.subjects[row].decode(),
            int(seg.positions[row]),
            arrays,
        )

    def _segment_of(self, gid: int) -> tuple[Segment, int]:
        starts = [s.offset for s in self._segments]
        i = int(np.searchsorted(starts, gid, side="right")) - 1
        return self._segments[i], gid - self._segments[i].offset

    def resolve(self, ids: np.ndarray) -> tuple[list[str], list[str], np.ndarray]:
        """References, subjects and positions (k,) of global ids (k,) (e.g. top-k hits)."""
        refs, subs, pos = [], [], np.zeros(len(ids), dtype=np.int8)
        for j, gid in enumerate(np.asarray(ids, dtype=np.int64).tolist()):
            seg, row = self._segment_of(gid)
            refs.append(seg.references[row].decode())
            subs.append(seg.subjects[row].decode())
            pos[j] = seg.positions[row]
        return refs, subs, pos

    def positions(self) -> np.ndarray:
        """(size,) int8 finger positions of every global id."""
        return _concat([s.positions for s in self._segments], np.int8)

    def subject_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """(codes (size,) int64, names (s,) ``S``): subject of each global id as an integer
        index into ``names``; computed once per snapshot with one sort."""
        if self._subject_codes is None:
            subs = [np.asarray(s.subjects) for s in self._segments]
            allsubs = np.concatenate(subs) if subs else np.zeros(0, dtype="S1")
            names, codes = np.unique(allsubs, return_inverse=True)
            self._subject_codes = (codes.astype(np.int64).reshape(-1), names)
        return self._subject_codes

    def blocks(self, block_size: int = params.DEFAULT_BLOCK_SIZE) -> list[Block]:
        """The snapshot cut into blocks of at most ``block_size`` rows (views, no copies)."""
        out = []
        for seg in self._segments:
            for lo in range(0, len(seg), block_size):
                hi = min(lo + block_size, len(seg))
                out.append(
                    Block(
                        seg.offset + lo,
                        {k: v[lo:hi] for k, v in seg.arrays.items()},
                        seg.positions[lo:hi],
                        self._alive[seg.offset + lo : seg.offset + hi],
                        seg,
                        lo,
                    )
                )
        return out

    # ----------------------------------------------------------------- writing
    def _writer(self) -> None:
        if self._lock is None:
            raise GalleryError("gallery opened read-only", reason="read_only")
        # Only this handle writes (it holds the lock), so a newer manifest on disk is this
        # handle's own write that failed after its commit (say the directory fsync, or mapping
        # the new files ran out of descriptors). Writing on from the older snapshot would reuse
        # its segment and tombstone names and replace committed files: catch up first.
        if mf.read(self.directory).generation != self._manifest.generation:
            self._load(verify=False)

    def _commit(self, man: mf.Manifest) -> None:
        fsync_dir(self.directory)  # renames of the new data files are durable first
        mf.commit(self.directory, man)
        self._install(man)
        collect_garbage(self.directory, man.file_names())

    def append(self, batch: RecordBatch, *, user: Mapping[str, Any] | None = None) -> None:
        """Add records atomically; refuses a wrong format/version, fields or a live duplicate."""
        self._writer()
        arrays = batch.checked(self.schema)
        if len(batch) == 0:
            return
        if np.any(self.locate(r.decode() for r in batch.references) >= 0):
            raise DuplicateReferenceError("a reference in the batch is already in the gallery")
        man = self._manifest
        entry = segment.write(
            self.directory,
            man.next_segment,
            batch.references,
            batch.subjects,
            batch.positions,
            arrays,
        )
        self._commit(
            man.successor(
                next_segment=man.next_segment + 1,
                segments=(*man.segments, entry),
                user=_user(man, user),
            )
        )

    def delete(self, references: Iterable[str], *, user: Mapping[str, Any] | None = None) -> None:
        """Tombstone live records atomically; :class:`UnknownReferenceError` if any is absent."""
        self._writer()
        refs = list(references)
        ids = self.locate(refs)
        if np.any(ids < 0):
            raise UnknownReferenceError("a reference to delete is not in the gallery")
        if len(np.unique(ids)) != len(ids):
            raise DuplicateReferenceError("a reference is listed twice for deletion")
        if not refs:
            return
        starts = np.array([s.offset for s in self._segments], dtype=np.int64)
        seg_idx = np.searchsorted(starts, ids, side="right") - 1
        seg_ids = np.array([s.id for s in self._segments], dtype=np.int64)[seg_idx]
        new = np.stack([seg_ids, ids - starts[seg_idx]], axis=1)
        tombs = np.concatenate([self._tombs, new])
        man = self._manifest
        name = f"tomb-{man.generation + 1:010d}.npy"
        size, digest = save_array(self.directory, name, tombs)
        self._commit(
            man.successor(
                tombstones=mf.FileEntry(name, size, digest),
                tombstone_count=int(tombs.shape[0]),
                user=_user(man, user),
            )
        )

    def compact(self, *, user: Mapping[str, Any] | None = None) -> None:
        """Rewrite the live records into one segment and drop the tombstones, atomically."""
        self._writer()
        self._merge(0, user)

    def tidy(self, *, swap: Callable[[], AbstractContextManager[object]] | None = None) -> int:
        """Keep the segments in size tiers, largest first, at most ``MERGE_FANIN - 1`` of a
        tier; returns the merges made. A last segment of a higher tier than the one before it
        is merged with the smaller ones before it; ``MERGE_FANIN`` trailing segments of one
        tier are merged into one. Appends add a segment each; this keeps their number (and
        the open files) logarithmic in the records while rewriting each record O(log n) times
        in all, whatever the sizes of the appends. Global ids after the merged segments'
        first row change when merged rows were deleted (as after :meth:`compact`).

        ``swap``, when given, is entered only where this handle's snapshot changes (the
        catch-up of :meth:`_writer` and each merge's commit); the merged segment, the long
        part, is written outside it. A caller whose readers share this handle passes its
        exclusive lock, so that they read on while a merge writes. The caller keeps every
        other write to this handle out for the whole call."""
        guard = swap if swap is not None else nullcontext
        with guard():
            self._writer()
        merges = 0
        while True:
            tiers = [_tier(e.count) for e in self._manifest.segments]
            if len(tiers) < 2:
                return merges
            last = tiers[-1]
            if tiers[-2] < last:  # out of order: fold the smaller ones into the last
                run = _trailing([t <= last for t in tiers])
            else:
                run = _trailing([t == last for t in tiers])
                if run < params.MERGE_FANIN:
                    return merges
            self._merge(len(tiers) - run, None, guard)
            merges += 1

    def erase(
        self,
        *,
        swap: Callable[[], AbstractContextManager[object]] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> int:
        """Rewrite each segment that holds deleted records without them, one segment at a
        time, each atomically; returns the segments rewritten. A deletion only tombstones its
        records: their templates stay in the segment files until these are rewritten (by
        this, :meth:`compact` or a merge of :meth:`tidy`). Afterwards no file the gallery
        holds has them; the old files are unlinked (their blocks are the file system's: an
        encrypted volume keeps them unreadable). Global ids after a rewritten segment's
        first row change (as after :meth:`compact`). ``swap``: as for :meth:`tidy`. ``stop``,
        asked before each segment, ends the work early (the rest waits for the next call)."""
        guard = swap if swap is not None else nullcontext
        with guard():
            self._writer()
        # Files an earlier rewrite left when its clean-up failed past its commit (or a crash
        # did): the manifest no longer names them, but they may hold deleted templates.
        collect_garbage(self.directory, self._manifest.file_names())
        rewritten = 0
        while self._tombs.shape[0] and not (stop is not None and stop()):
            holding = int(self._tombs[0, 0])
            index = next(i for i, seg in enumerate(self._segments) if seg.id == holding)
            self._merge(index, None, guard, stop=index + 1)
            rewritten += 1
        return rewritten

    def catch_up(self) -> None:
        """Re-read the manifest if this writable handle fell behind its own failed write
        (see :meth:`_writer`), before reading what the next write will change."""
        self._writer()

    def _merge(
        self,
        start: int,
        user: Mapping[str, Any] | None,
        guard: Callable[[], AbstractContextManager[object]] = nullcontext,
        *,
        stop: int | None = None,
    ) -> None:
        """Rewrite the live records of segments ``start .. stop`` (to the last by default)
        into one segment in their place, atomically; tombstones of those segments go, the
        others' stay. Only the commit runs in ``guard``: until then the new files are names
        no manifest holds (see :meth:`tidy`). The segments' files are checked against their
        SHA-256 first: a rewrite must not give damaged bytes a fresh, valid checksum."""
        man = self._manifest
        end = len(self._segments) if stop is None else stop
        segment.verify_files(self.directory, man.segments[start:end])
        tail = self._segments[start:end]
        keep = [np.flatnonzero(self._alive[s.offset : s.offset + len(s)]) for s in tail]
        parts = [(s, k) for s, k in zip(tail, keep, strict=True) if k.size]
        segments: tuple[mf.SegmentEntry, ...] = ()
        if parts:
            refs = np.concatenate([s.references[k] for s, k in parts])
            subs = np.concatenate([s.subjects[k] for s, k in parts])
            pos = np.concatenate([s.positions[k] for s, k in parts])
            arrays = {
                name: segment.padded_concat([s.arrays[name][k] for s, k in parts], spec.pad)
                for name, spec in self.schema.fields.items()
            }
            segments = (segment.write(self.directory, man.next_segment, refs, subs, pos, arrays),)
        tombs = self._tombs[~np.isin(self._tombs[:, 0], [s.id for s in tail])]
        entry = man.tombstones
        if tombs.shape[0] == 0:
            entry = None
        elif tombs.shape[0] != self._tombs.shape[0]:
            name = f"tomb-{man.generation + 1:010d}.npy"
            size, digest = save_array(self.directory, name, tombs)
            entry = mf.FileEntry(name, size, digest)
        successor = man.successor(
            next_segment=man.next_segment + 1,
            segments=(*man.segments[:start], *segments, *man.segments[end:]),
            tombstones=entry,
            tombstone_count=int(tombs.shape[0]),
            user=_user(man, user),
        )
        with guard():
            self._commit(successor)


def _refuse_unless_empty(path: Path) -> None:
    """Refuse to create a gallery in ``path`` when it holds more than a lock and temporary
    files: a gallery's files without their manifest, or someone else's files (the creation's
    first write would delete them as garbage)."""
    error = mf.absent(path)
    if error.reason != "no_gallery":
        raise error
    others = sorted(n for n in os.listdir(path) if n != LOCK_NAME and not n.startswith(TEMP_PREFIX))
    if others:
        raise GalleryCorruptError(
            f"{path} holds files that are no gallery's ({', '.join(others[:3])}"
            f"{', ...' if len(others) > 3 else ''}): a gallery is created in an empty folder only",
            reason="not_empty",
        )


def _trailing(flags: list[bool]) -> int:
    """How many trailing ``flags`` are true."""
    run = 0
    while run < len(flags) and flags[-1 - run]:
        run += 1
    return run


def _tier(count: int) -> int:
    """Size tier of a segment of ``count`` rows: floor(log_F count), F = MERGE_FANIN."""
    tier, bound = 0, params.MERGE_FANIN
    while count >= bound:
        tier, bound = tier + 1, bound * params.MERGE_FANIN
    return tier


def _user(man: mf.Manifest, user: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if user is None:
        return man.user
    json.dumps(user)  # refuse what the manifest could not store, before writing anything
    return dict(user)


def _concat(parts: list[np.ndarray], dtype: type[np.generic]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
