"""Following up a hit: the responding node's operator resolves the reference a real peer query
got (``GET /hits/{reference}``, ``bdx subjects reference``), and the resolution is in the audit
trail and the tamper-evident log; the operator lists the hits kept for one subject
(``GET /subjects/{external_id}/hits``, ``bdx subjects hits``) and those issued to a requesting
country since a time (``GET /hits``), each listing audited as well. Two nodes served as
``bdx serve`` serves them: TH asks, ID answers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from certs.pki.bootstrap import build_region, write_region
from certs.pki.tls import client_context
from matcher.fingerprint.template import FingerprintTemplate
from matcher.synthetic import synthetic_templates
from node.db.models import RecordState, Role
from node.exchange.references import exchange_hits
from node.exchange.setup import housekeeping_round
from node.repositories.records import RecordRepository
from node.repositories.subjects import SubjectRepository
from node.services.galleries import subject_key
from node.services.hits import LIST_ACTION, RESOLVE_ACTION
from node.services.users import UserService
from tests.exchange.service_support import ServiceNode, serving
from tests.exchange.test_node_service import by_peer, officer_query

BDX = [sys.executable, "-c", "from node.cli import main; main()"]
#: Synthetic fingers: ID enrols the first impression of each, TH probes with the second.
FINGERS = 5


@dataclass
class Setup:
    th: ServiceNode
    id: ServiceNode
    root: Path
    tokens: dict[Role, str]  # at ID

    def headers(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


@pytest.fixture(scope="module")
def fingers() -> list[list[FingerprintTemplate]]:
    return synthetic_templates(FINGERS, 2, seed=23)


@pytest.fixture(scope="module")
def nodes(
    fingers: list[list[FingerprintTemplate]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("follow-up-region")
    write_region(build_region(("TH", "ID")), root)
    with serving(tmp_path_factory.mktemp("follow-up-nodes"), root, ("TH", "ID")) as served:
        idn = served["ID"]
        idn.enrol([f"id-{i}" for i in range(FINGERS)], [f[0] for f in fingers])
        # ID's first search after the enrolment loads the new gallery, longer than TH waits
        # (peer_timeout_s 5) on a loaded machine: done here, outside the tests' assertions.
        officer_query(served["TH"], ["ID"], fingers[0][1])
        tokens = {Role.OFFICER: idn.token}
        with idn.app.state.sessions() as session:
            users = UserService(session)
            for role in (Role.OPERATOR, Role.AUDITOR):
                users.add_user(role.value, role, actor="test")
                tokens[role] = users.issue_token(role.value, expires_days=1, actor="test").token
        yield Setup(served["TH"], idn, root, tokens)


def hit(nodes: Setup, probe: FingerprintTemplate) -> dict[str, Any]:
    """TH's officer asks ID; ID's answer (a hit)."""
    got = by_peer(officer_query(nodes.th, ["ID"], probe))["ID"]
    assert got["outcome"] == "hit", got
    return got


def resolve(nodes: Setup, reference: str, role: Role | None = Role.OPERATOR) -> httpx.Response:
    headers = nodes.headers(role) if role is not None else {}
    return httpx.get(f"{nodes.id.api_url}/hits/{reference}", headers=headers)


def audited(nodes: Setup, action: str = RESOLVE_ACTION) -> list[dict[str, Any]]:
    """The ``action`` events (``hit.resolve`` by default) of ID's audit trail, as its auditor
    reads them."""
    r = httpx.get(
        nodes.id.api_url + "/audit-events",
        params={"action": action, "limit": 1000},
        headers=nodes.headers(Role.AUDITOR),
    )
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def logged_resolutions(node: ServiceNode, action: str = RESOLVE_ACTION) -> list[dict[str, Any]]:
    events = [json.loads(e.data) for e in node.exchange.log.entries()]
    return [e for e in events if e["type"] == "node_action" and e["action"] == action]


def listed(
    nodes: Setup, path: str, role: Role | None = Role.OPERATOR, **params: Any
) -> httpx.Response:
    headers = nodes.headers(role) if role is not None else {}
    return httpx.get(nodes.id.api_url + path, params=params, headers=headers)


def bdx(
    nodes: Setup, role: Role, *args: str, command: str = "reference"
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BDX_TOKEN": nodes.tokens[role]}
    env.pop("BDX_TOKEN_FILE", None)
    command_line = [*BDX, "subjects", command, *args, "--url", nodes.id.api_url]
    return subprocess.run(command_line, env=env, capture_output=True, text=True, timeout=60)


def test_an_operator_resolves_a_real_hits_reference_and_it_is_audited(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    before = datetime.now(UTC)
    got = hit(nodes, fingers[1][1])
    after = datetime.now(UTC)
    r = resolve(nodes, got["reference"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["reference"], body["query_id"], body["requester"]) == (
        got["reference"],
        got["query_id"],
        "TH",
    )
    assert before <= datetime.fromisoformat(body["issued_at"]) <= after
    assert (body["subject"], body["state"]) == ("id-1", "active")
    shown = httpx.get(nodes.id.api_url + "/subjects/id-1", headers=nodes.headers(Role.OPERATOR))
    assert body["records"] == shown.json()["records"] and len(body["records"]) == 1
    # The auditor reviews the disclosure: who, which reference, for which country and query.
    event = audited(nodes)[-1]
    assert (event["actor"], event["target"]) == ("user:operator", got["reference"])
    assert event["details"] == {
        "requester": "TH",
        "query_id": got["query_id"],
        "subject": "id-1",
        "state": "active",
    }
    logged = logged_resolutions(nodes.id)[-1]
    assert (logged["actor"], logged["target"], logged["details"]) == (
        "user:operator",
        got["reference"],
        event["details"],
    )


@pytest.mark.parametrize(
    "reference",
    [
        "A" * 22,  # shaped like one, never issued
        "not-a-reference",
        "A" * 23,
        "AAAAAAAAAAAAAAAAAAAA%3D%3D",  # 20 characters and padding
        "%27%20OR%201%3D1%20--%20AAAAAAAAAA",
    ],
)
def test_a_reference_never_issued_is_not_found_and_not_recorded(
    nodes: Setup, reference: str
) -> None:
    seen = len(audited(nodes))
    r = resolve(nodes, reference)
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "unknown_reference" and r.json()["detail"]
    assert len(audited(nodes)) == seen


@pytest.mark.parametrize(
    ("role", "status"), [(None, 401), (Role.OFFICER, 403), (Role.AUDITOR, 403)]
)
def test_only_an_operator_resolves_a_reference(
    nodes: Setup, fingers: list[list[FingerprintTemplate]], role: Role | None, status: int
) -> None:
    """Auditors review resolutions, they do not make them; officers query peers."""
    reference = hit(nodes, fingers[0][1])["reference"]
    seen = len(audited(nodes))
    r = resolve(nodes, reference, role)
    assert r.status_code == status, r.text
    assert r.json()["error"] in ("missing_token", "wrong_role")
    assert "id-0" not in r.text
    assert len(audited(nodes)) == seen


def test_the_peer_listener_does_not_resolve_references(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    """The requesting country's own certificate, and an operator's token, on ID's peer port."""
    reference = hit(nodes, fingers[0][1])["reference"]
    folder = nodes.root / "nodes" / "th"
    tls = client_context(folder / "tls.pem", folder / "tls.key", nodes.root / "root.pem")
    with httpx.Client(verify=tls) as client:
        r = client.get(
            f"{nodes.id.peer_url}/hits/{reference}", headers=nodes.headers(Role.OPERATOR)
        )
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert "id-0" not in r.text


