"""The requesting country learns the examiner's outcome of a hit it got: TH's officer asks
(``POST /queries/{id}/outcome``, ``bdx queries outcome``), TH asks ID on its peer port
(``GET /peer/v1/hits/{reference}/outcome``, mutual TLS) and verifies ID's signed answer; ID's
operator records the outcome (``PUT /hits/{reference}/outcome``). Three nodes served as
``bdx serve`` serves them, over mutual TLS with the project's PKI: TH asks, ID answers, MY
is another member that tries TH's reference."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from certs.errors import CertsError
from certs.pki.bootstrap import build_region, write_region
from certs.pki.errors import MessageRefused
from matcher.fingerprint import iso19794_2
from matcher.fingerprint.template import FingerprintTemplate
from matcher.synthetic import synthetic_templates
from node.db.models import Role
from node.exchange import outcomes, params
from node.exchange.admission import RefusalBudget
from node.exchange.messages import new_nonce
from node.exchange.outcomes import (
    OUTCOME_FORMAT,
    OUTCOME_TYP,
    TOO_MANY,
    OutcomeDesk,
    check_outcome,
    outcome_path,
)
from node.exchange.references import exchange_hits
from node.exchange.replay import ReplayError
from node.exchange.requester import Peer
from node.services.hit_outcomes import OUTCOME_ACTION
from node.services.users import UserService
from tests.exchange.service_support import ServiceNode, free_port, serving
from tests.exchange.test_peer_limits import client

BDX = [sys.executable, "-c", "from node.cli import main; main()"]
FINGERS = 5
COUNTRIES = ("TH", "ID", "MY")


@dataclass
class Setup:
    th: ServiceNode
    id: ServiceNode
    my: ServiceNode
    region: Path
    tokens: dict[str, str]  # at TH, by user name; "operator@ID" at ID

    def headers(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}


@pytest.fixture(scope="module")
def fingers() -> list[list[FingerprintTemplate]]:
    return synthetic_templates(FINGERS, 2, seed=23)


@pytest.fixture(scope="module")
def stranger() -> FingerprintTemplate:
    """A finger ID does not hold: a no-hit."""
    return synthetic_templates(1, 2, seed=41)[0][1]


@pytest.fixture(scope="module")
def nodes(
    fingers: list[list[FingerprintTemplate]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("outcome-region")
    write_region(build_region(COUNTRIES), root)
    with serving(tmp_path_factory.mktemp("outcome-nodes"), root, COUNTRIES) as served:
        served["ID"].enrol([f"id-{i}" for i in range(FINGERS)], [f[0] for f in fingers])
        th = served["TH"]
        tokens = {"officer": th.token}
        with th.app.state.sessions() as session:
            users = UserService(session)
            for name, role in (
                ("officer2", Role.OFFICER),
                ("admin", Role.ADMIN),
                ("auditor", Role.AUDITOR),
                ("operator", Role.OPERATOR),
            ):
                users.add_user(name, role, actor="test")
                tokens[name] = users.issue_token(name, expires_days=1, actor="test").token
        with served["ID"].app.state.sessions() as session:
            users = UserService(session)
            users.add_user("operator", Role.OPERATOR, actor="test")
            tokens["operator@ID"] = users.issue_token(
                "operator", expires_days=1, actor="test"
            ).token
        setup = Setup(th, served["ID"], served["MY"], root, tokens)
        # ID's first search after the enrolment loads the new gallery: done here.
        send(setup, fingers[0][1], case_ref="warm-up")
        yield setup


@pytest.fixture(autouse=True)
def fresh_allowance(nodes: Setup) -> Iterator[None]:
    """ID answers each test's outcome requests with a full allowance (its tunables)."""
    nodes.id.app.state.outcome_desk = OutcomeDesk(nodes.id.exchange.responder)
    yield
    nodes.id.app.state.outcome_desk = None


