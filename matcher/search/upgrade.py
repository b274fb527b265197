"""Rebuild a fingerprint gallery written with an earlier field layout of the same matcher
version, from the arrays it already stores: no image is read and no template re-extracted.

The matcher's ``FORMAT``/``VERSION`` name the descriptor definition; the gallery's *fields* may
still grow (``preselect`` replaced ``pooled`` for two-stage search; ``orientation`` was added
for the matcher's orientation-field term). Records of a gallery without ``orientation`` get
none (one background block): the stored arrays do not hold the field, so their orientation
term is 0 until they are enrolled again from an image or an ISO record that carries it.

A gallery of another field set is refused by search with reason ``schema_mismatch``;
:func:`upgrade_fingerprint_gallery` writes a new gallery beside it (live records only, with
the same references, subjects, positions and manifest user data; an old gallery without live
records keeps no user data), then swaps the two directories by rename and removes the old
one.

A crash can stop an upgrade at three points, and :func:`recover_upgrade` (run by every
:func:`galleries_in` caller: the node's ``GallerySet.open`` and ``bdx gallery upgrade``) puts
the folder back: during the rebuild (``X`` and a partial ``X.upgrade``: the partial copy is
removed); between the two renames (``X.old`` and a complete ``X.upgrade``, no ``X``: the new
one takes its place); before the clean-up (``X`` and ``X.old``: the old one is removed). It
takes the writer lock of the gallery an upgrade would hold first, so it never touches an
upgrade that is still running (that one holds the lock: ``gallery_locked``).

Beside ``X.old``, recovery never deletes the only whole copy of the gallery (whole: its
manifest reads and names files that are there and of their kind; checksums are not read).
The new gallery (``X``, or ``X.upgrade`` where there is no ``X``) stays when it is whole and
``X.old`` goes; where only ``X.old`` is whole, it is renamed back to ``X`` if that name is
free (a damaged ``X.upgrade`` is a partial rebuild and goes). Anything else is refused with
``interrupted_upgrade`` (exit 7) and nothing changed: neither is whole (restore from a
backup), ``X`` is damaged while ``X.old`` is whole (the operator moves ``X`` away and
renames ``X.old`` back: recovery deletes no folder it cannot tell is a copy), or both are
whole with the same fields (no upgrade leaves that: an operator's copy named ``X.old``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from matcher.errors import GalleryError
from matcher.fingerprint import match
from matcher.gallery import Block, Gallery, GallerySchema, RecordBatch
from matcher.gallery.errors import GalleryCorruptError, IncompatibleFormatError
from matcher.gallery.files import WriterLock
from matcher.search import preselect
from matcher.search.fingerprint import DESCRIPTOR_DTYPE, fingerprint_schema, stored_fields

#: Fields every stored layout of this matcher version has; the rest is derived from them.
BASE_FIELDS = ("descriptors", "inv_norm", "geometry", "counts")


def needs_upgrade(gallery: Gallery) -> bool:
    """Whether ``gallery`` holds this matcher's templates in an older field layout."""
    current = fingerprint_schema()
    schema = gallery.schema
    if schema.modality != "fingerprint" or dict(schema.fields) == dict(current.fields):
        return False
    schema.check_format(current.format, current.format_version)
    missing = [f for f in BASE_FIELDS if f not in schema.fields]
    if missing:
        raise IncompatibleFormatError(f"gallery lacks the fields {missing}; it cannot be rebuilt")
    return True


def _segment_batch(old: Gallery, seg: Block) -> RecordBatch:
    """The live rows of one segment (a block of ``old``) as a batch of the current layout."""
    live = np.flatnonzero(seg.alive)
    refs, subjects, positions = old.resolve(seg.start + live)
    arrays = seg.arrays
    desc = np.asarray(arrays["descriptors"])[live]
    inv = np.asarray(arrays["inv_norm"])[live]
    geo = np.asarray(arrays["geometry"])[live]
    counts = np.asarray(arrays["counts"])[live]
    if "orientation" in arrays:
        field = np.asarray(arrays["orientation"])[live]
    else:
        field = stored_fields([None] * live.size)
    rows = [
        preselect.gallery_rows(
            match.SearchTemplate(desc[i, :c].astype(np.float32), inv[i, :c], geo[i, :c])
        )
        for i, c in enumerate(counts.tolist())
    ]
    d = desc.shape[2]
    fields = {
        "descriptors": desc.astype(DESCRIPTOR_DTYPE),
        "inv_norm": inv,
        "geometry": geo,
        "counts": counts,
        "orientation": field,
        "preselect": np.stack(rows) if rows else np.zeros((0, *_preselect_shape(d)), np.uint8),
    }
    schema = fingerprint_schema()
    return RecordBatch.build(
        refs,
        subjects,
        positions,
        fields,
        format=schema.format,
        format_version=schema.format_version,
    )


def _preselect_shape(d: int) -> tuple[int, int]:
    shape = fingerprint_schema().fields["preselect"].shape
    return int(shape[0]), preselect.reduced_length(d)