def test_a_subject_deleted_after_the_hit_is_shown_deleted(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    reference = hit(nodes, fingers[3][1])["reference"]
    gone = httpx.delete(nodes.id.api_url + "/subjects/id-3", headers=nodes.headers(Role.OPERATOR))
    assert gone.status_code == 200, gone.text
    r = resolve(nodes, reference)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["subject"], body["state"], body["records"]) == (None, "deleted", [])
    assert body["requester"] == "TH"
    event = audited(nodes)[-1]
    assert (event["target"], event["details"]["subject"], event["details"]["state"]) == (
        reference,
        None,
        "deleted",
    )
    text = bdx(nodes, Role.OPERATOR, reference)
    assert text.returncode == 0, text.stderr
    assert "subject deleted since the hit" in text.stdout and "id-3" not in text.stdout


def test_a_subject_whose_deletion_is_unfinished_is_shown_deleting(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    """Its records flagged ``deleting`` as a deletion whose gallery write failed leaves them."""
    reference = hit(nodes, fingers[4][1])["reference"]
    shown = httpx.get(nodes.id.api_url + "/subjects/id-4", headers=nodes.headers(Role.OPERATOR))
    records = [r["reference"] for r in shown.json()["records"]]
    with nodes.id.app.state.sessions() as session:
        assert RecordRepository(session).set_state(records, RecordState.DELETING) == 1
        session.commit()
    body = resolve(nodes, reference).json()
    assert (body["subject"], body["state"]) == ("id-4", "deleting")
    assert [r["state"] for r in body["records"]] == ["deleting"]
    assert audited(nodes)[-1]["details"]["state"] == "deleting"


def test_the_route_is_documented_for_operators(nodes: Setup) -> None:
    spec = httpx.get(nodes.id.api_url + "/openapi.json").json()
    op = spec["paths"]["/hits/{reference}"]["get"]
    assert op["description"] == "Role: operator."
    assert {"401", "403", "404"} <= set(op["responses"])
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/HitOut"
    }
    assert spec["components"]["schemas"]["HitOut"]["properties"]["state"]