def send(
    nodes: Setup, probe: FingerprintTemplate, *, case_ref: str, user: str = "officer"
) -> dict[str, Any]:
    """``user``'s query to ID through TH's API: ID's result."""
    body = {
        "peers": ["ID"],
        "purpose": "asylum",
        "modality": "fingerprint",
        "templates": [
            {"data": base64.b64encode(iso19794_2.encode(probe)).decode(), "finger_position": 1}
        ],
        "case_ref": case_ref,
    }
    r = httpx.post(
        nodes.th.api_url + "/queries", json=body, headers=nodes.headers(user), timeout=60
    )
    assert r.status_code == 200, r.text
    (result,) = r.json()["results"]
    return dict(result)


def hit(nodes: Setup, probe: FingerprintTemplate, user: str = "officer") -> tuple[str, str]:
    """A query of ``user`` that ID answers with a hit: its id and the reference."""
    got = send(nodes, probe, case_ref="case-7", user=user)
    assert got["outcome"] == "hit", got
    return got["query_id"], got["reference"]


def ask(nodes: Setup, query_id: str, user: str = "officer") -> httpx.Response:
    return httpx.post(
        f"{nodes.th.api_url}/queries/{query_id}/outcome", headers=nodes.headers(user), timeout=60
    )


def answered(nodes: Setup, query_id: str, user: str = "officer") -> dict[str, Any]:
    r = ask(nodes, query_id, user)
    assert r.status_code == 200, r.text
    (result,) = r.json()["results"]
    return dict(result)


def record(nodes: Setup, reference: str, outcome: str, note: str | None = None) -> None:
    """ID's operator records the examiner's ``outcome`` of the hit ``reference``."""
    r = httpx.put(
        f"{nodes.id.api_url}/hits/{reference}/outcome",
        json={"outcome": outcome, "note": note},
        headers=nodes.headers("operator@ID"),
        timeout=60,
    )
    assert r.status_code == 200, r.text


def events(node: ServiceNode, kind: str) -> list[dict[str, Any]]:
    found = [json.loads(e.data) for e in node.exchange.log.entries()]
    return [e for e in found if e.get("type") == kind]


