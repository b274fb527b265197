"""The auditor dashboard page rendered by a real headless browser against a real server.

Needs Debian's Chromium (``apt-get install chromium``); skipped without it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from audit_support import Node, auditor_app, serve

from node.db.models import Role
from node.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)",
)
BROWSER_TIMEOUT_S = 90
#: Virtual time the page gets to fetch and render before the DOM is dumped.
VIRTUAL_TIME_MS = "15000"


def _chromium(*args: str, home: Path) -> str:
    result = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={home / 'profile'}",
            f"--virtual-time-budget={VIRTUAL_TIME_MS}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT_S,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    return result.stdout


def _rows(dom: str, table: str) -> list[list[str]]:
    body = re.search(rf'<table id="{table}">(.*?)</table>', dom, re.S)
    assert body is not None, f"no table {table}"
    return [
        re.findall(r"<t[dh]>(.*?)</t[dh]>", row) for row in re.findall(r"<tr>(.*?)</tr>", body[1])
    ]


def test_dashboard_renders_the_api_numbers(settings: Settings, node: Node, tmp_path: Path) -> None:
    token = node.token(Role.AUDITOR)
    with serve(auditor_app(settings, node.engine, node.log)) as url:
        dom = _chromium("--dump-dom", f"{url}/audit/ui#token={token}", home=tmp_path)
        _chromium(
            "--window-size=1000,1400",
            f"--screenshot={tmp_path / 'dashboard.png'}",
            f"{url}/audit/ui#token={token}",
            home=tmp_path,
        )
    assert 'id="integrity-status" class="ok">VERIFIED<' in dom
    assert "latest checkpoint size 12" in dom and "0 cosignature(s)" in dom
    assert _rows(dom, "daily")[1:] == [
        ["2026-11-20", "ID", "inbound", "2"],
        ["2026-11-20", "MY", "outbound", "1"],
        ["2026-11-20", "TH", "inbound", "3"],
    ]
    assert ["inbound", "2", "2", "2", "0", "50.0%"] in _rows(dom, "hitrate")
    assert _rows(dom, "refusals")[1:] == [["bad_signature", "1"], ["quota_exceeded", "1"]]
    assert ["2026-11-20", "ID", "face", "7"] in _rows(dom, "quota")
    assert (tmp_path / "dashboard.png").stat().st_size > 0


def test_dashboard_shows_tampering_and_bad_tokens(
    settings: Settings, node: Node, tmp_path: Path
) -> None:
    from sqlalchemy import text

    with node.engine.begin() as conn:
        conn.execute(text("DELETE FROM translog_entries WHERE leaf_index = 3"))
    with serve(auditor_app(settings, node.engine, node.log)) as url:
        dom = _chromium(
            "--dump-dom", f"{url}/audit/ui#token={node.token(Role.AUDITOR)}", home=tmp_path
        )
        denied = _chromium(
            "--dump-dom", f"{url}/audit/ui#token={node.token(Role.OFFICER)}", home=tmp_path
        )
    assert 'class="bad">TAMPERED: entry_missing' in dom
    assert '<p id="error">403 wrong_role: ' in denied
    assert '<div id="integrity">not loaded</div>' in denied
