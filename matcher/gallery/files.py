"""Durable file primitives: write-temp/fsync/rename, directory fsync, checksums, writer lock."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from matcher.gallery.errors import GalleryCorruptError, GalleryError, GalleryLockedError

TEMP_PREFIX = ".tmp-"
LOCK_NAME = "LOCK"


def fsync_dir(directory: Path) -> None:
    """Make renames and unlinks inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def reading(name: str) -> Iterator[None]:
    """Reads of the gallery file ``name``: the file system's refusal (no permission, a folder
    in its place, an I/O error) is :class:`GalleryCorruptError` ``unreadable_gallery_file``
    (exit 7, the node's storage), not a raw OSError. A missing file goes on as
    FileNotFoundError: the caller tells a file a writer replaced meanwhile from a lost one."""
    try:
        yield
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise GalleryCorruptError(
            f"cannot read {name}: {exc.strerror or type(exc).__name__}",
            reason="unreadable_gallery_file",
        ) from exc


#: The first bytes of every .npy file (``np.lib.format.MAGIC_PREFIX``).
NPY_MAGIC = b"\x93NUMPY"


def load_array(directory: Path, name: str, reason: str, *, mmap: bool = False) -> np.ndarray:
    """The .npy array in ``directory / name``, memory-mapped read-only with ``mmap``; never
    unpickled. A file that holds no whole .npy array (garbage, an archive, a header cut short)
    is :class:`GalleryCorruptError` ``reason`` naming the file: np.load's ValueError or
    EOFError came out raw, and it took a file without the .npy magic for a pickle. Read
    errors are as :func:`reading` says."""
    path = directory / name
    with reading(name):
        with path.open("rb") as fh:
            magic = fh.read(len(NPY_MAGIC))
        if magic != NPY_MAGIC:
            raise GalleryCorruptError(f"{name}: not a .npy array file", reason=reason)
        try:
            array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, EOFError) as exc:
            raise GalleryCorruptError(f"{name}: damaged .npy file: {exc}", reason=reason) from None
    if not isinstance(array, np.ndarray):  # replaced since the magic was read
        array.close()
        raise GalleryCorruptError(f"{name}: not a .npy array file", reason=reason)
    return array


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in large chunks (hashlib releases the GIL on them)."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _write_durably(directory: Path, name: str, write: object) -> tuple[int, str]:
    """Write via ``write(fh)`` to a temp name, fsync, rename to ``name``; (size, sha256).

    The caller fsyncs the directory once after all renames of one operation.
    """
    tmp = directory / f"{TEMP_PREFIX}{secrets.token_hex(8)}-{name}"
    digest = hashlib.sha256()
    with tmp.open("wb") as raw:
        fh = _HashingWriter(raw, digest)
        write(fh)  # type: ignore[operator]
        raw.flush()
        os.fsync(raw.fileno())
        size = raw.tell()
    os.rename(tmp, directory / name)
    return size, digest.hexdigest()


def save_array(directory: Path, name: str, array: np.ndarray) -> tuple[int, str]:
    """Durably write ``array`` as a .npy file called ``name``; return (size, sha256)."""
    return _write_durably(
        directory, name, lambda fh: np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
    )


def save_bytes(directory: Path, name: str, data: bytes) -> tuple[int, str]:
    """Durably write ``data`` to ``name``; return (size, sha256)."""
    return _write_durably(directory, name, lambda fh: fh.write(data))


class _HashingWriter:
    """File-like wrapper hashing what goes through it (so no second read to checksum)."""

    def __init__(self, raw: IO[bytes], digest: hashlib._Hash) -> None:
        self._raw = raw
        self._digest = digest

    def write(self, data: bytes | memoryview) -> int:
        self._digest.update(data)
        return self._raw.write(data)

    def tell(self) -> int:
        return self._raw.tell()

    def seek(self, *args: int) -> int:  # np.save only seeks for non-contiguous writes
        raise OSError("not seekable")

    def flush(self) -> None:
        self._raw.flush()


class WriterLock:
    """An exclusive ``fcntl.flock`` on ``<dir>/LOCK``, held for the life of a writable handle.

    The kernel drops it when the process dies, so a killed writer never leaves a stale lock.
    """

    def __init__(self, directory: Path) -> None:
        self._fd: int | None = None
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise GalleryLockedError(f"another process is writing {directory}") from exc
            raise GalleryError(f"cannot lock {directory}: {exc.strerror}") from exc
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def collect_garbage(directory: Path, keep: set[str]) -> list[str]:
    """Delete files of interrupted or superseded writes: everything not in ``keep``.

    Only called with the writer lock held. Returns the names removed.
    """
    removed = []
    for entry in os.scandir(directory):
        if entry.name in keep or entry.name == LOCK_NAME or not entry.is_file():
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
            removed.append(entry.name)
    if removed:
        fsync_dir(directory)
    return removed


__all__ = [
    "LOCK_NAME",
    "WriterLock",
    "collect_garbage",
    "fsync_dir",
    "load_array",
    "reading",
    "save_array",
    "save_bytes",
    "sha256_file",
]
