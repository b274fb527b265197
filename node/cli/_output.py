"""The command's standard output: its failures are not the node's storage.

``main`` puts :class:`GuardedStdout` in front of ``sys.stdout``: a write or flush that fails
with an OS error other than a departed reader (EPIPE: exit 0, README, "Exit codes"), such as
``bdx users list >/dev/full``, becomes :class:`OutputError` (exit 2, ``no_output``) instead of
an ``OSError`` that ``main`` would report as the node's storage failing (exit 7).
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any, TextIO

from node.errors import ConfigError


class OutputError(ConfigError):
    """Standard output is closed or cannot be written (full, I/O error): exit 2, as a usage
    error (where the output goes is the caller's choice), ``no_output``."""

    default_reason = "no_output"


def output_failed(exc: OSError) -> OutputError:
    """The :class:`OutputError` for ``exc``, raised writing standard output."""
    return OutputError(f"cannot write standard output: {exc.strerror or exc}")


def discard_stdout() -> None:
    """Point the file descriptor of stdout at /dev/null: what is left in its buffer (a write
    that failed stays there) then goes nowhere at the interpreter's last flush instead of
    failing again there (an "Exception ignored" message and exit 120)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # closed, or not a file (a test's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class GuardedStdout:
    """A text stream in front of ``stream`` whose OS errors, EPIPE excepted, are
    :class:`OutputError`; everything else is the stream's own."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except OSError as exc:
            raise _unless_reader_gone(exc) from exc

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError as exc:
            raise _unless_reader_gone(exc) from exc

    @property
    def buffer(self) -> _GuardedBinary:
        """The binary stream below, guarded alike (click writes there itself when the text
        stream's encoding is ASCII)."""
        return _GuardedBinary(self.stream.buffer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


class _GuardedBinary:
    """:class:`GuardedStdout` for the binary stream below it."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, data: bytes) -> int:
        try:
            written: int = self.stream.write(data)
        except OSError as exc:
            raise _unless_reader_gone(exc) from exc
        return written

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError as exc:
            raise _unless_reader_gone(exc) from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _unless_reader_gone(exc: OSError) -> OutputError:
    """Re-raise ``exc`` when the reader left (EPIPE: main's and typer's own handling), else
    return its :class:`OutputError` (whoever reports it calls :func:`discard_stdout`: a probe
    may swallow it, as click's does with an empty write, and the output must then go on)."""
    if exc.errno == errno.EPIPE:
        raise exc
    return output_failed(exc)
