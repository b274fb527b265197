"""``bdx demo --fast`` end to end as a subprocess: three real nodes, queries, audit."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

BDX = [sys.executable, "-c", "from node.cli import main; main()"]


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [*BDX, "demo", "--fast", "--out", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        # the shell's BDX_* settings would outrank every node's config file (all three nodes
        # shared one data directory): the demo ignores them, and says so
        env={
            "COLUMNS": "200",
            "PATH": "/usr/bin:/bin",
            "BDX_DATA_DIR": str(tmp_path / "shared"),
            "BDX_COUNTRY": "XX",
        },
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert "ignoring BDX_COUNTRY, BDX_DATA_DIR" in out
    assert "all nodes healthy (bdx serve)" in out
    assert "local search: enrolled th-1 -> " in out
    assert "(rank 1: th-1)" in out
    assert "TH -> MY  border_control" in out
    assert "REFUSED  reason: " in out
    assert out.count("signed reply: ") == 4
    assert "TH reads ID's signed terms: purposes asylum, border_control; " in out
    assert "fingerprint 2 used of " in out
    assert "ID's operator records the examiner's outcome of " in out
    assert "TH asks ID for the outcome of its hit: CONFIRMED (signed by ID" in out
    assert (
        "cross-border: ID:border_control:hit, ID:border_control:no_hit, "
        "MY:border_control:refused, MY:asylum:hit" in out
    )
    for cc in ("TH", "ID", "MY"):
        assert f"  {cc}: OK bdx.{cc.lower()}/exchange-log" in out
        assert (run_dir / cc.lower() / "audit-export.json").is_file()
    # TH logged its policy decisions, queries and replies; the export must include them.
    assert "  TH: OK bdx.th/exchange-log: 0 entries" not in out
    assert f"run directory {run_dir}" in out


def test_demo_refuses_a_non_empty_run_directory(tmp_path: Path) -> None:
    (tmp_path / "something").write_text("x")
    done = subprocess.run(
        [*BDX, "demo", "--fast", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "[run_dir_not_empty]" in done.stderr


def test_a_node_that_cannot_start_is_reported_and_the_others_stopped(tmp_path: Path) -> None:
    from node.demo.errors import DemoError
    from node.demo.region import DemoNode, free_port
    from node.demo.servers import serving

    good = DemoNode("TH", tmp_path / "th", free_port(), free_port())
    bad = DemoNode("ID", tmp_path / "id", free_port(), free_port())
    for node in (good, bad):
        node.root.mkdir()
    good.config.write_text(f'data_dir = "{good.root}"\nport = {good.api_port}\n')
    bad.config.write_text("port = 0\n")  # invalid: ports are 1-65535
    with pytest.raises(DemoError) as caught, serving({"TH": good, "ID": bad}):
        pass
    assert caught.value.reason == "node_exited"
    assert "node ID exited with 2" in caught.value.message
    with pytest.raises(httpx.TransportError):
        httpx.get(good.api_url + "/health", timeout=2)


def test_a_failing_bdx_step_names_the_step_and_its_error(tmp_path: Path) -> None:
    from node.demo.errors import DemoError
    from node.demo.region import run_bdx

    with pytest.raises(DemoError) as caught:
        run_bdx(["db", "upgrade", "--config", str(tmp_path / "missing.toml")], "XX db upgrade")
    assert caught.value.reason == "step_failed"
    assert caught.value.message.startswith("XX db upgrade failed (exit 2): bdx: error:")


def test_demo_refuses_a_file_as_run_directory(tmp_path: Path) -> None:
    """It was a NotADirectoryError traceback (exit 1)."""
    blocked = tmp_path / "a-file"
    blocked.write_text("x")
    for out in (blocked, blocked / "run"):
        done = subprocess.run(
            [*BDX, "demo", "--fast", "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2 and "--out" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_sigterm_to_the_demo_stops_its_nodes(tmp_path: Path) -> None:
    """SIGTERM (a CI job cancelled, `kill`) killed the demo alone: its `bdx serve` children
    went on serving, their ports bound. It stops them as Ctrl-C does now."""
    from node.demo.region import DemoNode, free_port

    node = DemoNode("TH", tmp_path / "th", free_port(), free_port())
    node.root.mkdir()
    node.config.write_text(f'data_dir = "{node.root}"\nport = {node.api_port}\n')
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from node.demo.region import DemoNode\n"
        "from node.demo.servers import serving\n"
        f"node = DemoNode('TH', Path({str(node.root)!r}), {node.api_port}, {node.peer_port})\n"
        "with serving({'TH': node}):\n"
        "    print('serving', flush=True)\n"
        "    time.sleep(120)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as demo:
        try:
            assert demo.stdout is not None and demo.stdout.readline() == "serving\n"
            assert httpx.get(node.api_url + "/health", timeout=5).status_code == 200
            demo.send_signal(signal.SIGTERM)
            demo.communicate(timeout=60)
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.communicate()
    with pytest.raises(httpx.TransportError):
        httpx.get(node.api_url + "/health", timeout=2)
