"""``bdx gallery load`` of ISO/IEC 19794-2 records and image folders: layouts, idempotency,
the quality gate, rejections and their report (synthetic templates only)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path

import pytest
from node_support import cli, load_json
from sqlalchemy import select
from sqlalchemy.orm import Session

from matcher.fingerprint.iso19794_2 import encode, encode_views
from matcher.fingerprint.template import FingerprintTemplate
from matcher.synthetic import synthetic_templates
from node.db.models import RecordState, Subject, TemplateRecord
from node.formats.discover import (
    NESTED_FOLDER,
    NOT_LOADABLE,
    FileKind,
    UnsupportedFileError,
    discover,
)
from node.services.galleries import GallerySet
from node.services.loading import LoadOptions, LoadService
from node.settings import Settings


@pytest.fixture(scope="module")
def templates() -> list[list[FingerprintTemplate]]:
    return synthetic_templates(4, 2, seed=3)


def fvc_folder(root: Path, templates: list[list[FingerprintTemplate]]) -> Path:
    root.mkdir()
    for f, impressions in enumerate(templates):
        for i, t in enumerate(impressions):
            (root / f"{101 + f}_{i + 1}.fmr").write_bytes(encode(t))
    return root


def test_discover_layouts(tmp_path: Path, templates: list[list[FingerprintTemplate]]) -> None:
    record = encode(templates[0][0])
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "left.bin").write_bytes(record)  # sniffed by its magic
    (tmp_path / "alice" / "face.JPG").write_bytes(b"not read here")
    (tmp_path / "alice" / "notes.txt").write_text("passed over")
    (tmp_path / "alice" / "scan.jp2").write_bytes(b"every container the decoder reads")
    (tmp_path / "alice" / "old").mkdir()  # one level only: passed over, and said so
    (tmp_path / "102_7.iso").write_bytes(record)
    (tmp_path / "loose.ist").write_bytes(record)
    (tmp_path / "loose.webp").write_bytes(b"")
    os.mkfifo(tmp_path / "pipe")  # never opened: sniffing it would block
    discovery = discover(tmp_path)
    found = [(f.label, f.subject, f.kind) for f in discovery.files]
    assert found == [
        ("102_7.iso", "102", FileKind.ISO_TEMPLATE),
        ("alice/face.JPG", "alice", FileKind.IMAGE),
        ("alice/left.bin", "alice", FileKind.ISO_TEMPLATE),
        ("alice/scan.jp2", "alice", FileKind.IMAGE),
        ("loose.ist", "loose", FileKind.ISO_TEMPLATE),
        ("loose.webp", "loose", FileKind.IMAGE),
    ]
    assert discovery.passed_over == [
        ("alice/notes.txt", NOT_LOADABLE),
        ("alice/old/", NESTED_FOLDER),
        ("pipe", NOT_LOADABLE),
    ]
    assert discovery.unreadable == []
    (single,) = discover(tmp_path / "102_7.iso").files
    assert (single.label, single.subject) == ("102_7.iso", "102_7")
    with pytest.raises(UnsupportedFileError):  # named on its own: an error, not nothing
        discover(tmp_path / "alice" / "notes.txt")


def test_a_file_gone_since_it_was_listed_is_rejected_not_fatal(
    session: Session,
    galleries: GallerySet,
    tmp_path: Path,
    templates: list[list[FingerprintTemplate]],
) -> None:
    root = fvc_folder(tmp_path / "fvc", templates[:2])
    found = discover(root)
    (root / "101_1.fmr").unlink()
    report = LoadService(session, galleries).load(found, LoadOptions(workers=1), actor="test")
    assert [(r.file, r.reason) for r in report.rejected] == [("101_1.fmr", "unreadable_file")]
    assert report.enrolled == 3


def _modes_are_enforced(directory: Path) -> bool:
    """Whether this process is refused a mode-000 file (root with CAP_DAC_OVERRIDE is not)."""
    probe = directory / "probe"
    probe.write_bytes(b"x")
    probe.chmod(0)
    try:
        probe.read_bytes()
    except PermissionError:
        return True
    return False


def test_unreadable_files_and_folders_are_rejected_not_fatal(
    node_env: Settings,
    tmp_path: Path,
    templates: list[list[FingerprintTemplate]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A file or subject folder the load may not read is rejected (exit 3), the rest loaded
    (the first PermissionError ended the whole load with a traceback). As root, run it
    without the override: ``setpriv --inh-caps=-dac_override,-dac_read_search
    --bounding-set=-dac_override,-dac_read_search``."""
    if not _modes_are_enforced(tmp_path):
        pytest.skip("this process reads files whatever their mode (root's CAP_DAC_OVERRIDE)")
    root = tmp_path / "src"
    for name, t in (("alice", templates[0][0]), ("bob", templates[1][0])):
        (root / name).mkdir(parents=True)
        (root / name / "1.fmr").write_bytes(encode(t))
    (root / "carol.fmr").write_bytes(encode(templates[2][0]))
    (root / "dave.bin").write_bytes(encode(templates[3][0]))  # sniffed: must be opened
    for locked in (root / "bob", root / "carol.fmr", root / "dave.bin"):
        locked.chmod(0)
    try:
        code, out = load_json(root, capsys)
    finally:
        for locked in (root / "bob", root / "carol.fmr", root / "dave.bin"):
            locked.chmod(0o700)
    assert code == 3 and out["enrolled"] == 1
    assert sorted((f["file"], f["error"]) for f in out["failed"]) == [
        ("bob/", "unreadable_file"),
        ("carol.fmr", "unreadable_file"),
        ("dave.bin", "unreadable_file"),
    ]


