"""Start each demo node as a real ``bdx serve`` subprocess and stop them all cleanly."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import httpx

from node.demo.errors import DemoError
from node.demo.region import BDX, DemoNode

#: Seconds a node may take to answer /health (imports, migrations check, gallery open).
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


def _wait_healthy(node: DemoNode, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(
                f"node {node.country} exited with {proc.returncode}; see {node.root}/serve.log",
                reason="node_exited",
            )
        try:
            if httpx.get(node.api_url + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise DemoError(f"node {node.country} did not become healthy", reason="node_timeout")


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # the demo's Ctrl-C path: nodes stopped, "interrupted" printed


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While the nodes run, SIGTERM stops the demo as Ctrl-C does: its default action killed
    the demo alone, and the three ``bdx serve`` children went on serving, their ports bound."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def serving(nodes: dict[str, DemoNode]) -> Iterator[None]:
    """Run ``bdx serve`` for every node; terminate them on exit (also on errors, Ctrl-C and
    SIGTERM)."""
    procs: list[subprocess.Popen[bytes]] = []
    with _sigterm_interrupts():
        try:
            for node in nodes.values():
                log = (node.root / "serve.log").open("wb")
                procs.append(
                    subprocess.Popen(
                        [*BDX, "serve", "--config", str(node.config)],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                    )
                )
                log.close()
            for node, proc in zip(nodes.values(), procs, strict=True):
                _wait_healthy(node, proc)
            yield
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
