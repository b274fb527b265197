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
