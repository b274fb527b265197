"""``python -m matcher.synthetic``: writes the database, one-line typed errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from matcher.synthetic.__main__ import app


def test_writes_images_and_prints_json(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [str(tmp_path), "-f", "1", "-i", "2", "--json"])
    assert result.exit_code == 0, result.output
    paths = json.loads(result.stdout)["paths"]
    assert [Path(p).name for p in paths] == ["1_1.png", "1_2.png"]
    assert all(Path(p).stat().st_size > 1000 for p in paths)


def test_bad_count_is_a_one_line_error_with_the_matcher_exit_code(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [str(tmp_path / "x"), "--fingers", "0"])
    assert result.exit_code == 3
    assert result.output.strip().splitlines() == ["error: fingers must be >= 1, got 0"]


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_runs_as_a_module(flag: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "matcher.synthetic", flag],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert "--impressions" in done.stdout


def test_progress_mode_reports_the_count(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [str(tmp_path), "-f", "1", "-i", "1", "--format", "bmp"])
    assert result.exit_code == 0, result.output
    assert f"wrote 1 images to {tmp_path}" in result.stdout
    assert (tmp_path / "1_1.bmp").is_file()
