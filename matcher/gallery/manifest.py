"""The manifest: the single source of truth for which files make up a gallery generation.

It is JSON with a SHA-256 over its canonical body, written to a temp file, fsynced, swapped in
with ``os.replace`` and followed by a directory fsync. Readers open only the files it names and
check each file's size and checksum, so a reader sees one whole generation or an error.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from matcher.gallery.errors import GalleryCorruptError, GalleryError
from matcher.gallery.files import fsync_dir, save_bytes
from matcher.gallery.schema import GallerySchema

MANIFEST_NAME = "MANIFEST.json"
MAGIC = "bdx-gallery"
LAYOUT_VERSION = 1
#: Name prefixes of a gallery's data files (segment columns, tombstones; see
#: :mod:`matcher.gallery.store`): a folder holding one but no manifest lost its manifest.
DATA_PREFIXES = ("seg-", "tomb-")


@dataclass(frozen=True)
class FileEntry:
    """A file of the generation: its name, size in bytes and SHA-256."""

    name: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "sha256": self.sha256}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> FileEntry:
        return cls(str(obj["name"]), int(obj["size"]), str(obj["sha256"]))


@dataclass(frozen=True)
class SegmentEntry:
    """One immutable segment: id, record count and its files (``ref``, ``subject``,
    ``position`` and one per schema field)."""

    id: int
    count: int
    files: Mapping[str, FileEntry]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "count": self.count,
            "files": {k: v.to_json() for k, v in sorted(self.files.items())},
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> SegmentEntry:
        files = {str(k): FileEntry.from_json(v) for k, v in obj["files"].items()}
        return cls(int(obj["id"]), int(obj["count"]), files)


@dataclass(frozen=True)
class Manifest:
    """Generation ``generation`` of a gallery; ``user`` is caller metadata committed with it."""

    schema: GallerySchema
    generation: int = 0
    next_segment: int = 1
    segments: tuple[SegmentEntry, ...] = ()
    tombstones: FileEntry | None = None
    tombstone_count: int = 0
    user: Mapping[str, Any] = field(default_factory=dict)

    def file_names(self) -> set[str]:
        names = {f.name for s in self.segments for f in s.files.values()}
        if self.tombstones is not None:
            names.add(self.tombstones.name)
        return names | {MANIFEST_NAME}

    def successor(self, **changes: Any) -> Manifest:
        return replace(self, generation=self.generation + 1, **changes)

    def body(self) -> dict[str, Any]:
        return {
            "magic": MAGIC,
            "layout_version": LAYOUT_VERSION,
            "generation": self.generation,
            "next_segment": self.next_segment,
            "schema": self.schema.to_json(),
            "segments": [s.to_json() for s in self.segments],
            "tombstones": None if self.tombstones is None else self.tombstones.to_json(),
            "tombstone_count": self.tombstone_count,
            "user": dict(self.user),
        }


def _canonical(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def encode(manifest: Manifest) -> bytes:
    body = manifest.body()
    digest = hashlib.sha256(_canonical(body)).hexdigest()
    return _canonical({"body": body, "sha256": digest}) + b"\n"


def decode(data: bytes) -> Manifest:
    """Parse and verify a manifest; :class:`GalleryCorruptError` on any damage."""
    try:
        outer = json.loads(data)
        body = outer["body"]
        if hashlib.sha256(_canonical(body)).hexdigest() != outer["sha256"]:
            raise GalleryCorruptError("manifest checksum mismatch", reason="corrupt_manifest")
        if body["magic"] != MAGIC:
            raise GalleryCorruptError("not a bdx gallery manifest", reason="corrupt_manifest")
        if body["layout_version"] != LAYOUT_VERSION:
            raise GalleryError(
                f"gallery layout v{body['layout_version']} is not supported",
                reason="unsupported_layout",
            )
        tomb = body["tombstones"]
        return Manifest(
            schema=GallerySchema.from_json(body["schema"]),
            generation=int(body["generation"]),
            next_segment=int(body["next_segment"]),
            segments=tuple(SegmentEntry.from_json(s) for s in body["segments"]),
            tombstones=None if tomb is None else FileEntry.from_json(tomb),
            tombstone_count=int(body["tombstone_count"]),
            user=dict(body["user"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise GalleryCorruptError(
            f"manifest does not parse: {exc}", reason="corrupt_manifest"
        ) from exc


def read(directory: Path) -> Manifest:
    """The manifest of ``directory``: :class:`GalleryError` ``no_gallery`` when there is none,
    :class:`GalleryCorruptError` when it cannot be read or parsed."""
    try:
        data = (directory / MANIFEST_NAME).read_bytes()
    except FileNotFoundError as exc:
        raise absent(directory) from exc
    except OSError as exc:  # a folder in its place, no permission, an I/O error
        raise GalleryCorruptError(
            f"cannot read {directory / MANIFEST_NAME}: {exc.strerror}",
            reason="unreadable_manifest",
        ) from exc
    return decode(data)


def absent(directory: Path) -> GalleryError:
    """The error for ``directory`` without a manifest: :class:`GalleryError` ``no_gallery``
    when it holds no gallery data (or is no folder), :class:`GalleryCorruptError`
    ``missing_manifest`` when segment or tombstone files are there: a gallery that lost its
    manifest, whose files a writer creating a gallery there would take for garbage."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        names = []
    held = sorted(name for name in names if name.startswith(DATA_PREFIXES))
    if held:
        more = f" and {len(held) - 1} more" if len(held) > 1 else ""
        return GalleryCorruptError(
            f"{directory} holds gallery files ({held[0]}{more}) but no {MANIFEST_NAME}: "
            "restore the folder from a backup",
            reason="missing_manifest",
        )
    return GalleryError(f"no gallery at {directory}", reason="no_gallery")


def commit(directory: Path, manifest: Manifest) -> None:
    """Durably replace the manifest: temp file, fsync, ``os.replace``, directory fsync."""
    tmp_name = f".tmp-manifest-{os.getpid()}-{manifest.generation}"
    save_bytes(directory, tmp_name, encode(manifest))
    os.replace(directory / tmp_name, directory / MANIFEST_NAME)
    fsync_dir(directory)
