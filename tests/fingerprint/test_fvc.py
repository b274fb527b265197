"""The FVC protocol runner: folder scanning, protocol counts, rank-1 and a real end-to-end run."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from threadpoolctl import threadpool_info

from matcher.fingerprint.extract import extract_file
from matcher.fingerprint.fvc import (
    DatasetError,
    Sample,
    _protocol,
    evaluate,
    rank1_by_gallery_impression,
    rank1_first_impression,
    scan,
)
from matcher.fingerprint.template import FingerprintTemplate
from matcher.synthetic import write_dataset


def _touch(folder: Path, *names: str) -> None:
    for n in names:
        (folder / n).write_bytes(b"x")


def test_scan_sorts_by_finger_and_impression(tmp_path: Path) -> None:
    _touch(tmp_path, "102_1.png", "101_10.tif", "101_2.TIF", "notes.txt")
    got = [(s.finger, s.impression) for s in scan(tmp_path)]
    assert got == [("101", 2), ("101", 10), ("102", 1)]


@pytest.mark.parametrize(
    ("names", "reason"),
    [
        ((), "no_images"),
        (("readme.md",), "no_images"),
        (("101-1.png", "102_1.png"), "bad_layout"),
        (("101_1.png", "101_1.tif", "102_1.png"), "bad_layout"),
        (("101_1.png", "101_2.png"), "bad_layout"),
    ],
)
def test_scan_refuses_bad_folders(tmp_path: Path, names: tuple[str, ...], reason: str) -> None:
    _touch(tmp_path, *names)
    with pytest.raises(DatasetError) as err:
        scan(tmp_path)
    assert err.value.reason == reason


@pytest.mark.parametrize("special", ["fifo", "folder", "broken link"])
def test_scan_refuses_an_image_name_that_is_no_regular_file(tmp_path: Path, special: str) -> None:
    """A FIFO named like an image hung ``bdx eval fingerprint`` forever (opening it waits for
    a writer); it, a folder or a broken link so named is refused, naming it, unopened."""
    _touch(tmp_path, "101_1.png", "102_1.png")
    odd = tmp_path / "103_1.png"
    if special == "fifo":
        os.mkfifo(odd)
    elif special == "folder":
        odd.mkdir()
    else:
        odd.symlink_to(tmp_path / "absent.png")
    with pytest.raises(DatasetError) as err:
        scan(tmp_path)
    assert err.value.reason == "not_a_file" and err.value.message.startswith("103_1.png: ")


def test_scan_refuses_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        scan(tmp_path / "absent")
    assert err.value.reason == "not_a_directory"


def _samples(fingers: int, impressions: int) -> list[Sample]:
    return [
        Sample(Path(f"{f}_{i}.tif"), str(100 + f), i)
        for f in range(fingers)
        for i in range(1, impressions + 1)
    ]


def test_protocol_counts_match_fvc2002() -> None:
    samples = _samples(10, 8)
    rng = np.random.default_rng(0)
    s = rng.random((80, 80)).astype(np.float32)
    genuine, impostor, impostor_45, _ = _protocol(samples, s)
    assert (genuine.size, impostor.size, impostor_45.size) == (280, 2880, 45)


def test_rank1_averages_over_gallery_choices() -> None:
    samples = _samples(3, 3)
    fingers = np.repeat(np.arange(3), 3)
    s = np.where(fingers[:, None] == fingers[None, :], 0.9, 0.1).astype(np.float32)
    assert _protocol(samples, s)[3] == 1.0
    # Probe 0 (finger 0, position 0) resembles finger 1's second impression more than its own
    # finger: it fails at offset 1, where that impression is finger 1's gallery entry.
    s[0, 4] = 0.95
    assert _protocol(samples, s)[3] == pytest.approx(1 - 0.5 / 9)
    # Per enrolled impression: only the gallery of second impressions holds finger 1's entry
    # that beats probe 0 (one miss of 6 probes); the mean is the averaged figure.
    by_impression = rank1_by_gallery_impression(samples, s)
    assert by_impression == pytest.approx([1.0, 5 / 6, 1.0])
    assert np.mean(by_impression) == pytest.approx(_protocol(samples, s)[3])


def test_rank1_first_impression_enrols_each_fingers_first_impression() -> None:
    samples = _samples(3, 3)
    fingers = np.repeat(np.arange(3), 3)
    s = np.where(fingers[:, None] == fingers[None, :], 0.9, 0.1).astype(np.float32)
    assert rank1_first_impression(samples, s) == 1.0
    # Probe 4 (finger 1, second impression) resembles finger 2's first impression more than
    # its own: one miss of 6 probes. A probe beating a non-first impression does not count.
    s[4, 6] = 0.95
    s[1, 5] = 0.99
    assert rank1_first_impression(samples, s) == pytest.approx(5 / 6)
    assert rank1_first_impression(samples, s) == pytest.approx(
        rank1_by_gallery_impression(samples, s)[0]  # type: ignore[index]
    )


def test_rank1_first_impression_with_unequal_impression_counts() -> None:
    samples = _samples(3, 3)[:-2]  # finger 2 has one impression: a gallery entry, no probe
    fingers = np.array([0, 0, 0, 1, 1, 1, 2])
    s = np.where(fingers[:, None] == fingers[None, :], 0.9, 0.1).astype(np.float32)
    s[1, 6] = 0.95  # probe 1 (finger 0) prefers finger 2's only impression
    assert rank1_by_gallery_impression(samples, s) is None
    assert rank1_first_impression(samples, s) == pytest.approx(3 / 4)
    assert rank1_first_impression(_samples(3, 1), np.ones((3, 3), np.float32)) is None


def test_rank1_by_gallery_impression_needs_equal_impression_counts() -> None:
    samples = _samples(3, 3)[:-1]  # the last finger has 2 impressions
    s = np.random.default_rng(1).random((8, 8)).astype(np.float32)
    assert rank1_by_gallery_impression(samples, s) is None
    assert rank1_by_gallery_impression(_samples(3, 1), np.ones((3, 3), np.float32)) is None


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fvc")
    write_dataset(folder, 3, 2, seed=3, workers=1)
    return folder


def test_evaluate_end_to_end(tiny_dataset: Path) -> None:
    stages: list[str] = []
    report = evaluate(tiny_dataset, extract_file, lambda s, d, t: stages.append(s))
    assert report.images == 6 and report.fingers == 3
    assert report.genuine == 3 and report.impostor == 12 and report.impostor_45 == 3
    assert 0.0 <= report.eer <= 1.0 and report.rank1 is not None
    by_impression = report.rank1_by_gallery_impression
    assert by_impression is not None and len(by_impression) == 2
    assert np.mean(by_impression) == pytest.approx(report.rank1)
    assert report.rank1_first_impression == pytest.approx(by_impression[0])
    assert report.comparisons_per_cpu_s_1to1 > 0 and report.comparisons_per_cpu_s_batch > 0
    assert report.extract_cpu_ms_median > 0 and report.extract_wall_ms_median > 0
    assert {"extract", "compare"} <= set(stages)
    assert report.to_dict()["failures"] == []


def _threads() -> tuple[int, ...]:
    """Thread counts of every native pool (BLAS, OpenMP) and of OpenCV, right now."""
    return (*(int(p["num_threads"]) for p in threadpool_info()), cv2.getNumThreads())


def test_timed_work_runs_on_one_thread(tiny_dataset: Path) -> None:
    """The speed fields are per-core figures: extraction and the comparisons run pinned to one
    thread (the progress callback fires inside both), and the pools are restored after."""
    before = _threads()
    seen: dict[str, set[int]] = {}

    def extractor(path: Path) -> FingerprintTemplate:
        seen.setdefault("extractor", set()).update(_threads())
        return extract_file(path)

    def progress(stage: str, done: int, total: int) -> None:
        seen.setdefault(stage, set()).update(_threads())

    evaluate(tiny_dataset, extractor, progress)
    assert seen == {"extractor": {1}, "extract": {1}, "compare": {1}}
    assert _threads() == before


def test_extraction_failures_are_reported_and_kept(tiny_dataset: Path, tmp_path: Path) -> None:
    for p in tiny_dataset.iterdir():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    (tmp_path / "101_1.png").write_bytes(b"not an image at all")
    report = evaluate(tmp_path, extract_file)
    assert report.failures == [("101_1.png", "not_an_image")]
    assert report.images == 7


def test_minutiae_median_counts_only_the_templates_extracted(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """A failure's empty template counted as 0 minutiae in the median."""
    counts = []
    for p in sorted(tiny_dataset.iterdir()):
        if p.stem.endswith("_1"):
            (tmp_path / p.name).write_bytes(b"not an image at all")
        else:
            (tmp_path / p.name).write_bytes(p.read_bytes())
            counts.append(extract_file(p).count)
    report = evaluate(tmp_path, extract_file)
    assert len(report.failures) == 3 and len(counts) == 3
    assert report.minutiae_median == float(np.median(counts))
    assert report.comparisons_per_cpu_s_1to1 > 0


def test_a_folder_where_nothing_extracts_is_refused(tmp_path: Path) -> None:
    """It printed an EER of 50%, a rank-1 of 0 and a comparison rate timed on empty
    templates, exit 0."""
    for finger in (1, 2):
        for impression in (1, 2):
            cv2.imwrite(
                str(tmp_path / f"{finger}_{impression}.png"), np.full((300, 300), 200, np.uint8)
            )
    with pytest.raises(DatasetError) as info:
        evaluate(tmp_path, extract_file)
    assert info.value.reason == "nothing_extracted"
    assert "no image of 4 could be extracted (4 no_ridge_area)" in info.value.message
