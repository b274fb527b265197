"""The requesting officer's case reference stays out of the responder's exchange log.

A query carries its officer's case reference, and the responder logged it as sent in its own
append-only log (kept for ``exchange_log_days``): a case number typed with a name in it
(``SMITH.JOHN-1980`` is within the wire's alphabet) landed at the peer for years. The
responder needs it only to match a case the requester quotes (the two logs correlate by
``query_id``): it now logs ``case_ref_hmac``, a digest keyed with its own secret. The
requester's own log keeps its officer's text; exports of the responder's log still verify.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from certs.pki.bootstrap import build_region, write_region
from certs.translog.export import export_json
from matcher.fingerprint import iso19794_2
from matcher.synthetic import synthetic_templates
from node.cli import main
from node.db.models import Role
from node.services.users import UserService
from tests.exchange.service_support import ServiceNode, serving

CASE = "SMITH.JOHN-1980"


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServiceNode]]:
    root = tmp_path_factory.mktemp("case-ref-region")
    write_region(build_region(("TH", "ID")), root)
    with serving(tmp_path_factory.mktemp("case-ref-nodes"), root, ["TH", "ID"]) as started:
        yield started


def events(node: ServiceNode, since: int) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in node.exchange.log.entries(since)]


def ask(th: ServiceNode, case_ref: str | None) -> None:
    probe = synthetic_templates(1, 1, seed=5)[0][0]
    body: dict[str, Any] = {
        "peers": ["ID"],
        "purpose": "border_control",
        "modality": "fingerprint",
        "templates": [
            {"data": base64.b64encode(iso19794_2.encode(probe)).decode(), "finger_position": 1}
        ],
    }
    if case_ref is not None:
        body["case_ref"] = case_ref
    headers = {"Authorization": f"Bearer {th.token}"}
    r = httpx.post(th.api_url + "/queries", json=body, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["status"] == "answered", r.text


def test_the_responder_logs_a_keyed_digest_of_the_case_reference(
    nodes: dict[str, ServiceNode], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    th, idn = nodes["TH"], nodes["ID"]
    th_before, id_before = th.exchange.log.size(), idn.exchange.log.size()
    ask(th, CASE)
    (received,) = [e for e in events(idn, id_before) if e["type"] == "query_received"]
    assert "case_ref" not in received
    assert received["case_ref_hmac"] == idn.exchange.responder.case_ref_digest("TH", CASE)
    assert received["case_ref_hmac"] != idn.exchange.responder.case_ref_digest("MY", CASE)
    assert len(received["case_ref_hmac"]) == 22
    assert not any(b"SMITH" in e.data for e in idn.exchange.log.entries(0))
    # the requester's own log keeps its officer's case reference (its query history reads it)
    sent = [e for e in events(th, th_before) if e.get("case_ref") == CASE]
    assert sent and {e["peer"] for e in sent if "peer" in e} == {"ID"}

    # a query without one: no field at all
    id_before = idn.exchange.log.size()
    ask(th, None)
    (received,) = [e for e in events(idn, id_before) if e["type"] == "query_received"]
    assert "case_ref" not in received and "case_ref_hmac" not in received

    # the responder's log still exports and verifies
    idn.exchange.log.issue_checkpoint()
    export = tmp_path / "id-export.json"
    export.write_bytes(export_json(idn.exchange.log))
    keys = idn.app.state.settings.data_dir / "log-keys.txt"
    with pytest.raises(SystemExit) as done:
        main(["audit", "verify", str(export), "--log-key", str(keys)])
    out, err = capsys.readouterr()
    assert done.value.code in (0, None), err
    assert out.startswith("OK ")


def id_config(idn: ServiceNode, tmp_path: Path) -> Path:
    s = idn.app.state.settings
    cfg = tmp_path / "id.toml"
    cfg.write_text(
        f'country = "ID"\ndata_dir = "{s.data_dir}"\npki_dir = "{s.pki_dir}"\n'
        f'policy_file = "{s.policy_file}"\n'
    )
    return cfg


def bdx(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(args)
    out, err = capsys.readouterr()
    code = done.value.code
    return (0 if code is None else int(code)), out, err


def test_an_auditor_finds_a_quoted_case_reference(
    nodes: dict[str, ServiceNode], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The responder logs ``case_ref_hmac`` now, which ``bdx audit list`` did not print and
    no filter matched: an auditor could not check a case reference the requester quotes.
    ``--case-ref`` (``case_ref`` on the API) matches the digest, and older entries' text;
    the auditor's search is logged without the text."""
    th, idn = nodes["TH"], nodes["ID"]
    quoted, other = "DOE.JANE-1975", "OTHER.CASE-7"
    ask(th, other)
    id_before = idn.exchange.log.size()
    ask(th, quoted)
    (received,) = [e for e in events(idn, id_before) if e["type"] == "query_received"]
    # An entry as the responder logged it before c1be781: the case reference as text.
    idn.exchange.log.append(
        json.dumps(
            {
                "type": "query_received",
                "node": "ID",
                "peer": "TH",
                "query_id": "old-1",
                "case_ref": quoted,
            }
        ).encode()
    )
    cfg = id_config(idn, tmp_path)

    code, out, err = bdx(["audit", "list", "--case-ref", quoted, "--config", str(cfg)], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[-1] == "2 of 2 matching entries"
    assert f"case_ref_hmac={received['case_ref_hmac']}" in lines[0]
    assert f"query_id={received['query_id']}" in lines[0]
    assert "query_id=old-1" in lines[1] and f"case_ref={quoted}" in lines[1]
    code, out, _ = bdx(
        ["audit", "list", "--case-ref", other, "--json", "--config", str(cfg)], capsys
    )
    assert code == 0 and json.loads(out)["total"] == 1
    code, _, err = bdx(["audit", "list", "--case-ref", "no spaces", "--config", str(cfg)], capsys)
    assert code == 2 and "case_ref must be" in err

    with idn.app.state.sessions() as session:
        users = UserService(session)
        users.add_user("inspector", Role.AUDITOR, actor="test")
        token = users.issue_token("inspector", expires_days=1, actor="test").token
    with httpx.Client(base_url=idn.api_url, timeout=30) as http:
        headers = {"Authorization": f"Bearer {token}"}
        page = http.get("/audit/log/entries", params={"case_ref": quoted}, headers=headers)
        assert page.status_code == 200, page.text
        found = [i["event"].get("query_id") for i in page.json()["items"]]
        assert found == [received["query_id"], "old-1"]
        refused = http.get("/audit/log/export", params={"case_ref": quoted}, headers=headers)
        assert refused.status_code == 422 and "query_id" in refused.text

    searches = [
        e
        for e in events(idn, id_before)
        if e.get("type") == "auditor_action" and "case_ref" in e.get("details", {})
    ]
    assert len(searches) == 3  # two lists by the CLI, one by the API (refusals: none)
    assert all(e["details"]["case_ref"] == "withheld" for e in searches)
    assert not any(quoted in json.dumps(e) or other in json.dumps(e) for e in searches)


def test_a_csv_export_selects_by_case_ref_and_a_json_one_is_refused(
    nodes: dict[str, ServiceNode], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README says a CSV export takes ``--case-ref`` (``case_ref`` on the API does), but
    ``bdx audit export`` had no such option ("No such option", exit 2). It now selects a CSV
    export as the API does, recorded as ``withheld``; a JSON export by it is refused, as the
    API refuses it, before anything is opened or written."""
    th, idn = nodes["TH"], nodes["ID"]
    quoted = "ROE.RICHARD-1960"
    id_before = idn.exchange.log.size()
    ask(th, quoted)
    (received,) = [e for e in events(idn, id_before) if e["type"] == "query_received"]
    cfg = id_config(idn, tmp_path)
    out = tmp_path / "case.csv"
    args = ["audit", "export", "--format", "csv", "--case-ref", quoted, "--out", str(out)]
    code, said, err = bdx([*args, "--config", str(cfg)], capsys)
    assert code == 0, err
    assert said.startswith("wrote ") and err == ""
    rows = out.read_text().splitlines()
    assert len(rows) == 2 and received["case_ref_hmac"] in rows[1], rows
    assert received["query_id"] in rows[1] and quoted not in out.read_text()

    with idn.app.state.sessions() as session:
        users = UserService(session)
        users.add_user("csv-inspector", Role.AUDITOR, actor="test")
        token = users.issue_token("csv-inspector", expires_days=1, actor="test").token
    with httpx.Client(base_url=idn.api_url, timeout=30) as http:
        headers = {"Authorization": f"Bearer {token}"}
        params = {"case_ref": quoted, "format": "csv"}
        api = http.get("/audit/log/export", params=params, headers=headers)
        assert api.status_code == 200, api.text
        assert api.text.splitlines() == rows  # the same selection as the API's

    refused = tmp_path / "case.json"
    args = ["audit", "export", "--case-ref", quoted, "--out", str(refused)]
    code, said, err = bdx([*args, "--config", str(cfg)], capsys)
    assert code == 2 and said == "", err
    assert err.startswith("bdx: error: a JSON export cannot select by --case-ref")
    assert err.endswith(" [bad_filter]\n") and not refused.exists()

    exports = [
        e
        for e in events(idn, id_before)
        if e.get("type") == "auditor_action" and e.get("action") == "export"
    ]
    # the CLI's export and the API's (the refused JSON export: none)
    assert [e["details"] for e in exports] == [{"case_ref": "withheld", "format": "csv"}] * 2
    assert not any(quoted in json.dumps(e) for e in exports)


def test_an_auditors_case_ref_search_never_creates_a_hit_secret(
    nodes: dict[str, ServiceNode], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With settings whose data_dir holds no secret (an auditor's copy), ``--case-ref`` made
    a new random secret, matched nothing and exited 0; a refused value made one too. It is
    now refused, and nothing is written."""
    s = nodes["ID"].app.state.settings
    elsewhere = tmp_path / "auditor"
    cfg = tmp_path / "auditor.toml"
    cfg.write_text(
        f'country = "ID"\ndata_dir = "{elsewhere}"\ndatabase_url = "{s.db_url}"\n'
        f'pki_dir = "{s.pki_dir}"\n'
    )
    code, _, err = bdx(["audit", "list", "--case-ref", "no spaces", "--config", str(cfg)], capsys)
    assert code == 2 and "case_ref must be" in err
    code, _, err = bdx(["audit", "list", "--case-ref", "DOE.JANE-1", "--config", str(cfg)], capsys)
    assert code == 2 and "[no_hit_secret]" in err
    assert not (elsewhere / "hit-secret.key").exists()
