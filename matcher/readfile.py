"""Reading a file a user or a setting names: bounded, and never waiting on a pipe.

``Path.read_bytes()`` on such a path read ``/dev/zero`` without end, and waited forever on a
FIFO with no writer (opening one blocks until a writer comes). :func:`open_regular` opens the
path with ``O_NONBLOCK`` (a FIFO opens at once), checks the descriptor it opened with
``fstat`` (the file opened, not the name: no race) and refuses anything but a regular file
(:class:`NotRegularFileError`); a regular file is set back to blocking. :func:`read_bounded`
then reads at most ``max_bytes`` + 1 bytes: one too many is :class:`FileTooLargeError`, also
for a file that grows meanwhile.

Both errors are :class:`OSError` subclasses with a ``strerror``, so a caller's ``except
FileNotFoundError`` / ``except OSError`` keeps working and its message stays one line; a
caller that tells a file too large apart (``file_too_large``) catches
:class:`FileTooLargeError` first. No message quotes a byte of the file.

This module is in ``matcher``, the bottom layer (see :mod:`matcher.errors`), so that
``certs``, ``policy`` and ``node`` read their files through it alike.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

PathLike = str | os.PathLike[str]


class NotRegularFileError(OSError):
    """The path names a folder, a FIFO, a socket or a device, not a regular file."""


class FileTooLargeError(OSError):
    """The file holds more than ``limit`` bytes; ``size`` is what it stated (None for a file
    that grew past the limit while it was read)."""

    def __init__(self, limit: int, size: int | None = None) -> None:
        said = f"{size} bytes, over" if size is not None else "over"
        super().__init__(errno.EFBIG, f"too large: {said} the limit of {limit} bytes")
        self.limit = limit
        self.size = size

    @property
    def said(self) -> str:
        """``N bytes`` when the size is known, else ``over LIMIT bytes``."""
        return f"{self.size} bytes" if self.size is not None else f"over {self.limit} bytes"


def _not_regular(mode: int) -> NotRegularFileError:
    if stat.S_ISDIR(mode):  # said as the OS says it when a folder is read
        return NotRegularFileError(errno.EISDIR, os.strerror(errno.EISDIR))
    return NotRegularFileError(errno.EINVAL, "not a regular file")


def open_regular(path: PathLike) -> BinaryIO:
    """``path`` opened for reading in binary; :class:`NotRegularFileError` at once for a FIFO
    (no writer is waited for), a device or a folder, the OS's :class:`OSError` otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode  # the file opened, not the name: no race
        if not stat.S_ISREG(mode):
            raise _not_regular(mode)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: PathLike, max_bytes: int, *, regular_only: bool = True) -> bytes:
    """The bytes of ``path``, at most ``max_bytes`` of them (:class:`FileTooLargeError`
    beyond). With ``regular_only`` (the default) anything but a regular file is refused at once
    (:func:`open_regular`); without it a pipe or device the user named on the command line is
    read as ``cat`` would, waiting for a FIFO's writer, and bounded alike (``/dev/zero``)."""
    with open_regular(path) if regular_only else open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size  # 0 for a pipe or device
        if size > max_bytes:
            raise FileTooLargeError(max_bytes, size)
        data = fh.read(max_bytes + 1)  # bounded even if the file grows meanwhile
    if len(data) > max_bytes:
        raise FileTooLargeError(max_bytes)
    return data
