"""``bdx subjects delete --file`` and ``POST /subjects/deletions``: an operator deletes many
subjects through a running node, each as the single deletion does."""

from __future__ import annotations

import io
import json
import secrets
import uuid
from pathlib import Path

import httpx
import pytest
from node_support import bearer, cli, enrol
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from node.db.models import AuditEvent, Role, Subject
from node.exchange.references import HitReferences
from node.services import params
from node.services.galleries import GallerySet, subject_key

SUBJECTS = {"case-1": 2, "case 2": 1, "case-3": 3}


@pytest.fixture
def operator(
    live_server: str,
    make_token: object,
    sessions: sessionmaker[Session],
    galleries: GallerySet,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> list[str]:
    """Connection options of an operator; the node holds :data:`SUBJECTS`."""
    monkeypatch.delenv("BDX_TOKEN", raising=False)
    for name, n in SUBJECTS.items():
        enrol(sessions, galleries, name, n)
    token = make_token(Role.OPERATOR)  # type: ignore[operator]
    path = tmp_path / "token"
    path.write_text(token + "\n")
    return ["--url", live_server, "--token-file", str(path)]


def _enrolled(sessions: sessionmaker[Session]) -> set[str]:
    with sessions() as s:
        return set(s.scalars(select(Subject.external_id)))


def _deletions(sessions: sessionmaker[Session]) -> list[str | None]:
    with sessions() as s:
        query = select(AuditEvent.target).where(AuditEvent.action == "subject.delete")
        return list(s.scalars(query.order_by(AuditEvent.id)))


def test_a_list_deletes_each_subject_and_reports_the_unknown(
    operator: list[str],
    sessions: sessionmaker[Session],
    galleries: GallerySet,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    listed = tmp_path / "ids.txt"
    listed.write_text("# to erase\ncase-1\n\n  case 2  \nghost\ncase-1\n")
    code, out, err = cli(
        ["subjects", "delete", "--file", str(listed), "-y", "--json", *operator], capsys
    )
    assert code == 4, err  # some were not found; the others are deleted
    assert json.loads(out) == {"deleted": 2, "templates_removed": 3, "not_found": ["ghost"]}
    assert _enrolled(sessions) == {"case-3"}
    assert _deletions(sessions) == ["case-1", "case 2"]  # one event per subject, as DELETE
    assert len(galleries.references()) == SUBJECTS["case-3"]  # out of the gallery too
    # run again (as after an interruption): nothing more is deleted, every id reported
    code, out, err = cli(["subjects", "delete", "--file", str(listed), "-y", *operator], capsys)
    assert code == 4 and out.startswith("deleted 0 subjects"), err
    assert "no subject ghost" in out and "no subject case-1" in out
    assert _deletions(sessions) == ["case-1", "case 2"]


def test_a_list_of_known_subjects_is_exit_0_with_a_summary(
    operator: list[str],
    sessions: sessionmaker[Session],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    listed = tmp_path / "ids.txt"
    listed.write_text("case-3\ncase-1\n")
    code, out, err = cli(["subjects", "delete", "--file", str(listed), "--yes", *operator], capsys)
    assert code == 0, err
    assert out.startswith("deleted 2 subjects: their 5 templates are out of every search")
    assert _enrolled(sessions) == {"case 2"}


def test_the_list_can_come_from_standard_input(
    operator: list[str],
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("case 2\n"))
    code, _, err = cli(["subjects", "delete", "--file", "-", *operator], capsys)
    assert code == 2 and "[confirmation_needed]" in err  # stdin is the list: --yes is needed
    assert _enrolled(sessions) == set(SUBJECTS)
    monkeypatch.setattr("sys.stdin", io.StringIO("case 2\n"))
    code, out, err = cli(
        ["subjects", "delete", "--file", "-", "--yes", "--json", *operator], capsys
    )
    assert code == 0, err
    assert json.loads(out)["deleted"] == 1 and _enrolled(sessions) == {"case-1", "case-3"}


def test_a_bad_list_deletes_nothing_and_names_its_lines(
    operator: list[str],
    sessions: sessionmaker[Session],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    listed = tmp_path / "ids.txt"
    listed.write_text("case-1\nbad/id\n# fine\ncase 2\n" + "x" * 200 + "\ncase\u200b3\n")
    code, out, err = cli(["subjects", "delete", "--file", str(listed), "-y", *operator], capsys)
    assert code == 3 and not out  # bad contents of a file (README: 3, never 2)
    assert "line 2, 5, 6:" in err and "[bad_id_list]" in err and len(err.splitlines()) == 1
    assert _enrolled(sessions) == set(SUBJECTS) and _deletions(sessions) == []
    listed.write_text("# nothing\n\n")
    code, _, err = cli(["subjects", "delete", "--file", str(listed), "-y", *operator], capsys)
    assert code == 3 and "lists no external id" in err
    listed.write_bytes("case-1\nJos\xe9\n".encode("latin-1"))  # not UTF-8: was 4 no_id_list
    code, _, err = cli(["subjects", "delete", "--file", str(listed), "-y", *operator], capsys)
    assert code == 3 and "byte 11 is not UTF-8 text" in err and "[bad_id_list]" in err, err
    listed.write_bytes(b"\xef\xbb\xbfcase-1\nJos\xe9\n")  # a BOM first: the byte counts it
    code, _, err = cli(["subjects", "delete", "--file", str(listed), "-y", *operator], capsys)
    assert code == 3 and "byte 14 is not UTF-8 text" in err and "[bad_id_list]" in err, err
    assert _enrolled(sessions) == set(SUBJECTS)
    code, _, err = cli(
        ["subjects", "delete", "--file", str(tmp_path / "none"), "-y", *operator], capsys
    )
    assert code == 4 and "[no_id_list]" in err
    code, _, err = cli(
        ["subjects", "delete", "case-1", "--file", str(listed), "-y", *operator], capsys
    )
    assert code == 2 and _enrolled(sessions) == set(SUBJECTS)


def test_the_endpoint_bounds_its_list(operator: list[str], sessions: sessionmaker[Session]) -> None:
    url, token = operator[1], Path(operator[3]).read_text().strip()
    too_many = [f"id-{i}" for i in range(params.MAX_BULK_DELETIONS + 1)]
    too_many[0] = "case-1"
    answer = httpx.post(
        url + "/subjects/deletions", json={"external_ids": too_many}, headers=bearer(token)
    )
    assert answer.status_code == 422
    for body in ({"external_ids": []}, {"external_ids": ["a/b"]}, {"ids": ["case-1"]}):
        answer = httpx.post(url + "/subjects/deletions", json=body, headers=bearer(token))
        assert answer.status_code == 422, body
    assert _enrolled(sessions) == set(SUBJECTS)
    answer = httpx.post(
        url + "/subjects/deletions",
        json={"external_ids": ["ghost", "case-3"]},
        headers=bearer(token),
    )
    assert answer.status_code == 200
    assert answer.json() == {
        "deleted": [{"external_id": "case-3", "templates_removed": 3}],
        "not_found": ["ghost"],
    }


def test_an_officer_may_not_delete_in_bulk(
    operator: list[str],
    make_token: object,
    sessions: sessionmaker[Session],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    officer = make_token(Role.OFFICER)  # type: ignore[operator]
    answer = httpx.post(
        operator[1] + "/subjects/deletions",
        json={"external_ids": ["case-1"]},
        headers=bearer(officer),
    )
    assert answer.status_code == 403
    listed = tmp_path / "ids.txt"
    listed.write_text("case-1\n")
    args = ["subjects", "delete", "--file", str(listed), "-y", *operator[:2], "--token", officer]
    code, _, err = cli(args, capsys)
    assert code == 5 and "[wrong_role]" in err
    assert _enrolled(sessions) == set(SUBJECTS)


def test_hit_references_of_a_subject_deleted_in_bulk_say_deleted(
    operator: list[str],
    engine: Engine,
    sessions: sessionmaker[Session],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with sessions() as s:
        subject_id = s.scalars(select(Subject.id).where(Subject.external_id == "case-1")).one()
    reference = HitReferences(engine, secrets.token_bytes(32)).issue(
        uuid.uuid4(), "TH", subject_key(subject_id)
    )
    listed = tmp_path / "ids.txt"
    listed.write_text("case-1\n")
    code, _, err = cli(["subjects", "delete", "--file", str(listed), "-y", *operator], capsys)
    assert code == 0, err
    code, out, err = cli(["subjects", "reference", reference, "--json", *operator], capsys)
    assert code == 0, err
    assert json.loads(out)["state"] == "deleted"


def test_a_list_with_a_byte_order_mark_is_read(
    operator: list[str],
    sessions: sessionmaker[Session],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A UTF-8 list saved with a byte order mark (as some editors save) was refused: its
    first id read as a bad one (line 1, bad_id_list)."""
    listed = tmp_path / "ids.txt"
    listed.write_text("case-1\ncase 2\n", encoding="utf-8-sig")
    args = ["subjects", "delete", "--file", str(listed), "-y", "--json", *operator]
    code, out, err = cli(args, capsys)
    assert code == 0, err
    assert json.loads(out)["deleted"] == 2 and _enrolled(sessions) == {"case-3"}
