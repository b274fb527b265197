"""write_dataset: FVC layout, reproducibility, pool == serial, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from matcher.imageio import load_grayscale
from matcher.synthetic import ImpressionProfile, SyntheticParameterError, write_dataset

PROFILE = ImpressionProfile("small", shape=(128, 112))
MASTER = (160, 144)


def test_writes_the_fvc_layout_and_reports_progress(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    paths = write_dataset(
        tmp_path,
        2,
        2,
        seed=3,
        profile=PROFILE,
        master_shape=MASTER,
        workers=1,
        progress=lambda d, n: seen.append((d, n)),
    )
    names = [p.name for p in paths]
    assert names == ["1_1.png", "1_2.png", "2_1.png", "2_2.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    img = load_grayscale(paths[0]).pixels
    assert img.shape == (128, 112) and img.dtype.name == "uint8"
    assert seen == [(1, 2), (2, 2)]


def test_pool_writes_the_same_bytes_as_a_single_process(tmp_path: Path) -> None:
    serial = write_dataset(
        tmp_path / "a", 2, 1, seed=5, profile=PROFILE, master_shape=MASTER, fmt="bmp", workers=1
    )
    pooled = write_dataset(
        tmp_path / "b", 2, 1, seed=5, profile=PROFILE, master_shape=MASTER, fmt="bmp", workers=2
    )
    assert [p.name for p in serial] == [p.name for p in pooled] == ["1_1.bmp", "2_1.bmp"]
    for a, b in zip(serial, pooled, strict=True):
        assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"fingers": 0, "impressions": 1}, "bad_count"),
        ({"fingers": 1, "impressions": -2}, "bad_count"),
        ({"fingers": True, "impressions": 1}, "bad_count"),
        ({"fingers": 1.5, "impressions": 1}, "bad_count"),
        ({"fingers": 1, "impressions": 1, "fmt": "gif"}, "unknown_format"),
        ({"fingers": 1, "impressions": 1, "seed": -1}, "bad_seed"),
        ({"fingers": 1, "impressions": 1, "profile": "greasy"}, "unknown_profile"),
    ],
)
def test_bad_arguments_raise_and_write_nothing(
    tmp_path: Path, kwargs: dict[str, object], reason: str
) -> None:
    out = tmp_path / "out"
    with pytest.raises(SyntheticParameterError) as info:
        write_dataset(out, **kwargs)  # type: ignore[arg-type]
    assert info.value.reason == reason
    assert not out.exists()


def test_a_file_in_the_way_of_the_directory_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("not a directory")
    with pytest.raises(SyntheticParameterError) as info:
        write_dataset(blocker / "db", 1, 1, profile=PROFILE, master_shape=MASTER)
    assert info.value.reason == "bad_directory"


def test_an_unwritable_file_raises(tmp_path: Path) -> None:
    (tmp_path / "1_1.png").mkdir()  # a directory where the image should go
    with pytest.raises(SyntheticParameterError) as info:
        write_dataset(tmp_path, 1, 1, profile=PROFILE, master_shape=MASTER, workers=1)
    assert info.value.reason == "write_failed"


def test_more_fingers_keep_the_existing_files_identical(tmp_path: Path) -> None:
    one = write_dataset(tmp_path / "a", 1, 1, seed=9, profile=PROFILE, master_shape=MASTER)
    two = write_dataset(tmp_path / "b", 2, 1, seed=9, profile=PROFILE, master_shape=MASTER)
    assert one[0].read_bytes() == two[0].read_bytes()
    assert two[0].read_bytes() != two[1].read_bytes()


def test_numpy_integer_counts_are_accepted(tmp_path: Path) -> None:
    n1, n2 = np.int64(1), np.int32(1)
    paths = write_dataset(tmp_path, n1, n2, profile=PROFILE, master_shape=MASTER)  # type: ignore[arg-type]
    assert [p.name for p in paths] == ["1_1.png"]
