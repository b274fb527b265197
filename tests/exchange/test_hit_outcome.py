"""The examiner's outcome of a hit's follow-up: the responding node's operator records it on the
reference a real peer query got (``PUT /hits/{reference}/outcome``, ``bdx subjects outcome``),
changes it, and each recording is in the audit trail and the tamper-evident log with the
outcome it replaced; the resolution and the listings show it, and the listings filter on it
(``?outcome=``, ``bdx subjects hits --outcome``). Two nodes served as ``bdx serve`` serves
them: TH asks, ID answers (the fixtures of :mod:`tests.exchange.test_hit_follow_up`)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from matcher.fingerprint.template import FingerprintTemplate
from node.db.models import RecordState, Role
from node.exchange.references import NOTE_CHARS, exchange_hits
from node.exchange.setup import housekeeping_round
from node.repositories.records import RecordRepository
from node.services.hits import LIST_ACTION, OUTCOME_ACTION
from tests.exchange.test_hit_follow_up import (
    Setup,
    audited,
    bdx,
    fingers,
    hit,
    listed,
    logged_resolutions,
    nodes,
    resolve,
)

#: The follow-up tests' module fixtures, set up afresh for this module: ID serving a gallery
#: of the synthetic fingers id-0 to id-4, TH asking it.
FIXTURES = (fingers, nodes)


def put_outcome(
    nodes: Setup, reference: str, body: dict[str, Any], role: Role | None = Role.OPERATOR
) -> httpx.Response:
    headers = nodes.headers(role) if role is not None else {}
    return httpx.put(f"{nodes.id.api_url}/hits/{reference}/outcome", json=body, headers=headers)


def test_an_operator_records_an_outcome_and_it_is_shown_and_audited(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    got = hit(nodes, fingers[1][1])
    reference = got["reference"]
    pending = resolve(nodes, reference).json()
    assert (pending["outcome"], pending["outcome_at"], pending["outcome_by"]) == (
        "pending",
        None,
        None,
    )
    before = datetime.now(UTC)
    r = put_outcome(nodes, reference, {"outcome": "confirmed", "note": "case file 2026/117"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body == {
        "reference": reference,
        "query_id": got["query_id"],
        "requester": "TH",
        "issued_at": pending["issued_at"],
        "outcome": "confirmed",
        "outcome_at": body["outcome_at"],
        "outcome_by": "user:operator",
        "note": "case file 2026/117",
        "previous": "pending",
    }
    assert before <= datetime.fromisoformat(body["outcome_at"]) <= datetime.now(UTC)
    assert "id-1" not in r.text  # recording discloses nothing: the resolution does
    shown = {k: body[k] for k in ("outcome", "outcome_at", "outcome_by", "note")}
    resolved = resolve(nodes, reference).json()
    assert {k: resolved[k] for k in shown} == shown
    (item,) = [
        i
        for i in listed(nodes, "/subjects/id-1/hits", limit=1000).json()["items"]
        if i["reference"] == reference
    ]
    assert {k: item[k] for k in shown} == shown
    (queued,) = [
        i for i in listed(nodes, "/hits", limit=1000).json()["items"] if i["reference"] == reference
    ]
    assert {k: queued[k] for k in shown} == shown
    # The auditor reviews who recorded what on which reference; the subject is not named.
    event = audited(nodes, OUTCOME_ACTION)[-1]
    assert (event["actor"], event["target"]) == ("user:operator", reference)
    assert event["details"] == {
        "outcome": "confirmed",
        "previous": None,
        "note": "case file 2026/117",
        "requester": "TH",
        "query_id": got["query_id"],
    }
    # The append-only log has it all but the note: typed personal data must stay erasable.
    logged = logged_resolutions(nodes.id, OUTCOME_ACTION)[-1]
    unlogged = {k: v for k, v in event["details"].items() if k != "note"}
    assert (logged["target"], logged["details"]) == (reference, unlogged)
    assert not any(b"case file 2026/117" in e.data for e in nodes.id.exchange.log.entries())


def test_changing_an_outcome_is_audited_with_the_one_it_replaced(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    reference = hit(nodes, fingers[0][1])["reference"]
    first = put_outcome(nodes, reference, {"outcome": "confirmed", "note": "first look"})
    assert first.status_code == 200, first.text
    r = put_outcome(nodes, reference, {"outcome": "not_confirmed"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["outcome"], body["previous"], body["note"]) == ("not_confirmed", "confirmed", None)
    assert body["outcome_at"] >= first.json()["outcome_at"]
    again = put_outcome(nodes, reference, {"outcome": "withdrawn", "note": "letter of 2 May"})
    assert again.json()["previous"] == "not_confirmed"
    events = [e for e in audited(nodes, OUTCOME_ACTION) if e["target"] == reference]
    assert [(e["details"]["outcome"], e["details"]["previous"]) for e in events] == [
        ("confirmed", None),
        ("not_confirmed", "confirmed"),
        ("withdrawn", "not_confirmed"),
    ]
    assert [e["details"]["note"] for e in events] == ["first look", None, "letter of 2 May"]
    resolved = resolve(nodes, reference).json()
    assert (resolved["outcome"], resolved["note"]) == ("withdrawn", "letter of 2 May")


def test_an_outcome_expected_to_be_pending_is_not_written_over_another_operators(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    """Two operators saw the hit pending; the first records it. The second says what she saw
    (``expected``): her recording is a conflict naming the outcome stored, and nothing is
    recorded; expecting the stored outcome, it is."""
    reference = hit(nodes, fingers[1][1])["reference"]
    first = put_outcome(nodes, reference, {"outcome": "confirmed", "expected": "pending"})
    assert first.status_code == 200, first.text
    assert first.json()["previous"] == "pending"
    seen = len(audited(nodes, OUTCOME_ACTION))
    second = put_outcome(nodes, reference, {"outcome": "not_confirmed", "expected": "pending"})
    assert second.status_code == 409, second.text
    assert second.json()["error"] == "outcome_changed"
    assert "the outcome stored is confirmed" in second.json()["detail"]
    assert len(audited(nodes, OUTCOME_ACTION)) == seen
    assert resolve(nodes, reference).json()["outcome"] == "confirmed"
    again = put_outcome(nodes, reference, {"outcome": "not_confirmed", "expected": "confirmed"})
    assert again.status_code == 200, again.text
    assert (again.json()["outcome"], again.json()["previous"]) == ("not_confirmed", "confirmed")
    # Refused expectations: 422, nothing recorded.
    for expected in ("maybe", "PENDING", None):
        body = {"outcome": "withdrawn", "expected": expected}
        if expected is None:
            body["expected"] = ["pending"]
        assert put_outcome(nodes, reference, body).status_code == 422
    assert len(audited(nodes, OUTCOME_ACTION)) == seen + 1
    # The CLI's --expect: a conflict is exit 3.
    clash = bdx(nodes, Role.OPERATOR, reference, "--withdrawn", "--expect", "pending", **OUT)
    assert clash.returncode == 3, clash.stderr
    assert "[outcome_changed]" in clash.stderr and "not_confirmed" in clash.stderr
    assert len(clash.stderr.splitlines()) == 1
    done = bdx(nodes, Role.OPERATOR, reference, "--withdrawn", "--expect", "not_confirmed", **OUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("was not_confirmed")
    bad = bdx(nodes, Role.OPERATOR, reference, "--withdrawn", "--expect", "maybe", **OUT)
    assert bad.returncode == 2 and "--expect" in bad.stderr
    assert len(audited(nodes, OUTCOME_ACTION)) == seen + 2


@pytest.mark.parametrize(
    "reference",
    ["A" * 22, "not-a-reference", "A" * 23, "%27%20OR%201%3D1%20--%20AAAAAAAAAA"],
)
def test_an_outcome_on_a_reference_never_issued_is_not_found_and_not_recorded(
    nodes: Setup, reference: str
) -> None:
    seen = len(audited(nodes, OUTCOME_ACTION))
    r = put_outcome(nodes, reference, {"outcome": "confirmed"})
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "unknown_reference"
    assert len(audited(nodes, OUTCOME_ACTION)) == seen


def test_an_outcome_expires_with_its_reference_from_the_issue(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    """A confirmed hit's reference expires ``hit_reference_days`` after the hit was issued,
    as a pending one; its outcome is then not found, while the audit trail keeps it."""
    old = hit(nodes, fingers[2][1])["reference"]
    young = hit(nodes, fingers[2][1])["reference"]
    for reference in (old, young):
        r = put_outcome(nodes, reference, {"outcome": "confirmed"})
        assert r.status_code == 200, r.text
    exchange = nodes.id.exchange
    issued = datetime.now(UTC) - exchange.responder.hits.retention - timedelta(minutes=1)
    with nodes.id.app.state.engine.begin() as conn:
        conn.execute(
            update(exchange_hits).where(exchange_hits.c.reference == old).values(created_at=issued)
        )
    exchange.hits_expired_at = float("-inf")  # hourly: due now
    asyncio.run(housekeeping_round(exchange, 3600.0))
    assert resolve(nodes, old).status_code == 404
    seen = len(audited(nodes, OUTCOME_ACTION))
    gone = put_outcome(nodes, old, {"outcome": "withdrawn"})
    assert gone.status_code == 404 and gone.json()["error"] == "unknown_reference"
    assert len(audited(nodes, OUTCOME_ACTION)) == seen
    assert old in {e["target"] for e in audited(nodes, OUTCOME_ACTION)}
    assert resolve(nodes, young).json()["outcome"] == "confirmed"


@pytest.mark.parametrize(
    "body",
    [
        {"outcome": "pending"},  # shown and filtered, never recorded
        {"outcome": "maybe"},
        {"outcome": "CONFIRMED"},
        {},
        {"note": "no outcome"},
        {"outcome": "confirmed", "note": "x" * (NOTE_CHARS + 1)},
        {"outcome": "confirmed", "note": ""},
        {"outcome": "confirmed", "note": "two\nlines"},
        {"outcome": "confirmed", "note": "\u202ereversed"},
        {"outcome": "confirmed", "note": "\x1b[31mred"},
        # Invisible and format characters (Unicode Cf, Hangul fillers), and blank notes.
        {"outcome": "confirmed", "note": "file\u061c 1"},
        {"outcome": "confirmed", "note": "file\u2060 1"},
        {"outcome": "confirmed", "note": "file\u206f 1"},
        {"outcome": "confirmed", "note": "file\u180e 1"},
        {"outcome": "confirmed", "note": "file\u00ad 1"},
        {"outcome": "confirmed", "note": "file\ufff9 1"},
        {"outcome": "confirmed", "note": "file 1\U000e0041\U000e007f"},
        {"outcome": "confirmed", "note": "\u3164"},
        {"outcome": "confirmed", "note": "\u115f\u1160"},
        {"outcome": "confirmed", "note": "   "},
        {"outcome": "confirmed", "note": "\u3000\t"},
        {"outcome": "confirmed", "subject": "id-0"},
    ],
)
def test_a_refused_outcome_is_a_422_and_nothing_is_recorded(
    nodes: Setup, fingers: list[list[FingerprintTemplate]], body: dict[str, Any]
) -> None:
    reference = hit(nodes, fingers[0][1])["reference"]
    seen = len(audited(nodes, OUTCOME_ACTION))
    r = put_outcome(nodes, reference, body)
    assert r.status_code == 422, r.text
    assert len(audited(nodes, OUTCOME_ACTION)) == seen
    assert resolve(nodes, reference).json()["outcome"] == "pending"


def test_the_longest_note_is_taken(nodes: Setup, fingers: list[list[FingerprintTemplate]]) -> None:
    reference = hit(nodes, fingers[0][1])["reference"]
    note = "é" * NOTE_CHARS  # characters, not bytes
    r = put_outcome(nodes, reference, {"outcome": "not_confirmed", "note": note})
    assert r.status_code == 200, r.text
    assert resolve(nodes, reference).json()["note"] == note


@pytest.mark.parametrize(
    ("role", "status"), [(None, 401), (Role.OFFICER, 403), (Role.AUDITOR, 403)]
)
def test_only_an_operator_records_an_outcome(
    nodes: Setup, fingers: list[list[FingerprintTemplate]], role: Role | None, status: int
) -> None:
    reference = hit(nodes, fingers[0][1])["reference"]
    seen = len(audited(nodes, OUTCOME_ACTION))
    r = put_outcome(nodes, reference, {"outcome": "confirmed"}, role)
    assert r.status_code == status, r.text
    assert r.json()["error"] in ("missing_token", "wrong_role")
    assert len(audited(nodes, OUTCOME_ACTION)) == seen
    assert resolve(nodes, reference).json()["outcome"] == "pending"


def test_the_listings_filter_on_the_outcome(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    since = datetime.now(UTC).isoformat()
    refs = {o: hit(nodes, fingers[1][1])["reference"] for o in ("confirmed", "withdrawn")}
    refs["not_confirmed"] = hit(nodes, fingers[0][1])["reference"]
    refs["pending"] = hit(nodes, fingers[1][1])["reference"]
    for outcome in ("confirmed", "not_confirmed", "withdrawn"):
        assert put_outcome(nodes, refs[outcome], {"outcome": outcome}).status_code == 200
    for outcome, reference in refs.items():
        page = listed(nodes, "/hits", since=since, outcome=outcome).json()
        assert [i["reference"] for i in page["items"]] == [reference], outcome
        assert {i["outcome"] for i in page["items"]} == {outcome}
    everyone = listed(nodes, "/hits", since=since).json()["items"]
    assert {i["reference"] for i in everyone} == set(refs.values())
    # One subject's hits: id-0's not_confirmed one is not id-1's.
    of_id1 = listed(nodes, "/subjects/id-1/hits", outcome="withdrawn", limit=1000).json()
    assert [i["reference"] for i in of_id1["items"]][-1:] == [refs["withdrawn"]]
    assert {i["outcome"] for i in of_id1["items"]} == {"withdrawn"}
    none = listed(nodes, "/subjects/id-1/hits", outcome="not_confirmed", limit=1000).json()
    assert refs["not_confirmed"] not in {i["reference"] for i in none["items"]}
    # The filter is in the listing's audit record.
    event = audited(nodes, LIST_ACTION)[-1]
    assert (event["target"], event["details"]["outcome"]) == ("id-1", "not_confirmed")


@pytest.mark.parametrize("path", ["/hits", "/subjects/id-1/hits"])
def test_working_the_pending_queue_page_by_page_skips_no_hit(
    nodes: Setup, fingers: list[list[FingerprintTemplate]], path: str
) -> None:
    """The operator records the outcome of each hit of a ``pending`` page before asking for
    the next one: the next page continues after the last hit shown (``next_after``), so the
    hits recorded leave the filter without shifting those still pending past her."""
    since = datetime.now(UTC).isoformat()
    queue = [hit(nodes, fingers[1][1])["reference"] for _ in range(5)]
    params: dict[str, Any] = {"outcome": "pending", "limit": 2}
    if path == "/hits":
        params["since"] = since
    else:  # id-1's earlier hits first: their outcomes recorded, they leave the queue
        for item in listed(nodes, path, limit=1000, outcome="pending").json()["items"]:
            if item["reference"] not in queue:
                put_outcome(nodes, item["reference"], {"outcome": "withdrawn"})
    seen: list[str] = []
    page = listed(nodes, path, **params).json()
    while True:
        shown = [i["reference"] for i in page["items"]]
        seen += shown
        for reference in shown:
            assert put_outcome(nodes, reference, {"outcome": "confirmed"}).status_code == 200
        if page["next_after"] is None:
            break
        page = listed(nodes, path, **params, after=page["next_after"]).json()
    assert seen == queue
    # The cursor's issue time is in the listing's audit record; its reference is not.
    event = audited(nodes, LIST_ACTION)[-1]
    assert event["details"]["after"] is not None
    assert not set(queue) & set(json.dumps(event["details"]).split('"'))
    assert datetime.fromisoformat(event["details"]["after"]) <= datetime.now(UTC)


@pytest.mark.parametrize("path", ["/hits", "/subjects/id-1/hits"])
@pytest.mark.parametrize(
    ("after", "error"),
    [
        ("not a cursor", "bad_cursor"),
        ("MTIzOkFBQUE", "bad_cursor"),  # "123:AAAA": no reference of this node
        ("eDpBQUFBQUFBQUFBQUFBQUFBQUFBQUFB", "bad_cursor"),  # "x:" and a reference: no time
        ("A" * 65, "invalid_request"),
        ("", "invalid_request"),
    ],
)
def test_a_listing_with_a_cursor_it_never_handed_out_is_a_422_and_not_recorded(
    nodes: Setup, path: str, after: str, error: str
) -> None:
    seen = len(audited(nodes, LIST_ACTION))
    r = listed(nodes, path, after=after)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == error
    assert len(audited(nodes, LIST_ACTION)) == seen


@pytest.mark.parametrize("path", ["/hits", "/subjects/id-1/hits"])
@pytest.mark.parametrize("outcome", ["maybe", "Confirmed", ""])
def test_a_listing_with_a_refused_outcome_filter_is_a_422_and_not_recorded(
    nodes: Setup, path: str, outcome: str
) -> None:
    seen = len(audited(nodes, LIST_ACTION))
    r = listed(nodes, path, outcome=outcome)
    assert r.status_code == 422, r.text
    assert len(audited(nodes, LIST_ACTION)) == seen


def test_the_outcome_route_is_documented_for_operators(nodes: Setup) -> None:
    spec = httpx.get(nodes.id.api_url + "/openapi.json").json()
    op = spec["paths"]["/hits/{reference}/outcome"]["put"]
    assert op["description"] == "Role: operator."
    assert {"401", "403", "404", "409", "415", "422"} <= set(op["responses"])
    assert "subject_deleted" in op["responses"]["409"]["description"]
    assert "outcome_changed" in op["responses"]["409"]["description"]
    assert "expected" in spec["components"]["schemas"]["OutcomeIn"]["properties"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OutcomeOut"
    }
    schemas = spec["components"]["schemas"]
    assert "personal data" in schemas["OutcomeIn"]["properties"]["note"]["description"]
    for shape in ("HitSummary", "HitOut", "OutcomeOut"):
        assert {"outcome", "outcome_at", "outcome_by", "note"} <= set(schemas[shape]["properties"])
    for path in ("/hits", "/subjects/{external_id}/hits"):
        names = {p["name"] for p in spec["paths"][path]["get"]["parameters"]}
        assert "outcome" in names


def test_bdx_subjects_outcome_records_and_maps_refusals_to_exit_codes(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    got = hit(nodes, fingers[2][1])
    reference = got["reference"]
    seen = len(audited(nodes, OUTCOME_ACTION))
    done = bdx(nodes, Role.OPERATOR, reference, "--confirmed", "--note", "file 9", "--json", **OUT)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert (body["outcome"], body["previous"], body["note"]) == ("confirmed", "pending", "file 9")
    text = bdx(nodes, Role.OPERATOR, reference, "--not-confirmed", **OUT)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"reference {reference} (query {got['query_id']} of TH): ")
    assert "outcome not_confirmed (recorded " in text.stdout
    assert text.stdout.rstrip().endswith("by user:operator), was confirmed")
    assert len(audited(nodes, OUTCOME_ACTION)) == seen + 2
    # The resolution says it too.
    shown = bdx(nodes, Role.OPERATOR, reference)
    assert "outcome not_confirmed (recorded " in shown.stdout, shown.stdout
    # No outcome, or two, or a note the node would refuse: usage errors, nothing sent.
    for args in (
        [],
        ["--confirmed", "--withdrawn"],
        ["--withdrawn", "--note", "a\tb"],
        ["--withdrawn", "--note", "a\u2060b"],
        ["--withdrawn", "--note", "  "],
    ):
        usage = bdx(nodes, Role.OPERATOR, reference, *args, **OUT)
        assert usage.returncode == 2, (args, usage.stderr)
    unknown = bdx(nodes, Role.OPERATOR, "A" * 22, "--confirmed", **OUT)
    assert unknown.returncode == 4, unknown.stderr
    assert unknown.stderr.startswith("bdx: error:") and "[unknown_reference]" in unknown.stderr
    assert len(unknown.stderr.splitlines()) == 1
    refused = bdx(nodes, Role.AUDITOR, reference, "--confirmed", **OUT)
    assert refused.returncode == 5 and "[wrong_role]" in refused.stderr
    assert refused.stdout == ""
    assert len(audited(nodes, OUTCOME_ACTION)) == seen + 2


def test_bdx_subjects_hits_filters_on_the_outcome(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    reference = hit(nodes, fingers[2][1])["reference"]
    assert put_outcome(nodes, reference, {"outcome": "withdrawn"}).status_code == 200
    done = bdx(nodes, Role.OPERATOR, "id-2", "--outcome", "withdrawn", "--json", **HITS)
    assert done.returncode == 0, done.stderr
    items = json.loads(done.stdout)["items"]
    assert items and {i["outcome"] for i in items} == {"withdrawn"}
    assert items[-1]["reference"] == reference
    text = bdx(nodes, Role.OPERATOR, "id-2", "--outcome", "withdrawn", **HITS)
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[-1].startswith(reference + "\tTH\t")
    assert text.stdout.splitlines()[-1].endswith("\twithdrawn")
    pending = bdx(nodes, Role.OPERATOR, "id-2", "--outcome", "pending", "--json", **HITS)
    assert reference not in pending.stdout
    assert {i["outcome"] for i in json.loads(pending.stdout)["items"]} <= {"pending"}
    # None match the filter: the subject has hits, none pending.
    for item in json.loads(pending.stdout)["items"]:
        assert put_outcome(nodes, item["reference"], {"outcome": "withdrawn"}).status_code == 200
    none = bdx(nodes, Role.OPERATOR, "id-2", "--outcome", "pending", **HITS)
    assert none.returncode == 0, none.stderr
    assert none.stdout == "no hits kept for subject id-2 are pending\n"
    bad = bdx(nodes, Role.OPERATOR, "id-2", "--outcome", "maybe", **HITS)
    assert bad.returncode == 2 and "--outcome" in bad.stderr


def test_an_outcome_on_a_deleted_subjects_hit_is_a_conflict(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    """As a resolution says ``deleted``: the reference is known, its follow-up is over. The
    outcome recorded before the deletion stays shown. Deletes id-3."""
    reference = hit(nodes, fingers[3][1])["reference"]
    assert put_outcome(nodes, reference, {"outcome": "confirmed"}).status_code == 200
    gone = httpx.delete(nodes.id.api_url + "/subjects/id-3", headers=nodes.headers(Role.OPERATOR))
    assert gone.status_code == 200, gone.text
    seen = len(audited(nodes, OUTCOME_ACTION))
    r = put_outcome(nodes, reference, {"outcome": "withdrawn"})
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "subject_deleted"
    assert len(audited(nodes, OUTCOME_ACTION)) == seen
    resolved = resolve(nodes, reference).json()
    assert (resolved["state"], resolved["outcome"]) == ("deleted", "confirmed")
    cli = bdx(nodes, Role.OPERATOR, reference, "--withdrawn", **OUT)
    assert cli.returncode == 3 and "[subject_deleted]" in cli.stderr
    assert len(audited(nodes, OUTCOME_ACTION)) == seen


def test_an_outcome_on_a_subject_being_deleted_is_a_conflict(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    """Its records flagged ``deleting`` as a deletion whose gallery write failed leaves them.
    Leaves id-4 so."""
    reference = hit(nodes, fingers[4][1])["reference"]
    shown = httpx.get(nodes.id.api_url + "/subjects/id-4", headers=nodes.headers(Role.OPERATOR))
    records = [r["reference"] for r in shown.json()["records"]]
    with nodes.id.app.state.sessions() as session:
        assert RecordRepository(session).set_state(records, RecordState.DELETING) == 1
        session.commit()
    seen = len(audited(nodes, OUTCOME_ACTION))
    r = put_outcome(nodes, reference, {"outcome": "confirmed"})
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "subject_deleting"
    assert len(audited(nodes, OUTCOME_ACTION)) == seen
    assert resolve(nodes, reference).json()["outcome"] == "pending"


#: ``bdx`` keyword arguments naming the subcommand.
OUT = {"command": "outcome"}
HITS = {"command": "hits"}


@pytest.mark.parametrize("after", ["garbage", "A" * 500])
def test_the_command_line_refuses_a_cursor_it_never_printed(nodes: Setup, after: str) -> None:
    """A cursor the node would refuse (422 bad_cursor, exit 3) is a usage error, exit 2."""
    r = bdx(nodes, Role.OPERATOR, "id-1", "--after", after, command="hits")
    assert r.returncode == 2 and "--after" in r.stderr, (r.returncode, r.stderr)