#: Name suffixes of an upgrade's working folders beside the gallery ``X``.
REBUILD_SUFFIX = ".upgrade"
RETIRED_SUFFIX = ".old"


def recover_upgrade(directory: Path) -> None:
    """Finish or undo an upgrade of ``directory`` that a crash interrupted (module doc);
    :class:`GalleryCorruptError` ``interrupted_upgrade`` where that would risk the only whole
    copy of the gallery."""
    fresh = directory.with_name(directory.name + REBUILD_SUFFIX)
    retired = directory.with_name(directory.name + RETIRED_SUFFIX)
    if retired.exists():
        # The lock alone (not Gallery.open): a clean-up cut short leaves the retired copy
        # half-deleted, manifest or segment files gone, and it must still go.
        lock = WriterLock(retired)  # no upgrade is running on it
        try:
            retire = _settle(directory, fresh, retired)
        finally:
            lock.release()
        if retire:
            shutil.rmtree(retired)
    if fresh.exists():
        with Gallery.open(directory, writable=True):  # no upgrade is rebuilding it
            shutil.rmtree(fresh)


def _whole(path: Path) -> GallerySchema | GalleryError:
    """The schema of the gallery at ``path`` when it is whole (its manifest reads, and every
    file it names is there and of its kind; no checksum is read), else why it is not."""
    try:
        with Gallery.open(path, verify=False) as gallery:
            return gallery.schema
    except GalleryError as exc:
        return exc


def _settle(directory: Path, fresh: Path, retired: Path) -> bool:
    """Put the whole gallery of an interrupted upgrade at ``directory`` (module doc); whether
    ``retired`` is then to be removed."""
    new = directory if directory.exists() else fresh
    got_new, got_old = _whole(new), _whole(retired)
    if isinstance(got_new, GallerySchema):
        if isinstance(got_old, GallerySchema) and dict(got_old.fields) == dict(got_new.fields):
            raise _unsettled(
                f"{retired} beside {new} is a whole gallery of the same fields, which no "
                f"upgrade leaves: move one of them out of {retired.parent}"
            )
        if new == fresh:
            fresh.rename(directory)
        return True
    if not isinstance(got_old, GallerySchema):
        raise _unsettled(
            f"neither {new} ({got_new.reason}) nor {retired} ({got_old.reason}), the gallery "
            "before an interrupted upgrade, is a whole gallery: restore it from a backup"
        )
    if new == directory:
        raise _unsettled(
            f"{directory} is no whole gallery ({got_new.reason}) but {retired}, the gallery "
            f"before an interrupted upgrade, is: move {directory.name} away, rename "
            f"{retired.name} to {directory.name} and run bdx gallery upgrade again"
        )
    retired.rename(directory)  # a damaged rebuild left at ``fresh`` goes as a partial one
    return False


def _unsettled(message: str) -> GalleryCorruptError:
    return GalleryCorruptError(message, reason="interrupted_upgrade")


def galleries_in(root: Path) -> list[Path]:
    """The gallery folders under ``root`` after recovering interrupted upgrades, sorted;
    an upgrade's working folders are never listed."""
    if not root.is_dir():
        return []
    leftovers = (REBUILD_SUFFIX, RETIRED_SUFFIX)
    for base in sorted(
        {
            p.with_name(p.name.removesuffix(x))
            for p in root.iterdir()
            for x in leftovers
            if p.name.endswith(x)
        }
    ):
        recover_upgrade(base)
    return gallery_dirs(root)


def gallery_dirs(root: Path) -> list[Path]:
    """The gallery folders under ``root`` as they are, sorted (no recovery: for readers)."""
    if not root.is_dir():
        return []
    leftovers = (REBUILD_SUFFIX, RETIRED_SUFFIX)
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.endswith(leftovers))


def upgrade_fingerprint_gallery(
    directory: Path, progress: Callable[[int, int], None] | None = None
) -> int:
    """Rebuild the gallery at ``directory`` in the current layout when it needs it; returns
    the number of live records carried over (0 when it was current). Holds the gallery's
    writer lock throughout, so no node may have it open. ``progress(done, total)`` is called
    after each segment."""
    with Gallery.open(directory, writable=True) as old:
        if not needs_upgrade(old):
            return 0
        fresh = directory.with_name(directory.name + REBUILD_SUFFIX)
        shutil.rmtree(fresh, ignore_errors=True)
        segments = old.blocks(max(old.size, 1))
        with Gallery.create(fresh, fingerprint_schema()) as new:
            for i, seg in enumerate(segments):
                new.append(_segment_batch(old, seg), user=dict(old.user))
                if progress is not None:
                    progress(i + 1, len(segments))
            carried = len(new)
        retired = directory.with_name(directory.name + RETIRED_SUFFIX)
        if retired.exists():  # recovery settles it first; never deleted unseen
            raise _unsettled(f"{retired} is in the way of the upgrade of {directory}")
        directory.rename(retired)
        fresh.rename(directory)
    shutil.rmtree(retired)
    return carried