def signed(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JWS's header and payload."""
    head, body = (
        json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in token.split(".")[:2]
    )
    return head, body


def peer_token(nodes: Setup, reference: str, nonce: str, country: str = "TH") -> str:
    """ID's signed outcome of ``reference``, asked on its peer port as ``country``."""
    with client(nodes.region, country) as http:
        r = http.get(nodes.id.peer_url + outcome_path(reference), params={"nonce": nonce})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/jose"
    return r.text


def bdx(nodes: Setup, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BDX_TOKEN": nodes.tokens[user]}
    env.pop("BDX_TOKEN_FILE", None)
    command = [*BDX, "queries", *args, "--url", nodes.th.api_url]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_pending_then_confirmed_once_the_examiner_recorded_it(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    query_id, reference = hit(nodes, fingers[0][1])
    sent_before = len(events(nodes.id, "outcome_sent"))
    first = answered(nodes, query_id)
    assert (first["peer"], first["reference"]) == ("ID", reference)
    assert (first["status"], first["outcome"], first["outcome_at"]) == ("answered", "pending", None)
    record(nodes, reference, "confirmed", note="file 2026/117")
    second = answered(nodes, query_id)
    assert (second["status"], second["outcome"]) == ("answered", "confirmed")
    at = datetime.fromisoformat(second["outcome_at"])
    assert abs(datetime.now(UTC) - at) < timedelta(minutes=5)
    # The signed answer: its own typ, and nothing of the note, the operator or the subject.
    head, payload = signed(second["outcome_jws"])
    assert head["typ"] == OUTCOME_TYP
    assert set(payload) == {
        *("v", "kind", "format", "sender", "responder", "requester", "reference", "nonce"),
        *("issued_at", "query_id", "outcome", "outcome_at"),
    }
    assert payload["format"] == OUTCOME_FORMAT and payload["query_id"] == query_id
    assert "2026/117" not in json.dumps(payload) and "operator" not in json.dumps(payload)
    # ID logged each answer (no nonce, no personal data); TH logged each one received.
    sent = events(nodes.id, "outcome_sent")[sent_before:]
    assert [(e["peer"], e["known"], e["outcome"]) for e in sent] == [
        ("TH", True, "pending"),
        ("TH", True, "confirmed"),
    ]
    assert all("nonce" not in e and "2026/117" not in json.dumps(e) for e in sent)
    received = [e for e in events(nodes.th, "outcome_received") if e["query_id"] == query_id]
    assert [(e["status"], e["outcome"]) for e in received] == [
        ("answered", "pending"),
        ("answered", "confirmed"),
    ]
    assert received[-1]["asked_by"] == "user:officer"
    # The query's view shows the latest outcome received.
    shown = httpx.get(
        f"{nodes.th.api_url}/queries/{query_id}", headers=nodes.headers("officer"), timeout=60
    )
    assert shown.status_code == 200, shown.text
    follow_up = shown.json()["follow_up"]
    assert (follow_up["status"], follow_up["outcome"]) == ("answered", "confirmed")
    assert datetime.fromisoformat(follow_up["outcome_at"]) == at
    out = bdx(nodes, "officer", "show", query_id)
    assert out.returncode == 0, out.stderr
    assert "examiner's outcome: confirmed (recorded " in out.stdout


def test_a_false_hit_is_told_not_confirmed_and_the_command_line_says_so(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    query_id, reference = hit(nodes, fingers[1][1])
    record(nodes, reference, "not_confirmed")
    out = bdx(nodes, "officer", "outcome", query_id, "--json")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["query_id"] == query_id and body["case_ref"] == "case-7"
    (result,) = body["results"]
    assert (result["status"], result["outcome"]) == ("answered", "not_confirmed")
    plain = bdx(nodes, "officer", "outcome", query_id)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.split("\t")[:4] == ["ID", reference, "answered", "not_confirmed"]


def test_another_country_asking_for_ths_reference_learns_nothing(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    """MY asks ID for the reference ID gave TH: the same signed unknown_reference as for a
    reference never issued (no oracle), and ID logs neither reference."""
    _, reference = hit(nodes, fingers[2][1])
    record(nodes, reference, "confirmed")
    trust = nodes.my.exchange.requester.trust
    answers = {}
    for asked in (reference, "A" * len(reference)):
        nonce = new_nonce()
        token = peer_token(nodes, asked, nonce, country="MY")
        payload = check_outcome(
            token,
            trust,
            peer="ID",
            own="MY",
            nonce=nonce,
            reference=asked,
            query_id="unused",
            window=params.REPLAY_WINDOW,
        )
        assert payload.refusal == "unknown_reference" and payload.outcome is None
        _, body = signed(token)
        answers[asked] = {k: v for k, v in body.items() if k not in ("nonce", "issued_at")}
    mine, never = answers[reference], answers["A" * len(reference)]
    assert (
        set(mine)
        == set(never)
        == {
            *("v", "kind", "format", "sender", "responder", "requester", "reference", "refusal"),
        }
    )
    assert {**mine, "reference": None} == {**never, "reference": None}
    logged = events(nodes.id, "outcome_sent")[-2:]
    assert [(e["peer"], e["known"]) for e in logged] == [("MY", False), ("MY", False)]
    assert all(set(e) == {"type", "node", "at", "peer", "known"} for e in logged)


def test_a_reference_past_its_follow_up_period_is_unknown(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    """Counted from the hit's issue, also before housekeeping deleted its row: exit 4."""
    query_id, reference = hit(nodes, fingers[3][1])
    retention = nodes.id.exchange.responder.hits.retention
    assert retention is not None
    issued = datetime.now(UTC) - retention - timedelta(minutes=1)
    with nodes.id.app.state.engine.begin() as conn:
        conn.execute(
            update(exchange_hits)
            .where(exchange_hits.c.reference == reference)
            .values(created_at=issued)
        )
    result = answered(nodes, query_id)
    assert (result["status"], result["outcome"]) == ("unknown_reference", None)
    _, payload = signed(result["outcome_jws"])
    assert payload["refusal"] == "unknown_reference" and "query_id" not in payload
    out = bdx(nodes, "officer", "outcome", query_id)
    assert out.returncode == 4, (out.stdout, out.stderr)
    assert out.stderr.rstrip().endswith("[unknown_reference]")


def test_a_tampered_signature_another_nonce_a_stale_or_misaddressed_answer_is_refused(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    query_id, reference = hit(nodes, fingers[4][1])
    nonce = new_nonce()
    token = peer_token(nodes, reference, nonce)
    trust = nodes.th.exchange.requester.trust
    window = params.REPLAY_WINDOW

    def check(token: str, nonce: str = nonce, **kwargs: Any) -> Any:
        asked = {"reference": reference, "query_id": query_id, **kwargs}
        return check_outcome(token, trust, peer="ID", own="TH", nonce=nonce, window=window, **asked)

    payload = check(token)
    assert payload.outcome == "pending" and str(payload.query_id) == query_id
    head, body, sig = token.split(".")
    flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    with pytest.raises(CertsError) as bad:
        check(f"{head}.{body}.{flipped}")
    assert bad.value.reason == "bad_signature"
    with pytest.raises(ReplayError) as other:
        check(token, nonce=new_nonce())
    assert other.value.reason == "nonce_mismatch"
    with pytest.raises(ReplayError) as stale:
        check(token, now=payload.issued_at + window + timedelta(seconds=1))
    assert stale.value.reason == "stale_message"
    with pytest.raises(MessageRefused) as wrong_ref:
        check(token, reference="B" * len(reference))
    assert wrong_ref.value.reason == "wrong_reference"
    with pytest.raises(MessageRefused) as wrong_query:
        check(token, query_id="00000000-0000-4000-8000-000000000000")
    assert wrong_query.value.reason == "wrong_query"
    with pytest.raises(MessageRefused) as wrong_node:
        check_outcome(
            token,
            trust,
            peer="ID",
            own="MY",
            nonce=nonce,
            reference=reference,
            query_id=query_id,
            window=window,
        )
    assert wrong_node.value.reason == "wrong_recipient"


def test_a_peer_whose_clock_is_off_or_that_is_down_gives_no_outcome(
    nodes: Setup, fingers: list[list[FingerprintTemplate]], monkeypatch: pytest.MonkeyPatch
) -> None:
    query_id, _ = hit(nodes, fingers[4][1])
    responder = nodes.id.exchange.responder
    with monkeypatch.context() as patched:
        patched.setattr(responder, "clock", lambda: datetime.now(UTC) - timedelta(hours=1))
        stale = answered(nodes, query_id)
    assert stale["status"] == "invalid_reply" and "stale_message" in stale["detail"]
    assert stale["outcome"] is None and stale["outcome_jws"] is None
    dead = Peer("ID", f"https://127.0.0.1:{free_port()}")
    monkeypatch.setitem(nodes.th.exchange.peers, "ID", dead)
    away = answered(nodes, query_id)
    assert away["status"] == "unreachable"
    out = bdx(nodes, "officer", "outcome", query_id)
    assert out.returncode == 6, (out.stdout, out.stderr)
    logged = [e for e in events(nodes.th, "outcome_received") if e["query_id"] == query_id]
    assert [e["status"] for e in logged] == ["invalid_reply", "unreachable", "unreachable"]


def outcome_audit(nodes: Setup, query_id: str) -> list[dict[str, Any]]:
    """TH's ``query.outcome`` audit events of query ``query_id``, oldest first."""
    audit = httpx.get(
        nodes.th.api_url + "/audit-events",
        params={"action": OUTCOME_ACTION, "limit": 1000},
        headers=nodes.headers("auditor"),
        timeout=60,
    )
    assert audit.status_code == 200, audit.text
    return [e for e in audit.json()["items"] if e["target"] == query_id]


def test_officers_ask_for_their_own_queries_only_admins_on_the_record_auditors_not(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    """Asking contacts the peer and logs at both ends: officers and admins, as a poll."""
    query_id, _ = hit(nodes, fingers[0][1])
    other = ask(nodes, query_id, "officer2")
    assert other.status_code == 404 and other.json()["error"] == "unknown_query"
    assert ask(nodes, "00000000-0000-4000-8000-000000000000").status_code == 404
    sent = len(events(nodes.id, "outcome_sent"))
    for user in ("operator", "auditor"):
        refused = ask(nodes, query_id, user)
        assert refused.status_code == 403 and refused.json()["error"] == "wrong_role"
    out = bdx(nodes, "auditor", "outcome", query_id)
    assert out.returncode == 5 and out.stderr.rstrip().endswith("[wrong_role]")
    assert len(events(nodes.id, "outcome_sent")) == sent  # nobody was asked
    assert answered(nodes, query_id, "admin")["status"] == "answered"
    mine = outcome_audit(nodes, query_id)
    assert [e["actor"] for e in mine] == ["user:admin"]
    assert mine[0]["details"]["officer"] == "user:officer"
    assert mine[0]["details"]["status"] == "answered"
    out = bdx(nodes, "officer2", "outcome", query_id)
    assert out.returncode == 4 and out.stderr.rstrip().endswith("[unknown_query]")
    spec = httpx.get(nodes.th.api_url + "/openapi.json", timeout=30).json()
    described = spec["paths"]["/queries/{query_id}/outcome"]["post"]["description"]
    assert described.endswith("Role: admin or officer.")


def test_an_admins_asking_refused_for_this_nodes_own_pki_is_on_the_record(
    nodes: Setup, fingers: list[list[FingerprintTemplate]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a refused no_hit one is: the admin read the query's state."""
    query_id, _ = hit(nodes, fingers[1][1])
    watch = nodes.th.exchange.pki_watch
    real = watch.refusal
    sent = len(events(nodes.id, "outcome_sent"))
    with monkeypatch.context() as patched:  # TH's trust list and CRL long past their update
        patched.setattr(
            watch, "refusal", lambda now=None: real(datetime.now(UTC) + timedelta(days=4000))
        )
        r = ask(nodes, query_id, "admin")
    assert r.status_code == 503 and r.json()["error"].startswith("own_"), r.text
    assert len(events(nodes.id, "outcome_sent")) == sent  # nobody was asked
    (recorded,) = outcome_audit(nodes, query_id)
    assert recorded["actor"] == "user:admin"
    assert recorded["details"] == {
        "officer": "user:officer",
        "peer": "ID",
        "status": "answered",
        "refused": r.json()["error"],
    }


def test_overlapping_askings_show_the_answer_the_peer_signed_last(
    nodes: Setup, fingers: list[list[FingerprintTemplate]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The officer's asking has ID's "pending" in hand, slow to verify, when ID's operator
    records "confirmed" and an admin asks: the query's follow-up is "confirmed", whichever
    asking finished first."""
    query_id, reference = hit(nodes, fingers[2][1])
    real = outcomes.check_outcome
    holding = threading.Event()
    second_done = threading.Event()
    calls: list[int] = []

    def slow_first(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:  # the first answer, signed "pending", waits before it verifies
            holding.set()
            second_done.wait(timeout=3)
        return real(*args, **kwargs)

    monkeypatch.setattr(outcomes, "check_outcome", slow_first)
    results: dict[str, dict[str, Any]] = {}
    first = threading.Thread(target=lambda: results.setdefault("first", answered(nodes, query_id)))
    first.start()
    try:
        assert holding.wait(timeout=60)
        record(nodes, reference, "confirmed")
        results["second"] = answered(nodes, query_id, "admin")
        second_done.set()
    finally:
        second_done.set()
        first.join(timeout=120)
    assert results["first"]["outcome"] == "pending"
    assert results["second"]["outcome"] == "confirmed"
    shown = httpx.get(
        f"{nodes.th.api_url}/queries/{query_id}", headers=nodes.headers("officer"), timeout=60
    )
    assert shown.status_code == 200, shown.text
    assert shown.json()["follow_up"]["outcome"] == "confirmed"
    out = bdx(nodes, "officer", "show", query_id)
    assert out.returncode == 0, out.stderr
    assert "examiner's outcome: confirmed (recorded " in out.stdout
    # Each entry logs when ID signed the answer, as verified.
    received = [e for e in events(nodes.th, "outcome_received") if e["query_id"] == query_id]
    assert sorted(datetime.fromisoformat(e["issued_at"]) for e in received) == sorted(
        datetime.fromisoformat(results[k]["issued_at"]) for k in ("first", "second")
    )


def test_the_follow_up_is_the_answer_signed_last_not_the_one_logged_last(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    """Entries logged out of the order ID signed them (another process, an older node):
    the greatest issued_at stands, a tie goes to the one logged later, and an entry logged
    before issued_at was (none) counts as older than any with it."""
    query_id, reference = hit(nodes, fingers[3][1])
    signed_at = datetime.now(UTC) - timedelta(minutes=5)

    def log(outcome: str, issued_at: datetime | None) -> str:
        event: dict[str, Any] = {
            "type": "outcome_received",
            "node": "TH",
            "peer": "ID",
            "query_id": query_id,
            "reference": reference,
            "status": "answered",
            "outcome": outcome,
            "outcome_at": None if outcome == "pending" else signed_at.isoformat(),
            "detail": None,
            "outcome_jws": None,
            "asked_by": "user:officer",
            "at": datetime.now(UTC).isoformat(),
        }
        if issued_at is not None:
            event["issued_at"] = issued_at.isoformat()
        nodes.th.exchange.requester.log.record_many([event])
        shown = httpx.get(
            f"{nodes.th.api_url}/queries/{query_id}", headers=nodes.headers("officer"), timeout=60
        )
        assert shown.status_code == 200, shown.text
        return str(shown.json()["follow_up"]["outcome"])

    assert log("withdrawn", None) == "withdrawn"  # logged before issued_at was
    assert log("confirmed", signed_at + timedelta(seconds=2)) == "confirmed"
    assert log("pending", signed_at + timedelta(seconds=1)) == "confirmed"  # signed before
    assert log("withdrawn", None) == "confirmed"  # an old entry after, older all the same
    assert log("not_confirmed", signed_at + timedelta(seconds=2)) == "not_confirmed"  # a tie


def test_a_query_without_a_hit_has_nothing_to_ask(
    nodes: Setup, stranger: FingerprintTemplate
) -> None:
    got = send(nodes, stranger, case_ref="case-8")
    assert got["outcome"] == "no_hit", got
    sent = len(events(nodes.id, "outcome_sent"))
    r = ask(nodes, got["query_id"])
    assert r.status_code == 409 and r.json()["error"] == "no_hit"
    out = bdx(nodes, "officer", "outcome", got["query_id"])
    assert out.returncode == 3, (out.stdout, out.stderr)
    assert out.stderr.rstrip().endswith("[no_hit]")
    assert len(events(nodes.id, "outcome_sent")) == sent  # nobody was asked


def test_a_peer_asking_beyond_its_allowance_is_counted_not_logged(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    """One request at once for TH: the second is 429 (TH's officer sees http_error), and
    its count is logged by ID as one refusals_suppressed event."""
    query_id, reference = hit(nodes, fingers[1][1])
    responder = nodes.id.exchange.responder
    nodes.id.app.state.outcome_desk = OutcomeDesk(responder, RefusalBudget(1.0, 1e-9))
    with client(nodes.region, "TH") as http:
        url = nodes.id.peer_url + outcome_path(reference)
        assert http.get(url, params={"nonce": new_nonce()}).status_code == 200
        refused = http.get(url, params={"nonce": new_nonce()})
    assert refused.status_code == 429 and refused.json()["error"] == TOO_MANY
    assert "Retry-After" in refused.headers
    assert answered(nodes, query_id)["status"] == "http_error"
    responder.flush_refusal_summaries(closing=True)
    (summary,) = [
        e
        for e in events(nodes.id, "refusals_suppressed")
        if e["peer"] == "TH" and TOO_MANY in e["reasons"]
    ]
    assert summary["count"] == 2 and summary["reasons"] == {TOO_MANY: 2}


def test_the_peer_route_needs_a_member_certificate_and_a_nonce(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    _, reference = hit(nodes, fingers[2][1])
    url = nodes.id.peer_url + outcome_path(reference)
    with httpx.Client(verify=False, timeout=30) as http, pytest.raises(httpx.HTTPError):
        http.get(url, params={"nonce": new_nonce()})
    with client(nodes.region, "TH") as http:
        assert http.get(url).status_code == 422
        assert http.get(url, params={"nonce": "short"}).status_code == 422
        bad = nodes.id.peer_url + outcome_path("no.such.reference")
        assert http.get(bad, params={"nonce": new_nonce()}).status_code == 422
