"""Kill a writer with SIGKILL at random points; the gallery must hold exactly the state before
or after the interrupted operation, never a mix, and reopen with every checksum intact."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from matcher.gallery import Gallery
from tests.gallery.crash_ops import expected

KILLS = 40
#: Each kill comes after the writer announced 2..MAX_STARTS operations (so progress does not
#: depend on the machine's load), plus a random delay that lands it inside or between them.
MAX_STARTS = 6
MAX_DELAY_S = 0.01
ROOT = Path(__file__).resolve().parents[2]


def _check(directory: Path, ops: int) -> None:
    want = expected(ops)
    with Gallery.open(directory, verify=True) as g:
        assert len(g) == len(want)
        for ref, (subject, position, xy) in want.items():
            rec = g.lookup(ref)
            assert (rec.subject, rec.position) == (subject, position)
            got = rec.arrays["xy"]
            np.testing.assert_array_equal(got[: xy.shape[0]], xy)
            np.testing.assert_array_equal(got[xy.shape[0] :], 0)


def test_sigkill_writer_leaves_old_or_new_state(tmp_path: Path) -> None:
    rnd = random.Random(1234)
    directory = tmp_path / "g"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    committed = 0
    mid_operation = 0
    for _ in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests/gallery/crash_writer.py"), str(directory)],
            stdout=subprocess.PIPE,
            env=env,
            cwd=ROOT,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        seen = [proc.stdout.readline() for _ in range(rnd.randint(2, MAX_STARTS))]
        time.sleep(rnd.uniform(0, MAX_DELAY_S))
        proc.send_signal(signal.SIGKILL)
        out = "".join(seen).split() + proc.stdout.read().split()
        proc.wait()
        proc.stdout.close()
        started = [int(x) for x in out[1::2]]
        with Gallery.open(directory) as g:
            ops = int(g.user.get("ops", 0))
        last = started[-1] if started else committed
        assert ops in (last, last + 1), (ops, last)
        assert ops >= committed
        mid_operation += ops == last and bool(started)
        committed = ops
        _check(directory, ops)
    assert committed >= KILLS  # seeing "start i" means operations before i were committed
    assert mid_operation > 0  # and some kills landed inside an operation
    with Gallery.open(directory, writable=True) as g:  # garbage of the last kill is collected
        names = {p.name for p in directory.iterdir()}
        assert not any(n.startswith(".tmp-") for n in names)
        assert len(g) == len(expected(committed))
