"""Admin actions made through the command line reach the tamper-evident log too."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from certs.pki import params
from certs.pki.bootstrap import build_region, write_region
from node.cli import main
from node.exchange.setup import HELD_FILE, LOG_KEYS_FILE, open_transparency_log
from node.settings import load_settings
from tests.exchange.service_support import dated_region

BDX = [sys.executable, "-c", "from node.cli import main; main()"]


def test_cli_user_management_is_logged(tmp_path: Path) -> None:
    region = tmp_path / "region"
    write_region(build_region(["TH"]), region)
    data = tmp_path / "th"
    config = tmp_path / "bdx.toml"
    config.write_text(f'country = "TH"\ndata_dir = "{data}"\npki_dir = "{region}"\n')
    for args in (["db", "upgrade"], ["users", "add", "ana", "--role", "admin"]):
        done = subprocess.run(
            [*BDX, *args, "--config", str(config)], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
    # The commands read the node's state files and write none of them: an operator running
    # them as another OS user must not leave the node files it cannot read.
    assert not (data / LOG_KEYS_FILE).exists() and not (data / HELD_FILE).exists()
    settings = load_settings(config)
    engine = create_engine(settings.database_url)
    try:
        log = open_transparency_log(settings, engine)
        events = [json.loads(e.data) for e in log.entries()]
    finally:
        engine.dispose()
    actions = [(e["action"], e["target"]) for e in events if e.get("type") == "node_action"]
    assert any(target == "ana" for _, target in actions), actions


STALE = datetime.now(UTC) - params.CRL_VALIDITY - params.DEFAULT_GRACE - timedelta(days=1)


@pytest.mark.parametrize(
    ("region", "code"),
    [
        ({"crl_issued": STALE}, "own_stale_crl"),
        ({"ends": {"TH": datetime.now(UTC) - timedelta(days=1)}}, "own_certificate_expired"),
    ],
    ids=["stale_crl", "expired_certificate"],
)
def test_local_administration_and_audit_go_on_while_the_pki_documents_are_stale(
    tmp_path: Path, region: dict[str, Any], code: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stale CRL or the node's own expired certificate made every command that opens the
    node database exit 5: no token, no user list, no `users disable` (a security response),
    no audit. They work now, with a warning line saying the peer exchange refuses; the
    disable is in the exchange log."""
    write_region(dated_region(["TH", "ID"], **region), tmp_path / "region")
    data = tmp_path / "th"
    config = tmp_path / "bdx.toml"
    config.write_text(f'country = "TH"\ndata_dir = "{data}"\npki_dir = "{tmp_path / "region"}"\n')
    commands = [
        ["db", "upgrade"],
        ["users", "add", "ana", "--role", "admin"],
        ["users", "token", "ana"],
        ["users", "list"],
        ["users", "disable", "ana"],
        ["audit", "list", "--limit", "1"],
        ["audit", "store"],
    ]
    for args in commands:
        capsys.readouterr()
        try:
            main([*args, "--config", str(config)])
        except SystemExit as exc:
            assert exc.code == 0, (args, capsys.readouterr().err)
        out, err = capsys.readouterr()
        if args[0] != "db":  # the exchange log is opened: the warning, on stderr only
            warnings = [line for line in err.splitlines() if line.startswith("bdx: ")]
            assert warnings and all(
                line.startswith("bdx: warning: this node's") and f"[{code}]" in line
                for line in warnings
            ), err
            assert "the peer exchange refuses" in warnings[0] and code not in out
    settings = load_settings(config)
    engine = create_engine(settings.database_url)
    try:
        log = open_transparency_log(settings, engine, record=False)
        events = [json.loads(e.data) for e in log.entries()]
    finally:
        engine.dispose()
    actions = [(e["action"], e["target"]) for e in events if e.get("type") == "node_action"]
    assert ("user.disable", "ana") in actions, actions
