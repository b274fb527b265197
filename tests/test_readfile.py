"""``matcher.readfile``: the bounded, FIFO-safe read of files users and settings name."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from matcher.readfile import FileTooLargeError, NotRegularFileError, read_bounded
from tests.fifo_support import FIFO_WAIT_S, fifo_released_after


def test_a_regular_file_is_read_up_to_its_bound(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    assert read_bounded(path, 10) == b"x" * 10
    with pytest.raises(FileTooLargeError) as info:
        read_bounded(path, 9)
    assert (info.value.size, info.value.limit) == (10, 9)
    assert info.value.strerror == "too large: 10 bytes, over the limit of 9 bytes"


def test_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    with fifo_released_after(fifo) as took, pytest.raises(NotRegularFileError) as info:
        read_bounded(fifo, 1024)
    assert took[0] < FIFO_WAIT_S and info.value.strerror == "not a regular file"


def test_a_device_and_a_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NotRegularFileError, match="not a regular file"):
        read_bounded("/dev/zero", 1024)
    with pytest.raises(NotRegularFileError) as info:
        read_bounded(tmp_path, 1024)
    assert info.value.strerror == os.strerror(errno.EISDIR)  # as reading a folder says it


def test_a_device_named_on_the_command_line_is_read_no_further_than_the_bound() -> None:
    with pytest.raises(FileTooLargeError) as info:
        read_bounded("/dev/zero", 1024, regular_only=False)
    assert info.value.size is None
    assert info.value.strerror == "too large: over the limit of 1024 bytes"


def test_a_missing_file_is_the_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_bounded(tmp_path / "none", 1024)
