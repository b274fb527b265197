"""``bdx eval fingerprint`` end to end on a tiny synthetic FVC-layout folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from matcher.synthetic import write_dataset
from node.cli import app, main

runner = CliRunner()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fvc_cli")
    write_dataset(folder, 2, 2, seed=5, workers=1)
    return folder


def test_json_report(dataset: Path) -> None:
    args = ["eval", "fingerprint", "--dataset", str(dataset), "--ppi", "500", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["images"] == 4 and report["genuine"] == 2 and report["impostor"] == 4
    for key in ("eer", "eer_45", "fnmr_at_fmr_1pct", "fnmr_at_fmr_01pct", "rank1"):
        assert 0.0 <= report[key] <= 1.0
    for key in (
        "comparisons_per_cpu_s_1to1",
        "comparisons_per_cpu_s_batch",
        "extract_cpu_ms_median",
        "extract_wall_ms_median",
        "prepare_ms_median",
    ):
        assert report[key] > 0, key
    by_impression = report["rank1_by_gallery_impression"]
    assert len(by_impression) == 2 and sum(by_impression) / 2 == pytest.approx(report["rank1"])
    assert report["rank1_first_impression"] == pytest.approx(by_impression[0])


def test_table_report(dataset: Path) -> None:
    result = runner.invoke(app, ["eval", "fingerprint", "--dataset", str(dataset), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "eer_45" in result.stdout and "rank1" in result.stdout
    row = next(x for x in result.stdout.splitlines() if "rank1_by_gallery_impression" in x)
    assert row.count("%") == 2
    row = next(x for x in result.stdout.splitlines() if "rank1_first_impression" in x)
    assert row.count("%") == 1


def test_synthetic_option() -> None:
    result = runner.invoke(app, ["eval", "fingerprint", "--synthetic", "2:2", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images"] == 4


def test_help() -> None:
    result = runner.invoke(app, ["eval", "fingerprint", "--help"])
    assert result.exit_code == 0 and "--synthetic" in result.stdout


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return int(exit_info.value.code or 0), capsys.readouterr().err


def test_missing_folder_is_not_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(["eval", "fingerprint", "--dataset", str(tmp_path / "nope")], capsys)
    assert code == 4 and "[dataset_not_found]" in err and len(err.strip().splitlines()) == 1


def test_empty_folder_is_a_typed_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(["eval", "fingerprint", "--dataset", str(tmp_path)], capsys)
    assert code == 3 and "[no_images]" in err


def test_bad_layout_is_a_typed_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "scan.png").write_bytes(b"x")
    code, err = _run(["eval", "fingerprint", "--dataset", str(tmp_path)], capsys)
    assert code == 3 and "[bad_layout]" in err


def test_a_fifo_in_the_dataset_is_a_typed_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It hung the evaluation forever: the decoder opened it and waited for a writer."""
    write_dataset(tmp_path, 2, 2, seed=5, workers=1)
    os.mkfifo(tmp_path / "3_1.png")
    code, err = _run(["eval", "fingerprint", "--dataset", str(tmp_path)], capsys)
    assert code == 3 and "3_1.png" in err and "[not_a_file]" in err, err


@pytest.mark.parametrize(
    "args",
    [
        ["eval", "fingerprint"],
        ["eval", "fingerprint", "--dataset", ".", "--synthetic", "2:2"],
        ["eval", "fingerprint", "--synthetic", "two"],
        ["eval", "fingerprint", "--synthetic", "1:2"],
        ["eval", "fingerprint", "--dataset", ".", "--ppi", "5"],
        # beyond the extractor's 100-5000 ppi every image failed, and the run still printed
        # an EER and a comparison rate, exit 0; nan was refused as "above 10000"
        ["eval", "fingerprint", "--dataset", ".", "--ppi", "6000"],
        ["eval", "fingerprint", "--dataset", ".", "--ppi", "nan"],
        ["eval", "fingerprint", "--dataset", ".", "--ppi", "inf"],
    ],
)
def test_usage_errors(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(args, capsys)
    assert code == 2 and err.count("\n") == 1 and err.endswith("[usage]\n"), err
    if "--ppi" in args:
        assert "from 100 to 5000 ppi" in err


def test_a_dataset_where_nothing_extracts_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_dataset(tmp_path, 2, 2, seed=5, workers=1)
    for image in tmp_path.iterdir():
        image.write_bytes(b"not an image")
    code, err = _run(["eval", "fingerprint", "--dataset", str(tmp_path), "--json"], capsys)
    assert code == 3 and err.endswith("(4 not_an_image) [nothing_extracted]\n"), err


def test_a_dataset_path_is_shown_as_written(tmp_path: Path) -> None:
    """The path was read as rich markup: fvc[db1_a] showed as fvc, and a folder holding [/]
    raised MarkupError once the whole evaluation was done (its result lost)."""
    folder = tmp_path / "fvc[db1_a]" / "x[/]"
    folder.mkdir(parents=True)
    write_dataset(folder, 2, 2, seed=5, workers=1)
    result = runner.invoke(app, ["eval", "fingerprint", "--dataset", str(folder), "--no-progress"])
    assert result.exit_code == 0, result.output
    title = "".join(result.stdout.split())  # the table's width wraps its title
    assert f"Fingerprintevaluation:{folder}" in title and "rank1" in result.stdout