def test_load_fvc_templates_is_idempotent(
    node_env: Settings,
    session: Session,
    tmp_path: Path,
    templates: list[list[FingerprintTemplate]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = fvc_folder(tmp_path / "fvc", templates)
    code, first = load_json(root, capsys)
    assert code == 0
    assert first == {
        "enrolled": 8,
        "subjects": 4,
        "skipped": 0,
        "failed": [],
        "notes": [],
        "passed_over": [],
    }
    code, again = load_json(root, capsys)
    assert (code, again["enrolled"], again["skipped"]) == (0, 0, 8)

    # a new file in the same folder is all a re-run adds
    (root / "105_1.fmr").write_bytes(encode(templates[0][1]))
    code, more = load_json(root, capsys)
    assert (code, more["enrolled"], more["skipped"]) == (0, 1, 8)

    subjects = set(session.scalars(select(Subject.external_id)))
    assert subjects == {"101", "102", "103", "104", "105"}
    rows = session.execute(select(TemplateRecord.reference, TemplateRecord.state)).all()
    assert {s for _, s in rows} == {RecordState.ACTIVE} and len(rows) == 9
    with GallerySet.open(node_env.gallery_path) as galleries:
        assert galleries.references() == {ref for ref, _ in rows}


def test_load_multi_view_record_with_the_pool(
    node_env: Settings,
    session: Session,
    tmp_path: Path,
    templates: list[list[FingerprintTemplate]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    fingers = [dataclasses.replace(templates[i][0], finger_position=i + 1) for i in range(3)]
    (tmp_path / "p" / "s-1").mkdir(parents=True)
    (tmp_path / "p" / "s-1" / "tenprint.fmr").write_bytes(encode_views(fingers))
    (tmp_path / "p" / "s-2").mkdir()
    (tmp_path / "p" / "s-2" / "one.fmr").write_bytes(encode(templates[3][0]))
    code, out, err = cli(["gallery", "load", str(tmp_path / "p"), "--workers", "2"], capsys)
    assert code == 0, err
    assert "enrolled 4 templates of 2 subjects" in out
    positions = session.scalars(select(TemplateRecord.finger_position)).all()
    assert sorted(p or 0 for p in positions) == [0, 1, 2, 3]


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_rejections_are_reported_and_exit_3(
    node_env: Settings,
    tmp_path: Path,
    templates: list[list[FingerprintTemplate]],
    capsys: pytest.CaptureFixture[str],
    suffix: str,
) -> None:
    root = fvc_folder(tmp_path / "fvc", templates[:2])
    record = encode(templates[2][0])
    (root / "201_1.fmr").write_bytes(record[:-3])  # truncated
    (root / "202_1.fmr").write_bytes(b"XYZ\0" + record[4:])  # claimed template, bad magic
    (root / "203_1.png").write_bytes(b"\x89PNG broken")
    report_path = tmp_path / f"report{suffix}"
    code, out = load_json(root, capsys, "--report", str(report_path))
    assert code == 3
    assert out["enrolled"] == 4
    expected = [
        ("201_1.fmr", "truncated"),
        ("202_1.fmr", "bad_magic"),
        ("203_1.png", "not_an_image"),
    ]
    assert [(f["file"], f["error"]) for f in out["failed"]] == expected
    if suffix == ".json":
        rows = json.loads(report_path.read_text())
    else:
        with report_path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    assert [(r["file"], r["reason"]) for r in rows] == expected
    assert all(r["detail"] for r in rows)


def test_quality_gate(
    node_env: Settings,
    tmp_path: Path,
    templates: list[list[FingerprintTemplate]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "q").mkdir()
    good = dataclasses.replace(templates[0][0], image_quality=80)
    poor = dataclasses.replace(templates[1][0], image_quality=20)
    (tmp_path / "q" / "1_1.fmr").write_bytes(encode(good))
    (tmp_path / "q" / "2_1.fmr").write_bytes(encode(poor))
    code, out = load_json(tmp_path / "q", capsys, "--min-quality", "50")
    assert (code, out["enrolled"]) == (3, 1)
    (failure,) = out["failed"]
    assert (failure["file"], failure["error"]) == ("2_1.fmr", "low_quality")
    assert "20" in failure["detail"] and "50" in failure["detail"]


def test_load_missing_path(node_env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    """A path that is not there was `not_a_directory`, the reason of a settings folder that
    cannot be made; it is not found as any other missing file, and a device is no input."""
    code, _, err = cli(["gallery", "load", "/nonexistent/bdx-load"], capsys)
    assert (code, err) == (
        4,
        "bdx: error: /nonexistent/bdx-load does not exist [file_not_found]\n",
    )
    code, _, err = cli(["gallery", "load", "/dev/null"], capsys)
    assert (code, err) == (
        3,
        "bdx: error: /dev/null is neither a file nor a directory [unsupported_file]\n",
    )


def test_subject_ids_the_database_would_refuse_are_rejected_per_file(
    node_env: Settings,
    session: Session,
    tmp_path: Path,
    templates: list[list[FingerprintTemplate]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A folder name is a subject id: one the API would refuse (200 characters: a DataError on
    PostgreSQL that dropped the whole batch; outer spaces: stored silently on SQLite) is a
    rejected file, and the rest loads."""
    root = tmp_path / "folders"
    for name in ("ok", "x" * 200, " lead space"):
        (root / name).mkdir(parents=True)
        (root / name / "a.fmr").write_bytes(encode(templates[0][0]))
    code, out = load_json(root, capsys)
    assert code == 3 and out["enrolled"] == 1
    assert sorted(f["error"] for f in out["failed"]) == ["bad_subject", "bad_subject"]
    assert session.scalars(select(Subject.external_id)).all() == ["ok"]


def test_names_that_are_not_utf8_are_rejected_per_file(
    node_env: Settings,
    session: Session,
    tmp_path: Path,
    templates: list[list[FingerprintTemplate]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A folder or file name whose bytes are not UTF-8 (Python's lone surrogates) was a
    UnicodeEncodeError traceback that stopped the whole load: the folder is a subject id no
    text holds (``bad_subject``), the file a name no key is made of (``bad_file_name``); the
    rest loads, and the names are shown escaped."""
    root = tmp_path / "folders"
    bad_folder, bad_file = "sub\udcff", "x\udcfe.fmr"  # the bytes b"sub\xff", b"x\xfe.fmr"
    for folder, name in (("ok", "a.fmr"), ("ok", bad_file), (bad_folder, "a.fmr")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / name).write_bytes(encode(templates[0][0]))
    code, out = load_json(root, capsys)
    assert code == 3 and out["enrolled"] == 1
    assert sorted((f["file"], f["error"]) for f in out["failed"]) == [
        (f"ok/{bad_file}", "bad_file_name"),
        (f"{bad_folder}/a.fmr", "bad_subject"),
    ]
    assert session.scalars(select(Subject.external_id)).all() == ["ok"]
    code, _, err = cli(["gallery", "load", str(root), "--workers", "1"], capsys)
    assert code == 3 and "rejected sub\\udcff/a.fmr:" in err and "[bad_file_name]" in err


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_a_report_names_files_that_are_not_utf8_escaped(
    node_env: Settings,
    tmp_path: Path,
    templates: list[list[FingerprintTemplate]],
    capsys: pytest.CaptureFixture[str],
    suffix: str,
) -> None:
    """A rejected file whose name is not UTF-8 (here in a folder refused as bad_subject) made
    the CSV report a UnicodeEncodeError traceback, exit 1, after the load had committed."""
    root = tmp_path / "folders"
    for folder, name in (("ok", "a.fmr"), (" bad", "x\udcff.fmr")):
        (root / folder).mkdir(parents=True)
        (root / folder / name).write_bytes(encode(templates[0][0]))
    report_path = tmp_path / f"report{suffix}"
    code, out = load_json(root, capsys, "--report", str(report_path))
    assert code == 3 and out["enrolled"] == 1
    if suffix == ".json":
        rows = json.loads(report_path.read_text(encoding="utf-8"))
        assert [(r["file"], r["reason"]) for r in rows] == [(" bad/x\udcff.fmr", "bad_subject")]
    else:
        with report_path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert [(r["file"], r["reason"]) for r in rows] == [(" bad/x\\udcff.fmr", "bad_subject")]


def test_report_path_is_checked_before_loading(
    node_env: Settings,
    session: Session,
    tmp_path: Path,
    templates: list[list[FingerprintTemplate]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = fvc_folder(tmp_path / "fvc", templates[:1])
    missing = tmp_path / "no-such-folder" / "report.csv"
    code, _, err = cli(["gallery", "load", str(root), "--report", str(missing)], capsys)
    assert code == 2 and "[bad_report_path]" in err and len(err.strip().splitlines()) == 1
    assert session.scalars(select(TemplateRecord.id)).all() == []  # nothing loaded


def test_a_single_unsupported_file_is_an_error(
    node_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lone = tmp_path / "finger.xcf"  # an image, but of a format the decoder does not read
    lone.write_bytes(b"gimp xcf v011")
    code, _, err = cli(["gallery", "load", str(lone)], capsys)
    assert code == 3 and "[unsupported_file]" in err


def test_oversized_files_are_rejected_unread(
    node_env: Settings,
    tmp_path: Path,
    templates: list[list[FingerprintTemplate]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from node.services import loading

    root = fvc_folder(tmp_path / "fvc", templates[:1])
    big = root / "900_1.an2"
    with big.open("wb") as fh:  # sparse: no disk or memory spent
        fh.truncate(loading.MAX_FILE_BYTES + 1)
    code, out = load_json(root, capsys)
    assert code == 3 and out["enrolled"] == 2
    assert [(f["file"], f["error"]) for f in out["failed"]] == [("900_1.an2", "too_large")]


def test_text_output_is_stdout_and_the_progress_stderr(
    node_env: Settings,
    tmp_path: Path,
    templates: list[list[FingerprintTemplate]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The progress bars of load and upgrade were drawn on stdout: a redirected report
    began with a blank line."""
    root = fvc_folder(tmp_path / "fvc", templates)
    code, out, err = cli(["gallery", "load", str(root), "--workers", "1"], capsys)
    assert code == 0 and out.startswith("enrolled 8 templates"), (out[:80], err)
    code, out, err = cli(["gallery", "upgrade"], capsys)
    assert code == 0 and out.endswith(": current\n") and out.count("\n") == 1, (out, err)


def _restrictions_by_source(session: Session) -> dict[str, object]:
    session.expire_all()
    rows = session.execute(select(TemplateRecord.source, TemplateRecord.restrictions)).all()
    return {source: restrictions for source, restrictions in rows}


def test_load_restrictions_apply_to_the_records_it_creates_only(
    node_env: Settings,
    session: Session,
    tmp_path: Path,
    templates: list[list[FingerprintTemplate]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An asylum gallery was loaded unrestricted (searchable by every peer) until each subject
    was restricted by hand: --restrictions sets them as each record is enrolled. A re-run
    skips what is loaded, its records unchanged; only the new file's records get the new
    value."""
    root = fvc_folder(tmp_path / "fvc", templates[:2])
    asylum = '{"asylum_nationality": "sy", "purposes": ["asylum"]}'
    code, first = load_json(root, capsys, "--restrictions", asylum)
    assert (code, first["enrolled"]) == (0, 4)
    stored = _restrictions_by_source(session)
    wanted = {
        "no_exchange_consent": False,
        "asylum_nationality": "SY",
        "peers": None,
        "purposes": ["asylum"],
    }
    assert list(stored.values()) == [wanted] * 4
    (root / "105_1.fmr").write_bytes(encode(templates[2][0]))
    code, again = load_json(root, capsys, "--restrictions", '{"no_exchange_consent": true}')
    assert (code, again["enrolled"], again["skipped"]) == (0, 1, 4)
    after = _restrictions_by_source(session)
    assert {k: v for k, v in after.items() if k in stored} == stored
    (new,) = [v for k, v in after.items() if k not in stored]
    assert new == {
        "no_exchange_consent": True,
        "asylum_nationality": None,
        "peers": None,
        "purposes": None,
    }


@pytest.mark.parametrize(
    "value", ["{", '{"asylum_nationality": "Syria"}', '{"peers": "MY"}', '{"nationality": "SY"}']
)
def test_load_refuses_bad_restrictions_before_loading(
    node_env: Settings,
    session: Session,
    tmp_path: Path,
    templates: list[list[FingerprintTemplate]],
    capsys: pytest.CaptureFixture[str],
    value: str,
) -> None:
    root = fvc_folder(tmp_path / "fvc", templates[:1])
    code, out, err = cli(["gallery", "load", str(root), "--restrictions", value], capsys)
    assert code == 2 and not out and "--restrictions" in err, err
    assert _restrictions_by_source(session) == {}
