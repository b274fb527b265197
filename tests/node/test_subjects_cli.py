"""``bdx subjects``: an operator lists, shows and deletes subjects through a running node."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest
from node_support import cli, enrol, free_port
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from node.db.models import AuditEvent, Role, Subject
from node.repositories.records import RecordRepository
from node.services.galleries import GallerySet

BDX = [sys.executable, "-c", "from node.cli import main; main()"]


@pytest.fixture
def operator(
    live_server: str,
    make_token: object,
    sessions: sessionmaker[Session],
    galleries: GallerySet,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> list[str]:
    """Connection options of an operator; the node holds subjects case-1 (2) and case 2 (1)."""
    monkeypatch.delenv("BDX_TOKEN", raising=False)
    enrol(sessions, galleries, "case-1", 2)
    enrol(sessions, galleries, "case 2", 1)
    token = make_token(Role.OPERATOR)  # type: ignore[operator]
    path = tmp_path / "token"
    path.write_text(token + "\n")
    return ["--url", live_server, "--token-file", str(path)]


def test_list_pages_through_subjects(
    operator: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(["subjects", "list", *operator], capsys)
    assert code == 0, err
    assert [line.split("\t")[:2] for line in out.splitlines()] == [
        ["case-1", "2 records"],
        ["case 2", "1 records"],
    ]
    code, out, err = cli(["subjects", "list", "--limit", "1", "--json", *operator], capsys)
    page = json.loads(out)
    assert code == 0 and [s["external_id"] for s in page["items"]] == ["case-1"]
    code, out, err = cli(["subjects", "list", "--limit", "1", *operator], capsys)
    assert f"--after {page['next_after']}" in err
    after = ["--after", str(page["next_after"])]
    code, out, _ = cli(["subjects", "list", "--json", *after, *operator], capsys)
    assert [s["external_id"] for s in json.loads(out)["items"]] == ["case 2"]


def test_show_gives_records(operator: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(["subjects", "show", "case 2", "--json", *operator], capsys)
    assert code == 0, err
    subject = json.loads(out)
    assert subject["external_id"] == "case 2" and len(subject["records"]) == 1
    code, out, _ = cli(["subjects", "show", "case-1", *operator], capsys)
    assert out.startswith("subject case-1") and out.count("record ") == 2 and "finger 2" in out


def test_restrict_a_subject_or_one_of_its_records(
    operator: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    asylum = '{"asylum_nationality": "sy", "purposes": ["asylum"]}'
    code, out, err = cli(
        ["subjects", "restrict", "case-1", "--restrictions", asylum, *operator], capsys
    )
    assert code == 0, err
    assert out.startswith("subject case-1: 2 records now restricted") and '"SY"' in out
    code, out, _ = cli(["subjects", "show", "case-1", "--json", *operator], capsys)
    records = json.loads(out)["records"]
    assert {r["restrictions"]["asylum_nationality"] for r in records} == {"SY"}
    first, second = (r["reference"] for r in records)
    consent = ["--restrictions", '{"no_exchange_consent": true}']
    args = ["subjects", "restrict", "case-1", "--record", first, *consent, "--json", *operator]
    code, out, err = cli(args, capsys)
    assert code == 0, err
    done = json.loads(out)
    assert done["reference"] == first and done["restrictions"]["no_exchange_consent"] is True
    assert done["restrictions"]["asylum_nationality"] is None  # replaced, not merged
    code, out, _ = cli(["subjects", "show", "case-1", "--json", *operator], capsys)
    after = {r["reference"]: r["restrictions"] for r in json.loads(out)["records"]}
    assert after[second]["asylum_nationality"] == "SY"
    # another subject's record is not found (and not restricted); an unknown subject neither
    args = ["subjects", "restrict", "case 2", "--record", second, *consent, *operator]
    code, _, err = cli(args, capsys)
    assert code == 4 and "[unknown_record]" in err, err
    code, _, err = cli(["subjects", "restrict", "ghost", *consent, *operator], capsys)
    assert code == 4 and "[unknown_subject]" in err, err
    code, out, _ = cli(["subjects", "show", "case-1", "--json", *operator], capsys)
    assert {r["reference"]: r["restrictions"] for r in json.loads(out)["records"]} == after


@pytest.mark.parametrize(
    "args",
    [
        ["--restrictions", '{"asylum_nationality": "Syria"}'],
        ["--restrictions", "not json"],
        ["--restrictions", '{"nationality": "SY"}'],
        [],
    ],
)
def test_restrict_refuses_bad_restrictions_as_a_usage_error(
    operator: list[str], capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    code, out, err = cli(["subjects", "restrict", "case-1", *args, *operator], capsys)
    assert code == 2 and not out and "--restrictions" in err, err
    code, out, _ = cli(["subjects", "show", "case-1", "--json", *operator], capsys)
    assert {r["restrictions"]["asylum_nationality"] for r in json.loads(out)["records"]} == {None}


def test_delete_needs_yes_off_a_terminal(
    operator: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(["subjects", "delete", "case-1", *operator], capsys)
    assert code == 2 and "[confirmation_needed]" in err
    code, out, _ = cli(["subjects", "show", "case-1", "--json", *operator], capsys)
    assert code == 0 and all(r["state"] == "active" for r in json.loads(out)["records"])
    code, out, err = cli(["subjects", "delete", "case-1", "--yes", "--json", *operator], capsys)
    assert code == 0, err
    assert json.loads(out) == {"external_id": "case-1", "templates_removed": 2}
    code, _, err = cli(["subjects", "show", "case-1", *operator], capsys)
    assert code == 4 and err.startswith("bdx: error:") and len(err.splitlines()) == 1
    code, _, err = cli(["subjects", "delete", "case-1", "-y", *operator], capsys)
    assert code == 4


def test_delete_says_the_templates_are_erased_later(
    operator: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """It said "2 templates removed" while they leave the gallery files at the next erasure
    round (README, "Deletion")."""
    code, out, err = cli(["subjects", "delete", "case-1", "--yes", *operator], capsys)
    assert (code, out) == (
        0,
        "deleted subject case-1: its 2 templates are out of every search and erased from the "
        "gallery files at the next erasure round\n",
    ), err


def test_a_deletion_the_gallery_refused_shows_pending(
    operator: list[str], galleries: GallerySet, capsys: pytest.CaptureFixture[str]
) -> None:
    """`show` and `list` gave no sign that a subject's deletion had begun and failed. The
    node's 503 storage_error is exit 7, its storage failed (it was 6, node unreachable)."""
    (gallery,) = galleries.galleries().values()
    blocker = gallery.directory / f"tomb-{gallery.generation + 1:010d}.npy"
    blocker.mkdir()  # the deletion's gallery write fails (EISDIR)
    code, _, err = cli(["subjects", "delete", "case-1", "--yes", *operator], capsys)
    assert (code, len(err.splitlines())) == (7, 1) and err.endswith(" [storage_error]\n"), err
    assert "the node's storage failed during the deletion: the gallery could not be written" in err
    code, out, err = cli(["subjects", "show", "case-1", *operator], capsys)
    assert code == 0 and out.splitlines()[1].startswith("  deletion pending"), out
    code, out, _ = cli(["subjects", "list", *operator], capsys)
    assert [line.split("\t")[::3] for line in out.splitlines()] == [
        ["case-1", "deleting"],
        ["case 2", "active"],
    ]
    blocker.rmdir()
    code, _, err = cli(["subjects", "delete", "case-1", "--yes", *operator], capsys)
    assert code == 0, err


