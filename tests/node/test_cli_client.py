"""``bdx query`` and ``bdx subjects``: the user's own mistakes (files, CA bundle, URL) and a
node whose certificate does not verify are one line with their documented exit code."""

from __future__ import annotations

from pathlib import Path

import pytest
from node_support import cli, free_port


@pytest.fixture
def token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A token file (any text: these mistakes are found before the node is asked)."""
    monkeypatch.delenv("BDX_TOKEN", raising=False)
    path = tmp_path / "token"
    path.write_text("bdx_not-checked-here\n")
    return path


def _query(files: list[str], token_file: Path, *extra: str) -> list[str]:
    nowhere = f"http://127.0.0.1:{free_port()}"
    return [
        "query", *files, "--to", "MY", "--purpose", "border_control",
        "--url", nowhere, "--token-file", str(token_file), *extra,
    ]  # fmt: skip


def test_a_missing_file_is_4_and_an_unreadable_one_3(
    token_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """They were exit 1 (QueryFailedError had no exit code), the code of a bug."""
    code, _, err = cli(_query([str(tmp_path / "absent.iso")], token_file), capsys)
    assert code == 4 and "absent.iso" in err and len(err.splitlines()) == 1, err
    code, _, err = cli(_query([str(tmp_path)], token_file), capsys)
    assert code == 3 and "[unreadable_file]" in err and len(err.splitlines()) == 1, err
