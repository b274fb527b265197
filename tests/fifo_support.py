"""A FIFO with no writer, for tests that a path naming one is refused at once.

Opening a FIFO for reading waits for a writer. Code that did so hung forever; a test of it
must not: :func:`fifo_released_after` opens (and closes at once) a writer after ``seconds``,
so a blocked reader goes on (reading nothing) and the test fails on its time, not by hanging.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

#: Seconds a read of a FIFO path may take before it counts as blocked (refusing it takes
#: microseconds).
FIFO_WAIT_S = 5.0


@contextlib.contextmanager
def fifo_released_after(fifo: Path, seconds: float = FIFO_WAIT_S) -> Iterator[list[float]]:
    """Make ``fifo``; yields a list that holds, once the block is left, the seconds it took.
    Any reader still waiting on the FIFO after ``seconds`` is released by a writer that
    writes nothing."""
    os.mkfifo(fifo)
    done = threading.Event()

    def release() -> None:
        if done.wait(seconds):
            return
        while not done.is_set():  # ENXIO until a reader has the FIFO open
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            time.sleep(0.05)

    releaser = threading.Thread(target=release, daemon=True)
    releaser.start()
    took: list[float] = []
    start = time.monotonic()
    try:
        yield took
    finally:
        took.append(time.monotonic() - start)
        done.set()
        releaser.join()