def test_a_subject_enrolled_again_after_a_failed_deletion_is_restricted(
    operator: list[str],
    sessions: sessionmaker[Session],
    galleries: GallerySet,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A subject whose deletion failed and that was enrolled again (its new records active,
    searched and shared) was refused every restriction (409 subject_deleting) until the
    erasure task ran, with a message about merges."""
    (gallery,) = galleries.galleries().values()
    blocker = gallery.directory / f"tomb-{gallery.generation + 1:010d}.npy"
    blocker.mkdir()  # the deletion's gallery write fails (EISDIR)
    code, _, err = cli(["subjects", "delete", "case-1", "--yes", *operator], capsys)
    assert code == 7, err
    consent = ["--restrictions", '{"no_exchange_consent": true}']
    code, _, err = cli(["subjects", "restrict", "case-1", *consent, *operator], capsys)
    assert code == 3 and "[subject_deleting]" in err and "is being deleted" in err, err
    assert "merged" not in err
    blocker.rmdir()
    enrol(sessions, galleries, "case-1", 1)  # the person enrolled again under the same id
    code, out, err = cli(["subjects", "restrict", "case-1", *consent, "--json", *operator], capsys)
    assert code == 0, err
    assert [r["restrictions"]["no_exchange_consent"] for r in json.loads(out)["records"]] == [True]
    with sessions() as s:
        subject_id = s.scalar(select(Subject.id).where(Subject.external_id == "case-1"))
        rows = RecordRepository(s).of_subject(subject_id or 0)
        by_state = sorted(
            (r.state.value, bool(r.restrictions.get("no_exchange_consent"))) for r in rows
        )
    assert by_state == [("active", True), ("deleting", False), ("deleting", False)]


def test_refusals_have_exit_codes(
    operator: list[str], make_token: object, capsys: pytest.CaptureFixture[str]
) -> None:
    url = operator[:2]
    code, _, err = cli(["subjects", "list", *url], capsys)
    assert code == 2 and "[no_token]" in err
    officer = make_token(Role.OFFICER)  # type: ignore[operator]
    code, _, err = cli(["subjects", "list", *url, "--token", officer], capsys)
    assert code == 5 and "[wrong_role]" in err
    code, _, err = cli(["subjects", "list", *url, "--token", "bdx_not-a-token"], capsys)
    assert code == 5
    gone = ["--url", f"http://127.0.0.1:{free_port()}", *operator[2:]]
    code, _, err = cli(["subjects", "list", *gone], capsys)
    assert code == 6 and "[node_unreachable]" in err
    code, _, err = cli(["subjects", "list", *url, "--token-file", "/nonexistent/token"], capsys)
    assert code == 2 and "cannot read the token file" in err and "[no_token]" in err


def test_a_token_typed_on_the_command_line_is_warned_about(
    operator: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """It is in ps and /proc/PID/cmdline for every local user while the command waits. The
    warning is one ``bdx: warning:`` line, as every warning (it was ``warning: ...``)."""
    token = Path(operator[3]).read_text().strip()
    code, out, err = cli(["subjects", "list", *operator[:2], "--token", token], capsys)
    assert code == 0 and "case-1" in out
    assert err.startswith("bdx: warning: --token on the command line is visible to other users")
    assert len(err.splitlines()) == 1 and token not in err
    code, _, err = cli(["subjects", "list", *operator], capsys)
    assert code == 0 and err == ""


def test_delete_asks_at_a_terminal(operator: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Answering no at the prompt deletes nothing (exit 130, as an interruption)."""
    leader, follower = pty.openpty()
    try:
        with subprocess.Popen(
            [*BDX, "subjects", "delete", "case 2", *operator],
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as proc:
            os.write(leader, b"n\n")
            out, err = proc.communicate(timeout=60)
    finally:
        os.close(leader)
        os.close(follower)
    assert proc.returncode == 130, err
    assert b"Delete subject case 2" in out and b"aborted" in err
    code, out_text, _ = cli(["subjects", "show", "case 2", "--json", *operator], capsys)
    assert code == 0 and json.loads(out_text)["records"][0]["state"] == "active"


def test_a_server_that_is_no_node_is_exit_6(
    operator: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A URL that answers 200 with a web page (another server, a proxy) is a bad answer."""
    (tmp_path / "subjects").write_text("<html>not a node</html>")
    port = free_port()
    with subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as web:
        try:
            args = ["subjects", "list", "--url", f"http://127.0.0.1:{port}", *operator[2:]]
            for _ in range(50):
                code, _, err = cli(args, capsys)
                if "[node_unreachable]" not in err:
                    break
                time.sleep(0.1)  # the server is starting
            assert code == 6 and "[bad_answer]" in err and len(err.splitlines()) == 1
        finally:
            web.terminate()


def test_delete_with_stdin_closed_needs_yes(
    operator: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Run with stdin closed (``<&-``, some daemons), sys.stdin is None: an AttributeError
    traceback, exit 1. It is not a terminal."""
    done = subprocess.run(
        [*BDX, "subjects", "delete", "case 2", *operator],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.close(0),
    )
    assert (done.returncode, done.stderr.count("\n")) == (2, 1), done.stderr
    assert "[confirmation_needed]" in done.stderr
    code, out, _ = cli(["subjects", "show", "case 2", "--json", *operator], capsys)
    assert code == 0 and json.loads(out)["records"][0]["state"] == "active"


def test_a_terminal_that_cannot_show_an_id_gets_escapes(
    operator: list[str], sessions: sessionmaker[Session], galleries: GallerySet
) -> None:
    """On an ISO-8859-1 terminal a Thai subject id was a UnicodeEncodeError traceback (exit 1)
    in list and show; it is printed as backslash escapes."""
    enrol(sessions, galleries, "สมชาย", 1)
    env = {**os.environ, "PYTHONIOENCODING": "iso8859-1"}
    for args in (["list"], ["show", "สมชาย"]):
        done = subprocess.run(
            [*BDX, "subjects", *args, *operator], capture_output=True, env=env, timeout=60
        )
        assert done.returncode == 0 and done.stderr == b"", done.stderr
        assert b"\\u0e2a\\u0e21\\u0e0a\\u0e32\\u0e22" in done.stdout


def test_a_token_option_wins_over_the_environment(
    operator: list[str],
    make_token: object,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An officer's BDX_TOKEN exported in the shell beat an operator's --token-file (a
    wrong_role refusal, or acting as the wrong user); --token beat it already."""
    officer = make_token(Role.OFFICER)  # type: ignore[operator]
    monkeypatch.setenv("BDX_TOKEN", officer)
    code, out, err = cli(["subjects", "list", *operator], capsys)  # --token-file given
    assert code == 0 and "case-1" in out, err
    code, _, err = cli(["subjects", "list", *operator[:2]], capsys)  # the environment's
    assert code == 5 and "[wrong_role]" in err
    token = Path(operator[3]).read_text().strip()
    code, _, err = cli(["subjects", "list", *operator, "--token", token], capsys)
    assert code == 2 and "not both" in err


def test_hits_of_a_subject_no_peer_got_a_hit_on(
    operator: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``bdx subjects hits``: none kept for "case 2" (its id quoted into the path), said in
    words; an unknown subject is exit 4. (Real hits: tests/exchange/test_hit_follow_up.py.)"""
    code, out, err = cli(["subjects", "hits", "case 2", *operator], capsys)
    assert code == 0, err
    assert out == "no hits kept for subject case 2\n"
    code, out, err = cli(["subjects", "hits", "case 2", "--json", *operator], capsys)
    page = json.loads(out)
    assert code == 0 and page == {"items": [], "next_after": None, "next_offset": None}
    code, _, err = cli(["subjects", "hits", "case 3", *operator], capsys)
    assert code == 4 and "[unknown_subject]" in err


def test_restricting_one_record_records_only_the_restriction(
    operator: list[str], sessions: sessionmaker[Session], capsys: pytest.CaptureFixture[str]
) -> None:
    """``restrict --record`` asks the node to check the record is the subject's: it reads no
    subject (no ``subject.show`` in the audit trail), and a record of another subject changes
    and records nothing."""
    code, out, _ = cli(["subjects", "show", "case 2", "--json", *operator], capsys)
    (other,) = (r["reference"] for r in json.loads(out)["records"])
    code, out, _ = cli(["subjects", "show", "case-1", "--json", *operator], capsys)
    mine = json.loads(out)["records"][0]["reference"]
    with sessions() as s:
        since = max(s.scalars(select(AuditEvent.id)).all(), default=0)
    consent = ["--restrictions", '{"no_exchange_consent": true}']
    code, _, err = cli(
        ["subjects", "restrict", "case-1", "--record", other, *consent, *operator], capsys
    )
    assert code == 4 and "[unknown_record]" in err, err
    code, _, err = cli(
        ["subjects", "restrict", "case-1", "--record", mine, *consent, *operator], capsys
    )
    assert code == 0, err
    with sessions() as s:
        done = s.scalars(select(AuditEvent).where(AuditEvent.id > since)).all()
        assert [(e.action, e.target) for e in done] == [("record.restrict", mine)]
