"""Immutable segments: a sorted run of records stored as .npy files, memory-mapped on open."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from matcher.gallery import params
from matcher.gallery.errors import GalleryCorruptError
from matcher.gallery.files import load_array, reading, save_array, sha256_file
from matcher.gallery.manifest import FileEntry, Manifest, SegmentEntry
from matcher.gallery.schema import GallerySchema

#: Per-segment columns besides the schema's fields; field files are ``f_<name>``.
META_COLUMNS = ("ref", "subject", "position")


def field_key(name: str) -> str:
    return f"f_{name}"


@dataclass(frozen=True, eq=False)
class Segment:
    """A segment as seen by one handle: references (n,) sorted ``S``, subjects (n,) ``S``,
    positions (n,) int8, field arrays (n, ...) (read-only views of memory maps), ``offset`` =
    global id of its first row in this handle's snapshot. ``derived``: what readers compute
    from the (immutable) fields and keep while the segment is in the gallery, such as a search
    layout; a refreshed handle hands it on to the same segment's next view."""

    id: int
    offset: int
    references: np.ndarray
    subjects: np.ndarray
    positions: np.ndarray
    arrays: Mapping[str, np.ndarray]
    derived: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.references.shape[0])

    def find(self, refs: np.ndarray) -> np.ndarray:
        """Row of each of ``refs`` (m,) in this segment, or -1; vectorised binary search."""
        n = len(self)
        if n == 0:
            return np.full(refs.shape[0], -1, dtype=np.int64)
        idx = np.searchsorted(self.references, refs)
        clipped = np.minimum(idx, n - 1)
        hit = (idx < n) & (self.references[clipped] == refs)
        return np.where(hit, clipped, -1).astype(np.int64)


def write(
    directory: Path,
    segment_id: int,
    references: np.ndarray,
    subjects: np.ndarray,
    positions: np.ndarray,
    arrays: Mapping[str, np.ndarray],
) -> SegmentEntry:
    """Durably write a segment (records sorted by reference here); caller fsyncs the dir."""
    order = np.argsort(references, kind="stable")
    columns = {
        "ref": references[order],
        "subject": subjects[order],
        "position": positions[order].astype(np.int8),
    }
    columns.update({field_key(k): v[order] for k, v in arrays.items()})
    files = {}
    for key, arr in columns.items():
        name = f"seg-{segment_id:08d}.{key}.npy"
        size, digest = save_array(directory, name, arr)
        files[key] = FileEntry(name, size, digest)
    return SegmentEntry(segment_id, int(references.shape[0]), files)


def verify(directory: Path, manifest: Manifest) -> None:
    """Check size and SHA-256 of every file the manifest names (hashed on several threads)."""
    extra = () if manifest.tombstones is None else (manifest.tombstones,)
    verify_files(directory, manifest.segments, extra)


def verify_files(
    directory: Path, segments: Sequence[SegmentEntry], extra: Sequence[FileEntry] = ()
) -> None:
    """Check size and SHA-256 of the files of ``segments`` and ``extra`` (several threads);
    raise :class:`GalleryCorruptError` (``bad_checksum``) at the first that differs
    (``unreadable_gallery_file`` for one that cannot be read)."""
    entries = [f for s in segments for f in s.files.values()] + list(extra)

    def check(entry: FileEntry) -> None:
        path = directory / entry.name
        with reading(entry.name):
            same = path.stat().st_size == entry.size and sha256_file(path) == entry.sha256
        if not same:
            raise GalleryCorruptError(f"checksum mismatch in {entry.name}", reason="bad_checksum")

    with ThreadPoolExecutor(params.VERIFY_THREADS) as pool:
        list(pool.map(check, entries))


def load(directory: Path, schema: GallerySchema, entry: SegmentEntry, offset: int) -> Segment:
    """Memory-map a segment's files and check their shapes and dtypes against the schema;
    :class:`GalleryCorruptError` for a file that is not the segment's or cannot be read."""
    expected = set(META_COLUMNS) | {field_key(k) for k in schema.fields}
    if set(entry.files) != expected:
        raise GalleryCorruptError(f"segment {entry.id}: wrong file set", reason="bad_segment")
    cols = {}
    for key, f in entry.files.items():
        arr = load_array(directory, f.name, "bad_segment", mmap=True)
        if arr.shape[:1] != (entry.count,):
            raise GalleryCorruptError(f"{f.name}: wrong record count", reason="bad_segment")
        # A plain ndarray view of the map (which it keeps alive): np.memmap's Python-level
        # __getitem__ / __array_finalize__ ran on every slice and index of a search.
        cols[key] = arr.view(np.ndarray)
    arrays = {}
    for name, spec in schema.fields.items():
        arr = cols[field_key(name)]
        if arr.dtype != np.dtype(spec.dtype) or not spec.matches(arr.shape[1:]):
            raise GalleryCorruptError(f"segment {entry.id}: field {name} bad", reason="bad_segment")
        arrays[name] = arr
    if cols["ref"].dtype.kind != "S" or cols["position"].dtype != np.int8:
        raise GalleryCorruptError(f"segment {entry.id}: bad columns", reason="bad_segment")
    return Segment(entry.id, offset, cols["ref"], cols["subject"], cols["position"], arrays)


def padded_concat(parts: list[np.ndarray], pad: float) -> np.ndarray:
    """Concatenate (n_i, ...) arrays along rows, padding ragged dims to the maximum with ``pad``."""
    if not parts:
        raise ValueError("nothing to concatenate")
    shape = tuple(max(p.shape[d] for p in parts) for d in range(1, parts[0].ndim))
    out = np.full((sum(p.shape[0] for p in parts), *shape), pad, dtype=parts[0].dtype)
    row = 0
    for p in parts:
        out[(slice(row, row + p.shape[0]), *(slice(0, s) for s in p.shape[1:]))] = p
        row += p.shape[0]
    return out
