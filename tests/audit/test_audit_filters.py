"""Auditors' questions about one peer, query or reference: "which queries did TH make and what
did we disclose to it" answered by `bdx audit list`/`export` and ``/audit/log/*`` filters,
with the disclosure step (an operator's ``hit.resolve``) among the answers, and a filtered
export that still verifies offline (and still shows tampering)."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from audit_support import Bdx, Node, TestClient, auditor_app, bearer, encode

from certs.translog import TamperedError, verify_export
from certs.translog.errors import ExportFormatError
from node.audit import AuditFilter, list_events
from node.audit.actions import mirror_actions
from node.db.models import Role
from node.exchange.references import HitReferences
from node.services.hits import RESOLVE_ACTION, HitService
from node.settings import Settings

#: A subject key no gallery row has: the resolution finds the subject deleted since the hit.
GONE_SUBJECT = "s424242"


@pytest.fixture
def resolved(node: Node) -> Iterator[tuple[str, str]]:
    """A hit this node issued to TH, its reply in the log, and an operator's real resolution
    of it (``hit.resolve``, mirrored to the log as the node does), then a checkpoint: yields
    (query id, reference)."""
    query_id = uuid.uuid4()
    reference = HitReferences(node.engine, secrets.token_bytes(32)).issue(
        query_id, "TH", GONE_SUBJECT
    )
    at = "2026-11-21T09:00:00+00:00"
    common = {"node": "XA", "peer": "TH", "query_id": str(query_id), "at": at}
    node.log.append_many(
        [
            encode({"type": "query_received", **common, "purpose": "serious_crime"}),
            encode({"type": "reply_sent", **common, "outcome": "hit", "reference": reference}),
        ]
    )
    stop = mirror_actions(node.sessions, node.log, "XA")
    try:
        with node.sessions() as session:
            HitService(session).resolve(reference, actor="user:operator-ana")
    finally:
        stop()
    node.log.issue_checkpoint()
    yield str(query_id), reference


def _kinds(items: list[dict[str, object]]) -> list[str]:
    return [str(i["type"]) for i in items]


def test_a_peer_filter_includes_the_disclosure_to_it(node: Node, resolved: tuple[str, str]) -> None:
    """``peer=TH`` listed TH's queries and replies but not the operator's resolution of the
    reference TH quoted (``details.requester``): the disclosure step was missing."""
    _, reference = resolved
    items, total = list_events(node.log, AuditFilter(peer="TH"), limit=100)
    acts = [i.event for i in items if i.type == "node_action"]
    assert [a["action"] for a in acts] == [RESOLVE_ACTION]
    assert acts[0]["target"] == reference and acts[0]["details"]["requester"] == "TH"
    assert total == 7 + 2 + 1  # the sample's 7 TH events, the new query and reply, the act
    _, other = list_events(node.log, AuditFilter(peer="ID"), limit=100)
    assert other == 4  # ID's events only: the resolution concerns TH


def test_query_reference_and_action_filters(node: Node, resolved: tuple[str, str]) -> None:
    query_id, reference = resolved
    by_query, _ = list_events(node.log, AuditFilter(query_id=query_id))
    assert [i.type for i in by_query] == ["query_received", "reply_sent", "node_action"]
    by_ref, _ = list_events(node.log, AuditFilter(reference=reference))
    assert [i.type for i in by_ref] == ["reply_sent", "node_action"]
    acts, _ = list_events(node.log, AuditFilter(action=RESOLVE_ACTION))
    assert [i.event["target"] for i in acts] == [reference]
    assert list_events(node.log, AuditFilter(query_id="TH-0"))[1] == 2  # received, replied
    both, _ = list_events(node.log, AuditFilter(peer="ID", action=RESOLVE_ACTION))
    assert both == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"query_id": "a b"},
        {"query_id": "x" * 65},
        {"reference": "has space"},
        {"reference": "\x1b[2J"},
        {"action": "Hit.Resolve"},
        {"action": "hit..resolve"},
    ],
)
def test_bad_new_filter_values_are_refused(kwargs: dict[str, str]) -> None:
    from node.audit import AuditQueryError

    with pytest.raises(AuditQueryError) as err:
        AuditFilter(**kwargs)  # type: ignore[arg-type]
    assert err.value.reason == "bad_filter"


def test_cli_list_filters(bdx: Bdx, node: Node, resolved: tuple[str, str]) -> None:
    query_id, reference = resolved
    code, out, _ = bdx("audit", "list", "--peer", "TH", "--action", RESOLVE_ACTION, "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["total"] == 1 and doc["items"][0]["event"]["target"] == reference
    code, out, _ = bdx("audit", "list", "--query-id", query_id)
    assert code == 0 and "3 of 3 matching entries" in out and f"target={reference}" in out
    code, out, _ = bdx("audit", "list", f"--reference={reference}", "--json")
    assert _kinds(json.loads(out)["items"]) == ["reply_sent", "node_action"]
    searches, _ = list_events(node.log, AuditFilter(type="auditor_action", action="search"))
    assert searches[-1].event["details"]["reference"] == reference  # the search is logged


@pytest.mark.parametrize(
    "args",
    [
        ["--query-id", "no spaces allowed"],
        ["--reference", "a b"],
        ["--action", "DROP TABLE"],
    ],
)
def test_cli_bad_new_filters_exit_2(bdx: Bdx, args: list[str], tmp_path: Path) -> None:
    code, _, err = bdx("audit", "list", *args)
    assert code == 2 and err.count("\n") == 1, err
    code, _, err = bdx("audit", "export", "--out", str(tmp_path / "x.json"), *args)
    assert code == 2 and err.count("\n") == 1, err


def _doc(path: Path) -> dict[str, object]:
    doc: dict[str, object] = json.loads(path.read_bytes())
    return doc


def test_cli_filtered_export_verifies_as_a_selection(
    bdx: Bdx, node: Node, resolved: tuple[str, str], tmp_path: Path
) -> None:
    """One peer's slice exported alone (it used to be every peer's entries or none), each entry
    with its proof, verified offline and reported as a selection."""
    _, reference = resolved
    out = tmp_path / "th.json"
    code, _, err = bdx("audit", "export", "--out", str(out), "--peer", "TH")
    assert code == 0, err
    doc = _doc(out)
    entries = doc["entries"]
    assert isinstance(entries, list) and len(entries) == 10
    events = [json.loads(base64.b64decode(e["data"])) for e in entries]
    assert (
        all(e.get("peer") == "TH" or e["details"]["requester"] == "TH" for e in events)
        and events[-1]["target"] == reference
    )
    selection = doc["selection"]
    assert isinstance(selection, dict)
    assert selection["filter"] == {"peer": "TH"}
    assert selection["indices"] == [e["index"] for e in entries]
    assert selection["statement"].startswith("bdx-translog-selection/v1\n")
    report = verify_export(out.read_bytes(), node.log.verifying_key)
    assert report.entries_verified == 10 and report.selection == {"peer": "TH"}
    assert report.selection_attested and report.to_json()["selection_attested"] is True
    code, text, err = bdx("audit", "verify", str(out), "--log-key", node.vkey, key=False)
    assert code == 0, err
    assert "OK " in text and "a selection (peer=TH)" in text
    assert "the log signed that the range holds no other match" in text
    exports, _ = list_events(node.log, AuditFilter(type="auditor_action", action="export"))
    assert exports[-1].event["details"] == {"peer": "TH", "format": "json"}
    code, _, _ = bdx("audit", "export", "--out", str(tmp_path / "th.csv"), "--format", "csv")
    csv_all = (tmp_path / "th.csv").read_text().count("\n")
    code, _, _ = bdx(
        "audit", "export", "--out", str(tmp_path / "q.csv"), "--format", "csv", "--peer", "ID"
    )
    assert code == 0 and (tmp_path / "q.csv").read_text().count("\n") == 1 + 4 < csv_all


@pytest.mark.parametrize(
    "label", [{"peer": "DE"}, {"peer": "TH", "action": "hit.resolve"}, {"peer": "TH", "x": "1"}]
)
def test_a_selection_relabelled_is_refused(
    bdx: Bdx, node: Node, resolved: tuple[str, str], tmp_path: Path, label: dict[str, str]
) -> None:
    """A genuine peer=TH selection whose recorded filter is edited (another peer, a filter its
    entries do not all match, a filter that is none) verified, and the CLI reported the false
    label: its entries are now checked against it (exit 5, selection_mismatch)."""
    out = tmp_path / "th.json"
    code, _, err = bdx("audit", "export", "--out", str(out), "--peer", "TH")
    assert code == 0, err
    doc = json.loads(out.read_bytes())
    doc["selection"]["filter"] = label
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(doc))
    code, text, err = bdx("audit", "verify", str(forged), "--log-key", node.vkey, key=False)
    assert (code, text) == (5, "") and "[selection_altered]" in err, err
    del doc["selection"]["statement"]  # the log's statement removed too: an unattested one
    forged.write_text(json.dumps(doc))
    code, text, err = bdx("audit", "verify", str(forged), "--log-key", node.vkey, key=False)
    assert (code, text) == (5, "") and "[selection_mismatch]" in err, err


def _tampered(raw: bytes, how: str, other: dict[str, object]) -> bytes:
    """``raw`` (a selection) edited as ``how`` says; ``other``: a genuine entry it left out."""
    doc = json.loads(raw)
    entries, chosen = doc["entries"], doc["selection"]["indices"]
    if how == "modified":
        entries[1]["data"] = base64.b64encode(b'{"type":"query_received","peer":"TH"}').decode()
    elif how == "dropped":  # an entry taken out, its index still selected
        del entries[1]
    elif how == "dropped_and_unlisted":  # both taken out: now a proof of the rest only
        del entries[1]
        del chosen[1]
    elif how == "swapped":
        entries[0], entries[1] = entries[1], entries[0]
    elif how == "repeated":
        entries.insert(1, entries[0])
    elif how == "inserted":  # another peer's genuine entry (with its proof), not selected
        entries.append(other)
    elif how == "renumbered":  # an entry claimed at another index (the selection to match)
        entries[0]["index"] = chosen[0] = chosen[0] - 1
    elif how == "bad_indices":
        chosen.reverse()
    elif how == "unattested":  # dropped and unlisted, the log's statement removed as well
        del entries[1]
        del chosen[1]
        del doc["selection"]["statement"]
    return json.dumps(doc).encode()


def _other(node: Node) -> dict[str, object]:
    """The last entry of a full export (the hit.resolve: no entry of ID), with its proof."""
    from node.audit import query

    entries = json.loads(query.export_json(node.log, AuditFilter()))["entries"]
    last: dict[str, object] = entries[-1]
    return last


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("modified", "entry_modified"),
        ("dropped", "entry_missing"),
        ("swapped", "entry_reordered"),
        ("repeated", "entry_reordered"),
        ("inserted", "entry_reordered"),
        ("renumbered", "inclusion_failed"),
    ],
)
def test_tampering_with_a_filtered_export_is_detected(
    node: Node, resolved: tuple[str, str], how: str, reason: str
) -> None:
    from node.audit import query

    raw = query.export_json(node.log, AuditFilter(peer="ID"))
    assert verify_export(raw, node.log.verifying_key).entries_verified == 4
    other = _other(node)
    with pytest.raises(TamperedError) as err:
        verify_export(_tampered(raw, how, other), node.log.verifying_key)
    assert err.value.reason == reason


def test_a_selection_is_never_taken_for_a_full_range(node: Node, resolved: tuple[str, str]) -> None:
    """What a selection cannot prove (that no other entry matched) shows in the report: an
    entry dropped together with its index breaks the log's signed statement (it verified as a
    selection before selections were signed), and without the statement it verifies as an
    unattested selection, never as a full range."""
    from node.audit import query

    raw = query.export_json(node.log, AuditFilter(peer="ID"))
    other = _other(node)
    with pytest.raises(TamperedError) as err:
        verify_export(_tampered(raw, "dropped_and_unlisted", other), node.log.verifying_key)
    assert err.value.reason == "selection_altered"
    report = verify_export(_tampered(raw, "unattested", other), node.log.verifying_key)
    assert report.entries_verified == 3 and report.selection == {"peer": "ID"}
    assert not report.selection_attested and report.to_json()["selection_attested"] is False
    full = json.loads(query.export_json(node.log, AuditFilter()))
    assert (
        "selection" not in full
        and verify_export(json.dumps(full).encode(), node.log.verifying_key).selection is None
    )
    with pytest.raises(ExportFormatError):
        verify_export(_tampered(raw, "bad_indices", other), node.log.verifying_key)


@pytest.fixture
def client(settings: Settings, node: Node) -> Iterator[TestClient]:
    with TestClient(auditor_app(settings, node.engine, node.log)) as c:
        yield c


def test_api_filters_and_filtered_export(
    client: TestClient, node: Node, resolved: tuple[str, str]
) -> None:
    query_id, reference = resolved
    auditor = bearer(node.token(Role.AUDITOR))
    r = client.get(
        "/audit/log/entries", params={"peer": "TH", "action": RESOLVE_ACTION}, headers=auditor
    )
    assert r.status_code == 200 and r.json()["total"] == 1
    assert r.json()["items"][0]["event"]["target"] == reference
    r = client.get("/audit/log/entries", params={"query_id": query_id}, headers=auditor)
    assert _kinds(r.json()["items"]) == ["query_received", "reply_sent", "node_action"]
    r = client.get("/audit/log/entries", params={"reference": reference}, headers=auditor)
    assert _kinds(r.json()["items"]) == ["reply_sent", "node_action"]
    r = client.get("/audit/log/export", params={"query_id": query_id}, headers=auditor)
    assert r.status_code == 200
    report = verify_export(r.content, node.log.verifying_key)
    assert report.entries_verified == 3 and report.selection == {"query_id": query_id}
    r = client.get(
        "/audit/log/export", params={"format": "csv", "reference": reference}, headers=auditor
    )
    assert r.status_code == 200 and r.text.count("\n") == 1 + 2
    exports, _ = list_events(node.log, AuditFilter(type="auditor_action", action="export"))
    assert [e.event["details"] for e in exports] == [
        {"query_id": query_id, "format": "json"},
        {"reference": reference, "format": "csv"},
    ]


@pytest.mark.parametrize("path", ["/audit/log/entries", "/audit/log/export"])
@pytest.mark.parametrize(
    "params",
    [
        {"query_id": "a b"},
        {"reference": "with space"},
        {"action": "Hit.Resolve"},
        {"peer": "thailand"},
    ],
)
def test_api_bad_new_filters_get_422(
    client: TestClient, node: Node, path: str, params: dict[str, str]
) -> None:
    r = client.get(path, params=params, headers=bearer(node.token(Role.AUDITOR)))
    assert r.status_code == 422, r.text
    assert set(r.json()) == {"error", "detail"}


def test_a_case_ref_filter_is_recorded_without_its_text() -> None:
    """The responder keeps a requester's case reference only as a keyed digest: an auditor's
    search by it, appended to the same log, records that a case_ref was given, never which
    (and no export selection can claim one: it is checked offline, without the secret)."""
    from node.audit.query import SelectionMismatchError, check_selection
    from node.exchange.responder import case_ref_digest

    secret = secrets.token_bytes(32)
    flt = AuditFilter(
        peer="TH",
        case_ref="SMITH.JOHN-1980",
        case_ref_digest=lambda requester, ref: case_ref_digest(secret, requester, ref),
    )
    assert flt.selects and flt.to_json() == {"peer": "TH", "case_ref": "withheld"}
    logged = {"type": "query_received", "peer": "TH", "query_id": "q1"}
    assert flt.matches({**logged, "case_ref_hmac": case_ref_digest(secret, "TH", flt.case_ref)})
    assert not flt.matches({**logged, "case_ref_hmac": case_ref_digest(secret, "ID", "X")})
    assert flt.matches({**logged, "case_ref": "SMITH.JOHN-1980"})  # an older entry
    assert not AuditFilter(case_ref="SMITH.JOHN-1980").matches(
        {**logged, "case_ref_hmac": case_ref_digest(secret, "TH", "SMITH.JOHN-1980")}
    )  # without the node's secret only the text matches
    export = json.dumps({"entries": []}).encode()
    with pytest.raises(SelectionMismatchError):
        check_selection(export, {"case_ref": "SMITH.JOHN-1980"})
