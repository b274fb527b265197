"""Strings that others control (operators' labels, file names, peers' words, the environment)
reach terminals, logs and spreadsheets only as inert text: refused at the entry point where
they are ours to define, escaped where they are printed."""

from __future__ import annotations

import csv
import io
import pwd
from pathlib import Path

import pytest
from node_support import TestClient, bearer, cli
from PIL import Image
from sqlalchemy.orm import Session

from node.audit.query import AuditFilter, AuditQueryError
from node.cli._common import printable
from node.db.models import Role
from node.service_errors import InvalidRequestError
from node.services.users import UserService, local_actor, os_user
from node.settings import Settings

ESCAPES = "\x1b]52;c;cHduZWQ=\x07\x1b[2J"


def png() -> bytes:
    out = io.BytesIO()
    Image.new("L", (64, 64), 128).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    "params",
    [
        {"subject": "PERSON-\u202e4321-0891"},  # reads as another id on a bidi terminal
        {"subject": "PERSON-\x9b2J"},  # an 8-bit CSI
        {"subject": "PERSON\u200b-1"},
        {"subject": "p-1", "encounter": ESCAPES},
        {"subject": "p-1", "source": "desk-1\nrecord FAKE-REF fingerprint quality 99 active"},
    ],
)
def test_enrolment_refuses_invisible_and_control_characters(
    client: TestClient, make_token: object, params: dict[str, str]
) -> None:
    """The encounter and source were taken as they came and printed raw by
    ``bdx subjects show``: an OSC 52 sequence wrote the next operator's clipboard."""
    operator = bearer(make_token(Role.OPERATOR))  # type: ignore[operator]
    query = {"modality": "fingerprint", **params}
    r = client.post("/gallery/enrol", headers=operator, params=query, content=png())
    assert r.status_code == 422, r.text


def test_printable_escapes_what_a_terminal_would_obey() -> None:
    assert printable(f"a{ESCAPES}\nb\u202ec\u200b\u2028d") == (
        "a\\x1b]52;c;cHduZWQ=\\x07\\x1b[2J\\nb\\u202ec\\u200b\\u2028d"
    )
    assert printable("Zürich 東京 a b") == "Zürich 東京 a b"


def test_a_load_prints_file_names_inert_and_quotes_formulas_in_its_report(
    node_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file name with escapes reached the terminal raw, one with a newline forged a line,
    and a subject folder named as a formula became a live spreadsheet cell in --report."""
    root = tmp_path / "in"
    (root / "alice").mkdir(parents=True)
    (root / "alice" / f"a{ESCAPES}.png").write_bytes(b"not an image")
    (root / "alice" / "b\nrejected bob-1.png: forged.png").write_bytes(b"not an image")
    (root / "=1+1").mkdir()
    (root / "=1+1" / "c.png").write_bytes(b"not an image")
    report = tmp_path / "report.csv"
    code, _, err = cli(["gallery", "load", str(root), "--report", str(report)], capsys)
    assert code == 3
    assert "\x1b" not in err and "\\x1b]52" in err
    assert [line for line in err.splitlines() if line.startswith("rejected bob-1")] == []
    with report.open() as f:
        files = [row["file"] for row in csv.DictReader(f)]
    assert "'=1+1/c.png" in files and not any(f.startswith("=") for f in files)


def test_the_actor_is_the_account_not_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """``getpass.getuser`` reads $LOGNAME first: ``LOGNAME=alice bdx ...`` was logged as alice
    (and a LOGNAME with a newline forged an entry line in ``bdx audit list``)."""
    import os

    monkeypatch.setenv("LOGNAME", "alice\n       2 2026-12-06 forged")
    monkeypatch.setenv("USER", "alice")
    real = pwd.getpwuid(os.geteuid()).pw_name
    assert os_user() == real and local_actor() == f"local:{real}"


@pytest.mark.parametrize("name", ["bob\n", "bob\nadmin"])
def test_a_user_name_with_a_trailing_newline_is_refused(session: Session, name: str) -> None:
    """``^...$`` with ``match`` let "bob\\n" in beside "bob": two bobs in every listing."""
    with pytest.raises(InvalidRequestError) as err:
        UserService(session).add_user(name, Role.ADMIN, actor="test")
    assert err.value.reason == "bad_user_name"


def test_audit_filters_refuse_a_trailing_newline() -> None:
    with pytest.raises(AuditQueryError):
        AuditFilter(officer="bob\n")
    with pytest.raises(AuditQueryError):
        AuditFilter(peer="TH\n")
