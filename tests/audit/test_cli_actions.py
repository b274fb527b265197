"""Admin actions made through the command line reach the tamper-evident log too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine

from certs.pki.bootstrap import build_region, write_region
from node.exchange.setup import HELD_FILE, LOG_KEYS_FILE, open_transparency_log
from node.settings import load_settings

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
