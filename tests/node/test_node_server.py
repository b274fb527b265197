"""The node under a real uvicorn server on a loopback port, spoken to with httpx; and
`bdx serve` itself as a subprocess."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from node_support import bearer, free_port, self_signed_tls, wait_for_health

from node.db.models import Role


def test_admin_creates_an_operator_over_http(live_server: str, make_token: object) -> None:
    admin = bearer(make_token(Role.ADMIN, name="root"))  # type: ignore[operator]
    with httpx.Client(base_url=live_server, timeout=10) as http:
        assert http.get("/health").json()["status"] == "ok"
        r = http.post("/users", headers=admin, json={"name": "op", "role": "operator"})
        assert r.status_code == 201
        issued = http.post("/users/op/tokens", headers=admin, json={"expires_days": 1}).json()
        op = bearer(issued["token"])
        assert http.get("/subjects", headers=op).json() == {"items": [], "next_after": None}
        stats = http.get("/gallery/statistics", headers=op).json()
        assert stats["subjects"] == 0
        r = http.get("/users", headers=op)
        assert (r.status_code, r.json()["error"]) == (403, "wrong_role")
        assert http.delete(f"/tokens/{issued['token_id']}", headers=admin).status_code == 200
        r = http.get("/subjects", headers=op)
        assert (r.status_code, r.json()["error"]) == (401, "token_revoked")
        assert "invalid_token" in r.headers["www-authenticate"]


def test_size_limits_over_the_wire(live_server: str, make_token: object) -> None:
    admin = bearer(make_token(Role.ADMIN))  # type: ignore[operator]
    headers = {**admin, "Content-Type": "application/json"}

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"x" * 65536

    with httpx.Client(base_url=live_server, timeout=10) as http:
        r = http.post("/users", headers=headers, content=b"x" * 1_100_000)
        assert (r.status_code, r.json()["error"]) == (413, "payload_too_large")
        r = http.post("/users", headers=headers, content=chunks())
        assert (r.status_code, r.json()["error"]) == (413, "payload_too_large")
        r = http.get("/subjects")
        assert (r.status_code, r.json()["error"]) == (401, "missing_token")


@pytest.fixture
def node_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BDX_")}
    env.update(BDX_DATA_DIR=str(tmp_path / "node"), BDX_COUNTRY="XB")
    return env


BDX = [sys.executable, "-c", "from node.cli import main; main()"]


def test_bdx_serve_runs_uvicorn(node_env: dict[str, str]) -> None:
    port = free_port()
    cmd = [*BDX, "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=node_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "bdx serve did not answer"
                time.sleep(0.1)
        assert body["country"] == "XB" and body["gallery"] is True
        httpx.get(f"http://127.0.0.1:{port}/subjects/PERSON-19800101-1234", timeout=5)
        limits = Path(f"/proc/{proc.pid}/limits")
        if limits.exists():  # no core file could hold a probe, an image or a key
            (core,) = [line for line in limits.read_text().splitlines() if "core" in line]
            assert core.split()[-3:-1] == ["0", "0"], core
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    # the access log has route templates, never a subject id from a path
    assert b"GET /subjects/{external_id} 401" in out and b"PERSON" not in out
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status reports it.
    assert proc.returncode in (0, -15), out
    assert b"Application shutdown complete" in out
    assert Path(node_env["BDX_DATA_DIR"], "bdx.sqlite3").exists()


@contextlib.contextmanager
def serving(node_env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`bdx serve` on a free port, answering /health; killed afterwards if still running."""
    port = free_port()
    proc = subprocess.Popen(
        [*BDX, "serve", "--port", str(port)],
        env=node_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_health(proc, port, 30)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_sigterm_stops_serve_while_a_client_stalls_mid_request(node_env: dict[str, str]) -> None:
    """A client that sent half a request (no token needed) held `bdx serve` up after SIGTERM
    for as long as it liked; now the graceful shutdown waits GRACEFUL_SHUTDOWN_S at most."""
    from node.exchange.serving import GRACEFUL_SHUTDOWN_S

    with serving(node_env) as (proc, port), socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(
            b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        time.sleep(0.5)
        stopped = time.monotonic()
        proc.terminate()
        proc.wait(timeout=GRACEFUL_SHUTDOWN_S + 20)
        assert time.monotonic() - stopped < GRACEFUL_SHUTDOWN_S + 10


def test_a_second_serve_on_one_data_dir_is_one_line(node_env: dict[str, str]) -> None:
    """The first node holds the gallery: the second says so in one line (exit 7), not with
    uvicorn's start-up tracebacks."""
    with serving(node_env):
        second = subprocess.run(
            [*BDX, "serve", "--port", str(free_port())],
            env=node_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert second.returncode == 7, second.stderr
    assert second.stderr.count("\n") == 1 and "[gallery_locked]" in second.stderr


def test_bdx_serve_refuses_unsafe_production(node_env: dict[str, str]) -> None:
    node_env.update(BDX_ENVIRONMENT="production", BDX_DEBUG="true")
    cmd = [sys.executable, "-c", "from node.cli import main; main()", "serve"]
    done = subprocess.run(cmd, env=node_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("bdx: error: refusing production settings")
    assert "debug must be off" in done.stderr and "[unsafe_config]" in done.stderr


@pytest.fixture
def production_env(node_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    data = Path(node_env["BDX_DATA_DIR"])
    data.mkdir(mode=0o700)
    cert, key = self_signed_tls(tmp_path)
    node_env.update(
        BDX_ENVIRONMENT="production",
        BDX_COUNTRY="DE",
        BDX_TLS_CERT_FILE=str(cert),
        BDX_TLS_KEY_FILE=str(key),
    )
    return node_env


def test_production_serve_needs_a_migrated_database(production_env: dict[str, str]) -> None:
    done = subprocess.run([*BDX, "serve"], env=production_env, capture_output=True, text=True)
    assert done.returncode == 2
    assert "run `bdx db upgrade`" in done.stderr and "[schema_out_of_date]" in done.stderr


def test_production_serve_over_tls(production_env: dict[str, str], tmp_path: Path) -> None:
    upgrade = subprocess.run([*BDX, "db", "upgrade"], env=production_env, capture_output=True)
    assert upgrade.returncode == 0, upgrade.stderr
    trust = ssl.create_default_context(cafile=tmp_path / "node.crt")
    port = free_port()
    cmd = [*BDX, "serve", "--port", str(port)]
    proc = subprocess.Popen(
        cmd, env=production_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                url = f"https://127.0.0.1:{port}/health"
                body = httpx.get(url, verify=trust, timeout=1).json()
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "bdx serve did not answer over TLS"
                time.sleep(0.1)
        assert body["country"] == "DE"
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def test_bdx_serve_on_a_taken_port_says_so_in_one_line(node_env: dict[str, str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*BDX, "serve", "--port", str(port)],
            env=node_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2, done.stderr
    assert (
        f"cannot listen on 127.0.0.1:{port}" in done.stderr and "[port_unavailable]" in done.stderr
    )
    assert "Traceback" not in done.stderr
