"""``GET /quota`` and ``bdx policy quota``, ``POST /queries`` and ``bdx query``, on a node that
runs no peer exchange: 503 ``no_exchange`` with the API's error body, exit 6 (the node
answered 503, not for its storage)."""

from __future__ import annotations

import base64
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from node_support import bearer, cli

from matcher.fingerprint import iso19794_2
from matcher.synthetic import synthetic_templates
from node.api.routers.peers import get_exchange
from node.db.models import Role
from node.errors import NodeError
from node.service_errors import StoreUnavailableError

PROBE = iso19794_2.encode(synthetic_templates(1, 1, seed=3)[0][0])


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


def test_a_query_without_an_exchange_is_no_exchange(
    live_server: str,
    make_token: object,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``POST /queries`` answered 503 ``store_unavailable`` (a storage code) where the quota
    and a peer's terms answer ``no_exchange``: the officer was sent to look at the storage."""
    token = make_token(Role.OFFICER)  # type: ignore[operator]
    body = {
        "peers": ["TH"],
        "purpose": "border_control",
        "modality": "fingerprint",
        "templates": [{"data": base64.b64encode(PROBE).decode(), "finger_position": 1}],
    }
    response = httpx.post(live_server + "/queries", json=body, headers=bearer(token), timeout=30)
    assert response.status_code == 503
    assert response.json() == {
        "error": "no_exchange",
        "detail": "this node has no peer exchange configured",
    }
    monkeypatch.delenv("BDX_TOKEN", raising=False)
    path, probe = tmp_path / "token", tmp_path / "probe.iso"
    path.write_text(token)
    probe.write_bytes(PROBE)
    args = ["query", str(probe), "--to", "TH", "--purpose", "border_control"]
    code, out, err = cli([*args, "--url", live_server, "--token-file", str(path)], capsys)
    assert code == 6 and out == "", err
    assert err.endswith(" [no_exchange]\n") and err.count("[no_exchange]") == 1, err


def test_no_exchange_is_a_peer_side_error_not_a_storage_one() -> None:
    """The error was a ``StoreUnavailableError`` (exit 7, storage) with the reason
    ``no_exchange``: raised by a local command it would have sent the operator to the disk."""
    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace()))
    with pytest.raises(NodeError) as info:
        get_exchange(request)  # type: ignore[arg-type]
    assert not isinstance(info.value, StoreUnavailableError)
    assert (info.value.reason, info.value.exit_code) == ("no_exchange", 6)
