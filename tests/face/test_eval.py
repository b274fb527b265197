"""Dataset evaluation: protocol counts on synthetic embeddings, the CLI end to end."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest
import skimage.data

from matcher import evaluation
from matcher.face import dataset_eval, diagnose, eval_cache
from matcher.face import params as P
from matcher.face.errors import DatasetError
from node.cli import main

from .conftest import encode


def embeddings(sizes: list[int], noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    centres = rng.normal(size=(len(sizes), 128))
    e = centres[labels] + noise * rng.normal(size=(labels.size, 128))
    return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32), labels


def test_pairs_and_rank1_match_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(P, "SCORE_BLOCK_ROWS", 4)  # several blocks
    e, labels = embeddings([3, 4, 1, 2], noise=1.2)
    got = dataset_eval.score_sets(e, labels)
    gen, imp = [], []
    for i, j in itertools.combinations(range(len(labels)), 2):
        (gen if labels[i] == labels[j] else imp).append(float(e[i] @ e[j]))
    assert sorted(got["genuine"].tolist()) == pytest.approx(sorted(gen), abs=1e-6)
    assert sorted(got["impostor"].tolist()) == pytest.approx(sorted(imp), abs=1e-6)
    assert not got["impostor_sampled"] and got["impostor_pairs_total"] == len(imp)
    s = e @ e.T
    np.fill_diagonal(s, -np.inf)
    probes = [k for k in range(len(labels)) if np.sum(labels == labels[k]) > 1]
    assert got["rank1_probes"] == len(probes) == 9
    expected = evaluation.rank1(s[probes], labels[probes], labels)
    assert got["rank1"] == pytest.approx(expected)


def test_impostors_are_sampled_deterministically(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(P, "MAX_IMPOSTOR_PAIRS", 200)
    e, labels = embeddings([5] * 10, noise=0.5)
    a = dataset_eval.score_sets(e, labels)
    b = dataset_eval.score_sets(e, labels)
    assert a["impostor_sampled"] and a["impostor_pairs_total"] == 45 * 25
    assert 120 < a["impostor"].size < 300
    assert np.array_equal(a["impostor"], b["impostor"])
    assert a["genuine"].size == 10 * 10


def test_scan(tmp_path: Path) -> None:
    for person in ("s2", "s1", "s10"):
        (tmp_path / person).mkdir()
        for k in (10, 2, 1):
            (tmp_path / person / f"{k}.pgm").write_bytes(b"x")
    (tmp_path / "s1" / "notes.txt").write_text("ignored")
    (tmp_path / "README").write_text("ignored")
    items = dataset_eval.scan_dataset(tmp_path)
    assert [(p.name, who) for p, who in items[:3]] == [
        ("1.pgm", "s1"),
        ("2.pgm", "s1"),
        ("10.pgm", "s1"),
    ]
    assert {who for _, who in dataset_eval.scan_dataset(tmp_path, 2)} == {"s1", "s10"}


@pytest.mark.parametrize("case", ["missing", "empty", "limit"])
def test_scan_errors(tmp_path: Path, case: str) -> None:
    (tmp_path / "someone").mkdir()
    root, limit = (tmp_path / "absent", None) if case == "missing" else (tmp_path, None)
    if case == "limit":
        limit = 0
    with pytest.raises(DatasetError) as err:
        dataset_eval.scan_dataset(root, limit)
    assert (
        err.value.reason
        == {"missing": "dataset_not_found", "empty": "dataset_empty", "limit": "bad_limit"}[case]
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, astronaut: npt.NDArray[np.uint8]) -> Path:
    root = tmp_path_factory.mktemp("faces")
    h, w = astronaut.shape[:2]
    rotated = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((w / 2, h / 2), 8, 1.0), (w, h))
    files = {
        "alpha/1.png": encode(astronaut),
        "alpha/2.jpg": encode(rotated, "JPEG"),
        "beta/1.png": encode(astronaut[:, ::-1].copy()),
        "beta/2.png": encode(np.clip(astronaut * 1.1, 0, 255).astype(np.uint8)),
        "gamma/1.jpg": encode(skimage.data.coffee(), "JPEG"),
        "gamma/2.jpg": b"not an image",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_bytes(data)
    return root


def run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        main(argv)
    return int(done.value.code or 0)


def test_cli_json(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["eval", "face", "--dataset", str(dataset), "--json", "--workers", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 6 and report["identities"] == 3 and report["enrolled"] == 4
    assert report["fte_reasons"] == {"no_face": 1, "not_an_image": 1}
    assert report["genuine_pairs"] == 2 and report["impostor_pairs"] == 4
    assert report["impostor_selection"] == "all" and report["rank1_probes"] == 4
    assert report["thresholds"] == []  # 4 impostor pairs measure no row of the table
    for key in ("eer", "tar_at_far_1%", "tar_at_far_0.1%", "threshold_at_far_1%", "rank1"):
        assert 0.0 <= report[key] <= 1.0 or key.startswith("threshold")
    stages = {"decode", "detect", "align", "embed", "detect_align_embed"}
    assert set(report["median_ms"]) == set(report["median_cpu_ms"]) == stages
    assert report["options"]["multiple_faces"] == "central"


def test_cli_table_and_limit(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["eval", "face", "--dataset", str(dataset), "--limit-identities", "1", "--no-progress"]
    assert run([*args, "--workers", "1", "--whole-image-fallback"]) == 0
    out = capsys.readouterr().out
    assert "enrolled" in out and "genuine_pairs" in out


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["eval", "face", "--dataset", str(tmp_path / "none")]) == 4  # not found
    assert "dataset_not_found" in capsys.readouterr().err
    assert run(["eval", "face", "--dataset", str(tmp_path), "--detector", "sift"]) == 2
    assert run(["eval", "face", "--dataset", str(tmp_path), "--multiple-faces", "all"]) == 2
    assert run(["eval", "face", "--help"]) == 0


def test_cli_cache_round_trip(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "c" / "run.npz"
    base = ["eval", "face", "--dataset", str(dataset), "--json", "--workers", "1"]
    assert run([*base, "--cache", str(cache)]) == 0
    first = json.loads(capsys.readouterr().out)
    records = eval_cache.load(cache)
    assert records.files.shape == (6,) and records.embeddings.shape == (6, P.EMBEDDING_DIM)
    assert sorted(records.reasons[~records.enrolled].tolist()) == ["no_face", "not_an_image"]
    assert np.all(records.boxes[~records.enrolled] == -1) and np.all(
        records.boxes[records.enrolled] >= 0
    )
    assert run([*base, "--cache", str(cache), "--diagnose"]) == 0  # reused: no extraction
    again = json.loads(capsys.readouterr().out)
    assert again["diagnosis"]["probes"] == first["rank1_probes"]
    for key in ("enrolled", "fte_reasons", "eer", "rank1", "genuine_pairs", "median_cpu_ms"):
        assert again[key] == first[key]
    assert first["ranking"] == f"csls k={P.CSLS_K}" and first["score"] == "cosine"
    args = [*base, "--cache", str(cache), "--diagnose", "--csls-k", "2", "--csls-pairs"]
    assert run(args) == 0
    csls = json.loads(capsys.readouterr().out)
    assert csls["score"] == "csls k=2" and csls["ranking"] == "csls k=2"
    assert csls["rank1_probes"] == first["rank1_probes"] == csls["diagnosis"]["probes"]
    assert csls["genuine_pairs"] == first["genuine_pairs"] and csls["eer"] is not None
    assert run([*base, "--cache", str(cache), "--csls-k", "0"]) == 0  # rank by cosine
    cosine = json.loads(capsys.readouterr().out)
    assert cosine["ranking"] == "cosine" and cosine["rank1"] == first["rank1_cosine"]
    assert cosine["eer"] == first["eer"]  # pairs are cosines either way
    assert run([*base, "--cache", str(cache), "--csls-k", "0", "--csls-pairs"]) == 3
    assert run([*base, "--cache", str(cache), "--csls-k", "-1"]) == 2
    assert run([*base, "--cache", str(cache), "--refresh"]) == 0  # only the 2 failures again
    assert eval_cache.load(cache).meta["re_extracted"] == 2
    assert json.loads(capsys.readouterr().out)["rank1"] == first["rank1"]


def test_cache_errors(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a cache")
    with pytest.raises(DatasetError) as err:
        eval_cache.load(bad)
    assert err.value.reason == "bad_cache"
    old = tmp_path / "old.npz"
    n = 2
    eval_cache.save(
        old,
        eval_cache.EvalRecords(
            files=np.array(["a", "b"]),
            identities=np.array(["x", "x"]),
            reasons=np.array(["", ""]),
            embeddings=np.zeros((n, P.EMBEDDING_DIM), np.float32),
            boxes=np.zeros((n, 4), np.int32),
            faces_found=np.ones(n, np.int32),
            whole_image=np.zeros(n, bool),
            notes=np.array(["", ""]),
        ),
    )
    assert eval_cache.load(old).files.tolist() == ["a", "b"]
    args = ["eval", "face", "--dataset", str(dataset), "--workers", "1", "--cache", str(old)]
    assert run(args) == 3  # made on other files
    assert "cache_mismatch" in capsys.readouterr().err
    assert run([*args, "--refresh"]) == 3
    assert "cache_mismatch" in capsys.readouterr().err
    with np.load(old) as z:
        fields = dict(z)
    fields["version"] = np.int32(99)
    np.savez(old, **fields)
    with pytest.raises(DatasetError) as err:
        eval_cache.load(old)
    assert err.value.reason == "bad_cache"


def test_report_gives_the_threshold_table_where_it_is_measurable() -> None:
    """Rows of P.TABLE_FMRS with at least P.TABLE_MIN_ABOVE impostors at their threshold:
    300 identities x 2 images make 179,400 impostor pairs: enough for 1e-2 to 3e-5; 1e-5
    would rest on 1.8 scores."""
    e, labels = embeddings([2] * 300, noise=0.6, seed=4)
    n = labels.size
    records = eval_cache.EvalRecords(
        files=np.array([f"f{k}" for k in range(n)]),
        identities=np.array([f"id{k}" for k in labels]),
        reasons=np.array([""] * n),
        embeddings=e,
        boxes=np.tile(np.array([0, 0, 99, 99], np.int32), (n, 1)),
        faces_found=np.ones(n, np.int32),
        whole_image=np.zeros(n, bool),
        notes=np.array([""] * n),
    )
    report = dataset_eval.report_from_records(records, "planted", csls_k=None)
    sets = dataset_eval.score_sets(e, labels, csls_k=None)
    g, i = sets["genuine"], sets["impostor"]
    assert i.size == 179_400
    expected = [1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5]
    assert [row["far"] for row in report["thresholds"]] == expected
    for row in report["thresholds"]:
        t = evaluation.threshold_at_fmr(i, row["far"])
        assert row["threshold"] == pytest.approx(t, abs=1e-5)
        assert np.mean(i.astype(np.float64) >= t) <= row["far"]
        assert row["tar"] == pytest.approx(np.mean(g.astype(np.float64) >= t), abs=1e-5)
    thresholds = [row["threshold"] for row in report["thresholds"]]
    assert thresholds == sorted(thresholds)


def test_diagnosis_finds_the_planted_miss() -> None:
    e, labels = embeddings([2, 3, 4], noise=0.05)
    e[0] = e[3]  # image 0 of identity 0 is a copy of an identity-1 image: a certain miss
    n = labels.size
    records = eval_cache.EvalRecords(
        files=np.array([f"f{k}" for k in range(n)] + ["fail"]),
        identities=np.array([f"id{k}" for k in labels] + ["id9"]),
        reasons=np.array([""] * n + ["no_face"]),
        embeddings=np.vstack([e, np.zeros((1, e.shape[1]), np.float32)]),
        boxes=np.tile(np.array([0, 0, 99, 99], np.int32), (n + 1, 1)),
        faces_found=np.array([2] + [1] * (n - 1) + [0], np.int32),
        whole_image=np.zeros(n + 1, bool),
        notes=np.array([""] * (n + 1)),
    )
    got = diagnose.rank1_misses(records)
    assert got["probes"] == 9 and got["misses"] >= 1 and got["probes_lost_to_fte"] == 0
    assert got["worst"][0]["probe"] == "f0" and got["worst"][0]["faces_found"] == 2
    assert got["by_mates"]["1"]["probes"] == 2 and got["several_faces_in_probe"]["misses"] == 1
    expected = dataset_eval.score_sets(e, labels)["rank1"]
    assert got["rank1"] == pytest.approx(expected, abs=1e-5)


def test_cli_table_shows_the_dataset_path_as_written(
    dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The title was rich markup: faces[db1] showed as faces, a folder holding [/] raised
    MarkupError after the whole evaluation."""
    monkeypatch.setenv("COLUMNS", "400")  # the title on one line
    folder = tmp_path / "faces[db1]" / "x[/]"
    folder.parent.mkdir(parents=True)
    folder.parent.joinpath("x[").mkdir()
    folder.symlink_to(dataset, target_is_directory=True)
    args = ["eval", "face", "--dataset", str(folder), "--limit-identities", "1", "--no-progress"]
    assert run([*args, "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "enrolled" in out and f"Face evaluation: {folder}" in out
