"""``GET /quota`` and ``bdx policy quota`` on a node that runs no peer exchange: 503
``no_exchange`` with the API's error body, exit 6 (the node answered 503, not for its
storage)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from node_support import bearer, cli

from node.db.models import Role


def test_no_exchange_is_503(live_server: str, make_token: object) -> None:
    token = make_token(Role.AUDITOR)  # type: ignore[operator]
    response = httpx.get(live_server + "/quota", headers=bearer(token), timeout=30)
    assert response.status_code == 503
    assert response.json() == {
        "error": "no_exchange",
        "detail": "this node has no peer exchange configured",
    }


def test_cli_exits_6_without_an_exchange(
    live_server: str,
    make_token: object,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("BDX_TOKEN", raising=False)
    path = tmp_path / "token"
    path.write_text(make_token(Role.OPERATOR))  # type: ignore[operator]
    code, out, err = cli(
        ["policy", "quota", "--url", live_server, "--token-file", str(path)], capsys
    )
    assert code == 6 and out == "" and "[no_exchange]" in err