def test_bdx_subjects_reference_resolves_and_maps_refusals_to_exit_codes(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    got = hit(nodes, fingers[2][1])
    seen = len(audited(nodes))
    done = bdx(nodes, Role.OPERATOR, got["reference"], "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert (body["subject"], body["state"], body["query_id"], body["requester"]) == (
        "id-2",
        "active",
        got["query_id"],
        "TH",
    )
    text = bdx(nodes, Role.OPERATOR, got["reference"])
    assert text.returncode == 0, text.stderr
    assert f"of TH, issued {body['issued_at']}" in text.stdout
    assert "subject id-2 (active)" in text.stdout
    assert body["records"][0]["reference"] in text.stdout
    assert len(audited(nodes)) == seen + 2  # each resolution is recorded
    for reference in ("A" * 22, "no/such ref"):
        unknown = bdx(nodes, Role.OPERATOR, reference)
        assert unknown.returncode == 4, unknown.stderr
        assert unknown.stderr.startswith("bdx: error:") and len(unknown.stderr.splitlines()) == 1
    refused = bdx(nodes, Role.AUDITOR, got["reference"])
    assert refused.returncode == 5 and "[wrong_role]" in refused.stderr
    assert refused.stdout == ""


def test_a_reference_past_its_follow_up_period_is_deleted_and_logged(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    """Housekeeping deletes the reference -> subject link of the hits issued longer ago than
    ``hit_reference_days`` (730 by default): the reference resolves no more, a younger one
    does, and the exchange log says how many went."""
    old = hit(nodes, fingers[2][1])["reference"]
    young = hit(nodes, fingers[1][1])["reference"]
    exchange = nodes.id.exchange
    retention = exchange.responder.hits.retention
    assert retention == timedelta(days=730)
    issued = datetime.now(UTC) - retention - timedelta(minutes=1)
    with nodes.id.app.state.engine.begin() as conn:
        conn.execute(
            update(exchange_hits).where(exchange_hits.c.reference == old).values(created_at=issued)
        )
    assert resolve(nodes, old).status_code == 200  # still within reach until housekeeping runs
    before = exchange.log.size()
    exchange.hits_expired_at = float("-inf")  # hourly: due now
    asyncio.run(housekeeping_round(exchange, 3600.0))
    gone = resolve(nodes, old)
    assert gone.status_code == 404 and gone.json()["error"] == "unknown_reference"
    assert "follow-up period" in gone.json()["detail"]
    assert resolve(nodes, young).status_code == 200
    events = [json.loads(e.data) for e in exchange.log.entries(before)]
    (expired,) = [e for e in events if e["type"] == "hit_references_expired"]
    assert expired["count"] == 1 and expired["node"] == "ID"
    assert datetime.fromisoformat(expired["issued_before"]) > issued
    assert old not in json.dumps(expired)  # which one is not said: it named a person


def test_an_expiry_whose_event_was_not_logged_is_logged_by_the_next_round(
    nodes: Setup, fingers: list[list[FingerprintTemplate]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows are deleted before the event is appended: an append that failed lost the
    event for good (the next round found nothing to delete)."""
    old = hit(nodes, fingers[1][1])["reference"]
    exchange = nodes.id.exchange
    issued = datetime.now(UTC) - exchange.responder.hits.retention - timedelta(minutes=1)
    with nodes.id.app.state.engine.begin() as conn:
        conn.execute(
            update(exchange_hits).where(exchange_hits.c.reference == old).values(created_at=issued)
        )
    before = exchange.log.size()

    def down(event: dict[str, Any]) -> None:
        raise OSError("disk full")

    with monkeypatch.context() as patched:
        patched.setattr(exchange.responder.log, "record", down)
        exchange.hits_expired_at = float("-inf")
        asyncio.run(housekeeping_round(exchange, 3600.0))
    assert resolve(nodes, old).status_code == 404  # deleted, its event not logged
    assert not [
        e
        for e in (json.loads(x.data) for x in exchange.log.entries(before))
        if e["type"] == "hit_references_expired"
    ]
    exchange.hits_expired_at = float("-inf")
    asyncio.run(housekeeping_round(exchange, 3600.0))
    events = [json.loads(e.data) for e in exchange.log.entries(before)]
    (expired,) = [e for e in events if e["type"] == "hit_references_expired"]
    assert expired["count"] == 1


def test_an_operator_lists_the_hits_kept_for_a_subject_and_it_is_audited(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    """A data subject's access request: which countries got a hit on id-1, when, on which
    query; another subject's hits are not in it."""
    first, second = hit(nodes, fingers[1][1]), hit(nodes, fingers[1][1])
    other = hit(nodes, fingers[0][1])["reference"]
    r = listed(nodes, "/subjects/id-1/hits", limit=1000)
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["next_offset"] is None
    items = page["items"]
    assert [i["reference"] for i in items[-2:]] == [first["reference"], second["reference"]]
    assert other not in {i["reference"] for i in items}
    assert {(i["subject"], i["state"], i["requester"]) for i in items} == {("id-1", "active", "TH")}
    assert [i["query_id"] for i in items[-2:]] == [first["query_id"], second["query_id"]]
    issued = [datetime.fromisoformat(i["issued_at"]) for i in items]
    assert issued == sorted(issued)
    assert set(items[-1]) == {
        "reference",
        "query_id",
        "requester",
        "issued_at",
        "subject",
        "state",
        "outcome",
        "outcome_at",
        "outcome_by",
        "note",
    }
    # The auditor reviews the disclosure: who listed whose hits; the references are not copied.
    event = audited(nodes, LIST_ACTION)[-1]
    assert (event["actor"], event["target"]) == ("user:operator", "id-1")
    assert event["details"] == {
        "subject": "id-1",
        "outcome": None,
        "limit": 1000,
        "after": None,
        "offset": 0,
        "returned": len(items),
    }
    logged = logged_resolutions(nodes.id, LIST_ACTION)[-1]
    assert (logged["target"], logged["details"]) == ("id-1", event["details"])
    # Pages: the last hit alone, then nothing more.
    n = len(items)
    last = listed(nodes, "/subjects/id-1/hits", limit=1, offset=n - 1).json()
    assert (last["items"], last["next_offset"]) == ([items[-1]], n)
    after = listed(nodes, "/subjects/id-1/hits", limit=1, offset=n).json()
    assert after == {"items": [], "next_after": None, "next_offset": None}
    assert [e["details"]["offset"] for e in audited(nodes, LIST_ACTION)[-2:]] == [n - 1, n]


def test_the_follow_up_queue_lists_the_hits_issued_to_a_country_since_a_time(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    since = datetime.now(UTC)
    to_th = [hit(nodes, fingers[0][1]), hit(nodes, fingers[2][1])]
    with nodes.id.app.state.sessions() as session:
        subject = SubjectRepository(session).by_external_id("id-1")
        assert subject is not None
        key = subject_key(subject.id)
    # A hit for another requesting country, issued by ID's responder as a peer query's would be.
    to_fr = nodes.id.exchange.responder.hits.issue(uuid.uuid4(), "FR", key)
    r = listed(nodes, "/hits", requester="TH", since=since.isoformat())
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["next_offset"] is None
    got = [(i["reference"], i["query_id"], i["requester"], i["subject"]) for i in page["items"]]
    assert got == [
        (to_th[0]["reference"], to_th[0]["query_id"], "TH", "id-0"),
        (to_th[1]["reference"], to_th[1]["query_id"], "TH", "id-2"),
    ]
    assert {i["state"] for i in page["items"]} == {"active"}
    event = audited(nodes, LIST_ACTION)[-1]
    assert (event["actor"], event["target"]) == ("user:operator", "TH")
    assert event["details"] == {
        "requester": "TH",
        "since": since.isoformat(),
        "outcome": None,
        "limit": 100,
        "after": None,
        "offset": 0,
        "returned": 2,
    }
    # The country code is normalised; without a requester, every country's hits.
    fr = listed(nodes, "/hits", requester="fr", since=since.isoformat()).json()["items"]
    assert [(i["reference"], i["requester"], i["subject"]) for i in fr] == [(to_fr, "FR", "id-1")]
    everyone = listed(nodes, "/hits", since=since.isoformat(), limit=2).json()
    assert [i["reference"] for i in everyone["items"]] == [h["reference"] for h in to_th]
    assert everyone["next_offset"] == 2
    rest = listed(nodes, "/hits", since=since.isoformat(), limit=2, offset=2).json()
    assert ([i["reference"] for i in rest["items"]], rest["next_offset"]) == ([to_fr], None)
    assert audited(nodes, LIST_ACTION)[-1]["target"] is None
    # Nothing issued since a later time; the hits before `since` are older.
    later = listed(nodes, "/hits", requester="TH", since=datetime.now(UTC).isoformat()).json()
    assert later == {"items": [], "next_after": None, "next_offset": None}
    older = listed(nodes, "/hits", requester="TH", limit=1000).json()["items"]
    assert len(older) > 2  # the hits of the earlier tests
    assert [i["reference"] for i in older[-2:]] == [h["reference"] for h in to_th]


@pytest.mark.parametrize(
    "params",
    [
        {"requester": "XYZ"},
        {"requester": "Q1"},  # not a country code
        {"since": "2026-01-01T00:00:00"},  # no zone
        {"limit": 0},
        {"limit": 1001},
        {"offset": -1},
    ],
)
def test_a_hit_listing_with_refused_values_is_a_422_and_not_recorded(
    nodes: Setup, params: dict[str, Any]
) -> None:
    seen = len(audited(nodes, LIST_ACTION))
    r = listed(nodes, "/hits", **params)
    assert r.status_code == 422, r.text
    assert len(audited(nodes, LIST_ACTION)) == seen


@pytest.mark.parametrize("path", ["/hits", "/subjects/id-1/hits"])
@pytest.mark.parametrize(
    ("role", "status"), [(None, 401), (Role.OFFICER, 403), (Role.AUDITOR, 403)]
)
def test_only_an_operator_lists_hits(
    nodes: Setup, path: str, role: Role | None, status: int
) -> None:
    seen = len(audited(nodes, LIST_ACTION))
    r = listed(nodes, path, role)
    assert r.status_code == status, r.text
    assert r.json()["error"] in ("missing_token", "wrong_role")
    assert "id-1" not in r.text
    assert len(audited(nodes, LIST_ACTION)) == seen


def test_the_listings_are_documented_for_operators(nodes: Setup) -> None:
    spec = httpx.get(nodes.id.api_url + "/openapi.json").json()
    for path in ("/hits", "/subjects/{external_id}/hits"):
        op = spec["paths"][path]["get"]
        assert op["description"] == "Role: operator."
        assert {"401", "403", "404", "422"} <= set(op["responses"])
        assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/HitPage"
        }
    page = spec["components"]["schemas"]["HitPage"]["properties"]
    assert page["items"]["items"] == {"$ref": "#/components/schemas/HitSummary"}
    assert "records" in spec["components"]["schemas"]["HitOut"]["properties"]


def test_bdx_subjects_hits_lists_and_maps_refusals_to_exit_codes(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    got = hit(nodes, fingers[1][1])
    seen = len(audited(nodes, LIST_ACTION))
    done = bdx(nodes, Role.OPERATOR, "id-1", "--json", command="hits")
    assert done.returncode == 0, done.stderr
    page = json.loads(done.stdout)
    mine = page["items"][-1]
    assert (mine["reference"], mine["query_id"], mine["requester"], mine["subject"]) == (
        got["reference"],
        got["query_id"],
        "TH",
        "id-1",
    )
    text = bdx(nodes, Role.OPERATOR, "id-1", command="hits")
    assert text.returncode == 0, text.stderr
    line = f"{got['reference']}\tTH\t{mine['issued_at']}\tquery {got['query_id']}\tpending"
    assert text.stdout.splitlines()[-1] == line
    paged = bdx(nodes, Role.OPERATOR, "id-1", "--limit", "1", command="hits")
    assert paged.returncode == 0, paged.stderr
    assert len(paged.stdout.splitlines()) == 1
    first_page = json.loads(
        bdx(nodes, Role.OPERATOR, "id-1", "--limit", "1", "--json", command="hits").stdout
    )
    cursor = first_page["next_after"]
    assert paged.stderr == f"more: bdx subjects hits id-1 --limit 1 --after {cursor}\n"
    # The printed command continues with the next hit.
    then = bdx(nodes, Role.OPERATOR, "id-1", "--limit", "1", "--after", cursor, command="hits")
    assert then.returncode == 0, then.stderr
    assert then.stdout.split("\t")[0] == page["items"][1]["reference"]
    assert len(audited(nodes, LIST_ACTION)) == seen + 5  # each listing is recorded
    unknown = bdx(nodes, Role.OPERATOR, "nobody", command="hits")
    assert unknown.returncode == 4, unknown.stderr
    assert unknown.stderr.startswith("bdx: error:") and "[unknown_subject]" in unknown.stderr
    refused = bdx(nodes, Role.AUDITOR, "id-1", command="hits")
    assert refused.returncode == 5 and "[wrong_role]" in refused.stderr
    assert refused.stdout == ""
    assert len(audited(nodes, LIST_ACTION)) == seen + 5


def test_a_deleted_subject_has_no_hit_listing_and_the_queue_shows_its_hits_deleted(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    """As ``GET /subjects/{external_id}``: a deleted subject is not found (and the listing not
    recorded); the follow-up queue still shows its hit, naming nobody. Deletes id-2: last."""
    since = datetime.now(UTC)
    reference = hit(nodes, fingers[2][1])["reference"]
    gone = httpx.delete(nodes.id.api_url + "/subjects/id-2", headers=nodes.headers(Role.OPERATOR))
    assert gone.status_code == 200, gone.text
    seen = len(audited(nodes, LIST_ACTION))
    for who in ("id-2", "nobody"):
        r = listed(nodes, f"/subjects/{who}/hits")
        assert r.status_code == 404, r.text
        assert r.json()["error"] == "unknown_subject"
    assert len(audited(nodes, LIST_ACTION)) == seen
    (item,) = listed(nodes, "/hits", requester="TH", since=since.isoformat()).json()["items"]
    assert (item["reference"], item["subject"], item["state"]) == (reference, None, "deleted")
