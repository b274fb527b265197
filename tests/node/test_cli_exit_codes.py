"""Exit codes scripts rely on (README, "Exit codes"): storage failures are 7, Ctrl-C is 130
with one line and no worker tracebacks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from matcher.synthetic import make_impression, make_master

BDX = [sys.executable, "-c", "from node.cli import main; main()"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BDX_")}
    base.update(BDX_DATA_DIR=str(tmp_path / "node"), BDX_COUNTRY="XB")
    subprocess.run([*BDX, "db", "upgrade"], env=base, check=True, capture_output=True)
    return base


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_disk_is_exit_7_in_one_line(env: dict[str, str]) -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [*BDX, "users", "add", "ana", "--role", "admin"],
            env=env,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert done.returncode == 7
    assert done.stderr == "bdx: error: No space left on device [storage_error]\n"


def test_ctrl_c_during_a_load_is_130_without_worker_tracebacks(
    env: dict[str, str], tmp_path: Path
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for finger in range(12):
        master = make_master(finger)
        for i in range(6):
            Image.fromarray(make_impression(master, i)).save(source / f"{finger}_{i + 1}.png")
    load = [*BDX, "gallery", "load", str(source), "--workers", "2"]
    proc = subprocess.Popen(
        load, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    time.sleep(4)  # the workers are started and extracting
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.decode().strip().splitlines()[-1] == "bdx: interrupted"
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err
