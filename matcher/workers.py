"""Worker processes that do not outlive the process that started them, and how many to run.

A process pool's workers are separate processes: when their parent is killed (a crash, an
operator's ``kill -9`` in the middle of a bulk load) nothing tells them, and a worker busy with
an image, or waiting on its task queue, can linger for minutes holding memory and CPU.
:func:`exit_with_parent` is a pool initializer (or the first call of one) that starts a daemon
thread which ends the worker as soon as its parent is gone (the kernel re-parents orphans, so
``os.getppid()`` changes). It also makes Ctrl-C end the worker quietly: the terminal
interrupts the whole process group, and the parent, interrupted too, reports it once.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

#: Seconds between checks of the parent: an orphan is gone within about this long, and one
#: ``getppid`` call a second costs nothing measurable.
PARENT_POLL_S = 1.0
#: Exit status of a worker ended because its parent was gone.
EXIT_ORPHANED = 70
#: Exit status of a worker ended by Ctrl-C (SIGINT), as a shell reports it.
EXIT_INTERRUPTED = 130
#: Environment variable by which :func:`spawning_uninterrupted` tells the workers it starts
#: whether their parent ignores Ctrl-C.
PARENT_IGNORES_CTRL_C = "BDX_PARENT_IGNORES_SIGINT"


def usable_cpus() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one): the
    number of CPU-bound workers or threads worth running at once."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def exit_with_parent(poll_s: float = PARENT_POLL_S) -> None:
    """Pool initializer: end this process (``os._exit``) once its parent process is gone, or
    at Ctrl-C without a traceback of its own."""
    parent = os.getppid()
    if os.environ.get(PARENT_IGNORES_CTRL_C) != "1":  # a background job's workers ignore it too
        signal.signal(signal.SIGINT, _interrupted)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="bdx-parent-watch", daemon=True).start()


def _interrupted(signum: int, frame: FrameType | None) -> None:
    os._exit(EXIT_INTERRUPTED)


@contextmanager
def spawning_uninterrupted() -> Iterator[None]:
    """Around the calls that start a pool's workers (a ``ProcessPoolExecutor`` starts them on
    ``submit``): Ctrl-C is ignored meanwhile, and a spawned worker inherits that until
    :func:`exit_with_parent` takes over, so a worker interrupted while it imports prints no
    traceback. Only in the main thread, where signal handlers can be set."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Workers inherit the environment: one started by a process that ignores Ctrl-C (a shell's
    # background job) keeps ignoring it, instead of dying alone and failing the pool.
    os.environ[PARENT_IGNORES_CTRL_C] = "1" if before is signal.SIG_IGN else "0"
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
