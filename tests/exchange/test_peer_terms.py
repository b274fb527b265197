"""A peer's signed terms (``GET /peer/v1/terms`` between nodes, ``GET /peers/{country}/terms``
and ``bdx peers terms`` at the asking node): TH asks ID what ID's rules let TH ask it now, on
real nodes served as ``bdx serve`` serves them, over mutual TLS with the project's PKI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from certs import jws
from certs.errors import CertsError
from certs.pki import params as pki_params
from certs.pki import reasons
from certs.pki.bootstrap import build_region, write_region
from certs.pki.errors import MessageRefused
from matcher.fingerprint.template import FingerprintTemplate
from matcher.synthetic import synthetic_templates
from node.db.models import Role
from node.exchange import params
from node.exchange import terms as terms_module
from node.exchange.admission import RefusalBudget
from node.exchange.messages import new_nonce
from node.exchange.replay import ReplayError
from node.exchange.requester import Peer
from node.exchange.setup import housekeeping_round
from node.exchange.terms import (
    TERMS_FORMAT,
    TERMS_PATH,
    TERMS_TYP,
    TOO_MANY,
    TermsDesk,
    TermsPayload,
    check_terms,
    fetch_terms,
)
from node.services.peer_terms import TERMS_READ_ACTION
from node.services.users import UserService
from policy.rules import parse_policy
from tests.exchange.service_support import ServiceNode, dated_region, free_port, serving
from tests.exchange.test_peer_limits import Clock, ask, client, outcome, signed_query

COUNTRIES = ("TH", "ID")
#: ID's rules give TH this many fingerprint searches a day (service_support.rules).
LIMIT = 100


@dataclass
class Setup:
    th: ServiceNode
    id: ServiceNode
    region: Path
    tokens: dict[str, str]  # at TH, by role

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


@pytest.fixture(scope="module")
def fingers() -> list[list[FingerprintTemplate]]:
    return synthetic_templates(2, 2, seed=29)


@pytest.fixture(scope="module")
def nodes(
    fingers: list[list[FingerprintTemplate]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("terms-region")
    write_region(build_region(COUNTRIES), root)
    with serving(tmp_path_factory.mktemp("terms-nodes"), root, COUNTRIES) as served:
        served["ID"].enrol(["id-0"], [fingers[0][0]])
        th = served["TH"]
        tokens = {"officer": th.token}
        with th.app.state.sessions() as session:
            users = UserService(session)
            for role in (Role.ADMIN, Role.AUDITOR, Role.OPERATOR):
                users.add_user(role.value, role, actor="test")
                tokens[role.value] = users.issue_token(
                    role.value, expires_days=1, actor="test"
                ).token
        yield Setup(th, served["ID"], root, tokens)


@pytest.fixture(autouse=True)
def fresh_allowance(nodes: Setup) -> Iterator[None]:
    """ID answers each test's terms requests with a full allowance (its tunables)."""
    nodes.id.app.state.terms_desk = TermsDesk(nodes.id.exchange.responder)
    yield
    nodes.id.app.state.terms_desk = None


def read_terms(nodes: Setup, country: str = "ID", role: str = "officer") -> httpx.Response:
    return httpx.get(
        f"{nodes.th.api_url}/peers/{country}/terms", headers=nodes.headers(role), timeout=60
    )


def fingerprint_quota(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    (quota,) = response.json()["terms"]["quotas"]
    assert quota["modality"] == "fingerprint"
    return dict(quota)


def id_ledger(nodes: Setup) -> int:
    """What ID's own ledger says TH used today (its ``GET /quota`` reading)."""
    _, _, standings = nodes.id.exchange.policy.quota_standings()
    (standing,) = [s for s in standings if s.peer == "TH"]
    return standing.used


def peer_token(nodes: Setup, nonce: str) -> str:
    """ID's signed terms for TH, asked on ID's peer port with TH's TLS certificate."""
    with client(nodes.region, "TH") as http:
        r = http.get(nodes.id.peer_url + TERMS_PATH, params={"nonce": nonce})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/jose"
    return r.text


def terms_events(node: ServiceNode) -> list[dict[str, Any]]:
    events = [json.loads(e.data) for e in node.exchange.log.entries()]
    return [e for e in events if e.get("type") == "terms_sent"]


def cli(
    nodes: Setup,
    args: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    role: str = "officer",
) -> tuple[int, str, str]:
    """``bdx peers terms ARGS --url TH`` in-process with ``role``'s token: (code, out, err)."""
    from node.cli import main

    monkeypatch.setenv("BDX_TOKEN", nodes.tokens[role])
    monkeypatch.delenv("BDX_TOKEN_FILE", raising=False)
    with pytest.raises(SystemExit) as info:
        main(["peers", "terms", *args, "--url", nodes.th.api_url])
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_terms_are_signed_verified_and_name_what_th_may_ask(nodes: Setup) -> None:
    r = read_terms(nodes)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["peer"], body["requester"], body["format"]) == ("ID", "TH", TERMS_FORMAT)
    assert body["policy_version"] == "svc-1" and body["refusal"] is None
    terms = body["terms"]
    assert terms["purposes"] == ["asylum", "border_control"]
    assert terms["modalities"] == ["fingerprint"]
    assert terms["timezone"] == "UTC" and terms["hours"] == [] and terms["within_hours"]
    today = datetime.now(UTC).date()
    assert terms["day"] == today.isoformat()
    resets = datetime.fromisoformat(terms["resets_at"])
    assert resets == datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC)
    quota = fingerprint_quota(r)
    assert quota["limit"] == LIMIT and quota["used"] + quota["remaining"] == LIMIT
    issued = datetime.fromisoformat(body["issued_at"])
    assert abs(datetime.now(UTC) - issued) < timedelta(minutes=1)
    # The signed answer verifies here as TH verified it, and says what the API said.
    header = json.loads(_b64(body["terms_jws"].split(".")[0]))
    assert header["typ"] == TERMS_TYP
    payload = json.loads(_b64(body["terms_jws"].split(".")[1]))
    assert payload["sender"] == "ID" and payload["terms"]["quotas"][0]["used"] == quota["used"]
    # Exactly these fields: nothing about the gallery (its size, its records).
    assert set(payload) == {
        *("v", "kind", "format", "sender", "responder", "requester", "nonce"),
        *("issued_at", "policy_version", "terms"),
    }
    assert set(payload["terms"]) == {
        *("purposes", "modalities", "quotas", "timezone", "day", "resets_at", "hours"),
        "within_hours",
    }


def _b64(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_quota_used_follows_searches_and_asking_terms_consumes_nothing(
    nodes: Setup, fingers: list[list[FingerprintTemplate]]
) -> None:
    before = fingerprint_quota(read_terms(nodes))
    assert before["used"] == id_ledger(nodes)
    again = fingerprint_quota(read_terms(nodes, role="admin"))
    assert again == before  # asking twice took nothing from ID's quota
    assert id_ledger(nodes) == before["used"]
    with client(nodes.region, "TH") as http:
        query = signed_query(nodes.th, "ID", fingers[0][1])
        assert outcome(ask(http, nodes.id, query)) == "hit"
    after = fingerprint_quota(read_terms(nodes))
    assert (after["used"], after["remaining"]) == (before["used"] + 1, before["remaining"] - 1)
    assert id_ledger(nodes) == after["used"]


def test_each_answer_is_logged_at_the_peer_and_each_reading_audited_here(
    nodes: Setup,
) -> None:
    logged = len(terms_events(nodes.id))
    assert read_terms(nodes, role="admin").status_code == 200
    events = terms_events(nodes.id)
    assert len(events) == logged + 1
    event = events[-1]
    assert (event["peer"], event["node"], event["granted"]) == ("TH", "ID", True)
    assert event["policy_version"] == "svc-1" and "nonce" not in event
    audit = httpx.get(
        nodes.th.api_url + "/audit-events",
        params={"action": TERMS_READ_ACTION, "limit": 1000},
        headers=nodes.headers("auditor"),
        timeout=60,
    )
    assert audit.status_code == 200, audit.text
    last = audit.json()["items"][-1]
    assert (last["actor"], last["target"]) == ("user:admin", "ID")
    assert last["details"]["status"] == "answered" and last["details"]["granted"] is True


def test_a_tampered_signature_another_nonce_or_a_stale_answer_is_refused(
    nodes: Setup,
) -> None:
    nonce = new_nonce()
    token = peer_token(nodes, nonce)
    trust = nodes.th.exchange.requester.trust
    window = params.REPLAY_WINDOW

    def check(token: str, nonce: str = nonce, **kwargs: Any) -> TermsPayload:
        return check_terms(token, trust, peer="ID", own="TH", nonce=nonce, window=window, **kwargs)

    payload = check(token)
    assert payload.nonce == nonce and payload.terms is not None
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
    with pytest.raises(CertsError) as wrong:  # signed by ID, not by the peer asked
        check_terms(token, trust, peer="MY", own="TH", nonce=nonce, window=window)
    assert wrong.value.reason == "wrong_country"


def test_a_peer_whose_clock_is_off_is_refused_through_the_api(
    nodes: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ID signs terms dated an hour ago: TH's check refuses them (stale_message), 502."""
    responder = nodes.id.exchange.responder
    monkeypatch.setattr(responder, "clock", lambda: datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(ReplayError) as stale:
        asyncio.run(fetch_terms(nodes.th.exchange.requester, nodes.th.exchange.peers["ID"]))
    assert stale.value.reason == "stale_message"
    r = read_terms(nodes)
    assert r.status_code == 502 and r.json()["error"] == "invalid_reply"
    assert "stale_message" in r.json()["detail"]


def test_a_peer_without_rules_for_th_signs_that_it_grants_none(
    nodes: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As ID answers TH's query with a signed unknown_peer refusal."""
    engine = nodes.id.exchange.policy
    monkeypatch.setattr(
        engine,
        "policy",
        parse_policy(
            'version = "svc-2"\ncountry = "ID"\n[peers.MY]\n'
            'purposes = ["asylum"]\nmodalities = ["face"]\ndaily_quota = { face = 1 }\n'
        ),
    )
    r = read_terms(nodes)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["terms"] is None and body["refusal"] == "unknown_peer"
    # A country without rules there learns nothing of them: not even their version.
    assert body["policy_version"] is None
    signed = json.loads(_b64(body["terms_jws"].split(".")[1]))
    assert set(signed) == {
        *("v", "kind", "format", "sender", "responder", "requester", "nonce"),
        *("issued_at", "refusal"),
    }
    event = terms_events(nodes.id)[-1]  # ID's own log says which rules answered
    assert event["granted"] is False and event["policy_version"] == "svc-2"
    audit = httpx.get(
        nodes.th.api_url + "/audit-events",
        params={"action": TERMS_READ_ACTION, "limit": 1000},
        headers=nodes.headers("auditor"),
        timeout=60,
    )
    assert audit.json()["items"][-1]["details"] == {"status": "answered", "granted": False}


def test_unknown_and_unreachable_peers_and_roles(
    nodes: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    logged = len(terms_events(nodes.id))
    unknown = read_terms(nodes, "FR")
    assert unknown.status_code == 422 and unknown.json()["error"] == "unknown_peer"
    for role in ("operator", "auditor"):  # an auditor reviews: asking contacts the peer
        refused = read_terms(nodes, role=role)
        assert refused.status_code == 403 and refused.json()["error"] == "wrong_role"
    assert read_terms(nodes, role="admin").status_code == 200
    assert len(terms_events(nodes.id)) == logged + 1  # only the admin's went out
    dead = Peer("ID", f"https://127.0.0.1:{free_port()}")
    monkeypatch.setitem(nodes.th.exchange.peers, "ID", dead)
    away = read_terms(nodes)
    assert away.status_code == 502 and away.json()["error"] == "unreachable"
    spec = httpx.get(nodes.th.api_url + "/openapi.json", timeout=30).json()
    described = spec["paths"]["/peers/{country}/terms"]["get"]["description"]
    assert described.endswith("Role: admin or officer.")


def test_no_certificate_or_no_nonce_gets_no_terms(nodes: Setup) -> None:
    """The peer listener asks for a member's certificate in the handshake: none, no answer."""
    with httpx.Client(verify=False, timeout=30) as http, pytest.raises(httpx.HTTPError):
        http.get(nodes.id.peer_url + TERMS_PATH, params={"nonce": new_nonce()})
    with client(nodes.region, "TH") as http:
        r = http.get(nodes.id.peer_url + TERMS_PATH, params={"nonce": "short"})
    assert r.status_code == 422


def test_cli_prints_terms_and_json_and_exit_codes(
    nodes: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = cli(nodes, ["ID"], capsys, monkeypatch)
    assert code == 0, err
    assert "ID terms for TH" in out and "quota fingerprint: used" in out
    assert "hours: all day (UTC), within them now" in out
    code, out, err = cli(nodes, ["id", "--json"], capsys, monkeypatch)
    assert code == 0, err
    answer = json.loads(out)
    assert answer["peer"] == "ID" and answer["terms"]["quotas"][0]["limit"] == LIMIT
    code, out, err = cli(nodes, ["FR"], capsys, monkeypatch)
    assert code == 2 and out == "" and "[unknown_peer]" in err
    for role in ("operator", "auditor"):
        code, _, err = cli(nodes, ["ID"], capsys, monkeypatch, role=role)
        assert code == 5 and "[wrong_role]" in err
    dead = Peer("ID", f"https://127.0.0.1:{free_port()}")
    monkeypatch.setitem(nodes.th.exchange.peers, "ID", dead)
    code, out, err = cli(nodes, ["ID", "--json"], capsys, monkeypatch)
    assert code == 6 and out == "" and "[unreachable]" in err


def test_a_peer_asking_beyond_its_allowance_is_answered_429_and_counted(nodes: Setup) -> None:
    """Beyond its burst a peer's terms requests are refused (nothing signed), not logged one
    by one: their count goes into a refusals_suppressed event with its next answer."""
    clock = Clock()
    budget = RefusalBudget(2, 0.1, 60.0, monotonic=clock)
    nodes.id.app.state.terms_desk = TermsDesk(nodes.id.exchange.responder, budget)
    logged = len(terms_events(nodes.id))
    assert read_terms(nodes).status_code == 200
    peer_token(nodes, new_nonce())
    with client(nodes.region, "TH") as http:
        refused = http.get(nodes.id.peer_url + TERMS_PATH, params={"nonce": new_nonce()})
    assert refused.status_code == 429 and refused.json()["error"] == TOO_MANY
    assert refused.headers["retry-after"] == "60"
    away = read_terms(nodes)
    assert away.status_code == 502 and away.json()["error"] == "http_error"
    assert TOO_MANY in away.json()["detail"]
    assert len(terms_events(nodes.id)) == logged + 2
    clock.t += 61  # the summary's window closed; a token came back
    assert read_terms(nodes).status_code == 200
    events = [json.loads(e.data) for e in nodes.id.exchange.log.entries()]
    summary, answer = events[-2:]
    assert summary["type"] == "refusals_suppressed" and summary["peer"] == "TH"
    assert summary["count"] == 2 and summary["reasons"] == {TOO_MANY: 2}
    assert answer["type"] == "terms_sent"


def test_refusals_counted_are_logged_by_housekeeping_and_kept_when_an_append_fails(
    nodes: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer that stops asking has its count logged by the next housekeeping round, as the
    responder's own counts are; a count whose append failed is logged with the next one."""
    clock = Clock()
    budget = RefusalBudget(1, 0.1, 60.0, monotonic=clock)
    nodes.id.app.state.terms_desk = TermsDesk(nodes.id.exchange.responder, budget)

    def flood(refused: int) -> None:
        peer_token(nodes, new_nonce())
        with client(nodes.region, "TH") as http:
            for _ in range(refused):
                r = http.get(nodes.id.peer_url + TERMS_PATH, params={"nonce": new_nonce()})
                assert r.status_code == 429

    def summaries() -> list[dict[str, Any]]:
        events = [json.loads(e.data) for e in nodes.id.exchange.log.entries()]
        return [e for e in events if e.get("type") == "refusals_suppressed"]

    logged = len(summaries())
    flood(2)
    clock.t += 61  # the window closed; TH asks no more
    asyncio.run(housekeeping_round(nodes.id.exchange, 3600))
    (summary,) = summaries()[logged:]
    assert (summary["peer"], summary["count"], summary["reasons"]) == ("TH", 2, {TOO_MANY: 2})

    flood(3)
    clock.t += 61
    log = nodes.id.exchange.responder.log
    real = log.record_many
    failures = iter([OSError("disk full (injected)")])

    def fails_once(events: Any) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        real(events)

    monkeypatch.setattr(log, "record_many", fails_once)
    with client(nodes.region, "TH") as http:
        failed = http.get(nodes.id.peer_url + TERMS_PATH, params={"nonce": new_nonce()})
    assert failed.status_code == 500  # nothing signed left unlogged
    assert len(summaries()) == logged + 1
    clock.t += 10  # the failed answer took the allowance's one token
    peer_token(nodes, new_nonce())
    summary = summaries()[-1]
    assert len(summaries()) == logged + 2 and summary["count"] == 3


def test_refusals_counted_are_logged_when_the_node_stops(tmp_path: Path) -> None:
    """Eleven quick requests with the node's tunables: the eleventh is refused and counted,
    and the count is logged as the node stops (its window still open)."""
    root = tmp_path / "region"
    write_region(build_region(COUNTRIES), root)
    with serving(tmp_path / "data", root, COUNTRIES) as served:
        exchange = served["ID"].exchange  # the node's, which it lets go as it stops
        with client(root, "TH") as http:
            codes = [
                http.get(
                    served["ID"].peer_url + TERMS_PATH, params={"nonce": new_nonce()}
                ).status_code
                for _ in range(int(terms_module.TERMS_BURST) + 1)
            ]
        assert codes[-1] == 429 and set(codes[:-1]) == {200}
    events = [json.loads(e.data) for e in exchange.log.entries()]
    (summary,) = [e for e in events if e.get("type") == "refusals_suppressed"]
    assert (summary["peer"], summary["count"], summary["reasons"]) == ("TH", 1, {TOO_MANY: 1})


def _resigned(nodes: Setup, nonce: str, **changes: Any) -> str:
    """ID's real terms for TH (nonce ``nonce``) with ``changes`` made to the signed payload
    (``terms.X`` for a field of the terms; None removes it), signed again with ID's key: a
    peer whose software misbehaves, its signature valid."""
    token = peer_token(nodes, nonce)
    data = json.loads(_b64(token.split(".")[1]))
    for field, value in changes.items():
        where, _, name = field.rpartition(".")
        target = data["terms"] if where == "terms" else data
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value
    responder = nodes.id.exchange.responder
    return jws.sign(data, responder.signing_key, responder.signing_chain, typ=TERMS_TYP)


SMUGGLED = "Call Inspector Somchai on +66 81 234 5678"
QUOTA = {"modality": "fingerprint", "limit": LIMIT, "used": 0, "remaining": LIMIT}


@pytest.mark.parametrize(
    "changes",
    [
        {"terms.hours": [SMUGGLED]},
        {"terms.hours": ["25:00-26:00"]},
        {"terms.hours": ["6:00-22:00"]},
        {"terms.hours": ["06:00-22:00\n"]},
        {"terms.hours": ["06:00-22:00"] * (terms_module.MAX_HOURS + 1)},
        {"terms.timezone": "not/a zone \u202e"},
        {"terms.timezone": "America"},
        {"terms.timezone": "localtime"},
        {"terms.timezone": "../../etc/passwd"},
        {"policy_version": "svc-1\n[forged] " + SMUGGLED},
        {"policy_version": "\u202esvc-1"},
        {"policy_version": "v" * 65},
        {"policy_version": None},
        {"terms.purposes": ["asylum", "asylum"]},
        {"terms.purposes": [SMUGGLED]},
        {"terms.modalities": ["fingerprint", "fingerprint"]},
        {"terms.quotas": [{**QUOTA, "modality": "face"}]},
        {"terms.quotas": [QUOTA, QUOTA]},
        {"terms.quotas": []},
        {"terms.quotas": [{**QUOTA, "remaining": 7}]},
        {"terms.quotas": [{**QUOTA, "limit": 2**40, "remaining": 2**40}]},
        {"terms.quotas": [{**QUOTA, "limit": "100"}]},
        {"terms": None, "refusal": "unknown_peer"},  # with its rules version: told nothing
    ],
)
def test_terms_a_peer_signs_are_checked_as_strictly_as_rules(
    nodes: Setup, changes: dict[str, Any]
) -> None:
    """What a peer signs is shown to officers: anything its rules could not have said is
    refused (malformed), and the refusal does not repeat the peer's text."""
    nonce = new_nonce()
    token = _resigned(nodes, nonce, **changes)
    trust = nodes.th.exchange.requester.trust
    with pytest.raises(MessageRefused) as refused:
        check_terms(token, trust, peer="ID", own="TH", nonce=nonce, window=params.REPLAY_WINDOW)
    assert refused.value.reason == reasons.MALFORMED
    said = str(refused.value)
    for text in ("Somchai", "zone", "America", "localtime", "passwd", "forged", "vvvv", "26:00"):
        assert text not in said


def test_terms_as_rules_write_them_are_accepted(nodes: Setup) -> None:
    nonce = new_nonce()
    token = _resigned(
        nodes,
        nonce,
        **{
            "terms.hours": ["22:00-06:00", "10:00-24:00"],
            "terms.timezone": "America/Argentina/Buenos_Aires",
            "policy_version": "2026-11-01.1 (rules of 1 Nov)",
        },
    )
    trust = nodes.th.exchange.requester.trust
    payload = check_terms(
        token, trust, peer="ID", own="TH", nonce=nonce, window=params.REPLAY_WINDOW
    )
    assert payload.terms is not None and payload.terms.hours == ["22:00-06:00", "10:00-24:00"]


def test_a_peer_signing_text_no_rules_hold_is_an_invalid_reply_not_shown(
    nodes: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = terms_module.terms_for

    def smuggling(engine: Any, requester: str, now: datetime) -> Any:
        version, terms = real(engine, requester, now)
        assert terms is not None
        return version, terms.model_copy(update={"hours": [SMUGGLED], "timezone": "x/\u202e"})

    monkeypatch.setattr(terms_module, "terms_for", smuggling)
    r = read_terms(nodes)
    assert r.status_code == 502 and r.json()["error"] == "invalid_reply"
    assert "Somchai" not in r.text and "\\u202e" not in r.text and "malformed" in r.text
    code, out, err = cli(nodes, ["ID"], capsys, monkeypatch)
    assert code == 6 and out == "" and "[invalid_reply]" in err and "Somchai" not in err


def test_cli_exits_5_when_this_nodes_own_crl_is_stale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As bdx query: this node's own PKI documents refused is 5 (503 own_stale_crl), not a
    peer's failure (6); nobody was asked."""
    from node.cli import main

    issued = (
        datetime.now(UTC) - pki_params.CRL_VALIDITY - pki_params.DEFAULT_GRACE - timedelta(days=1)
    )
    root = tmp_path / "region"
    write_region(dated_region(COUNTRIES, crl_issued=issued), root)
    with serving(tmp_path / "data", root, COUNTRIES) as served:
        th = served["TH"]
        r = httpx.get(
            th.api_url + "/peers/ID/terms",
            headers={"Authorization": f"Bearer {th.token}"},
            timeout=60,
        )
        assert r.status_code == 503 and r.json()["error"] == "own_stale_crl"
        monkeypatch.setenv("BDX_TOKEN", th.token)
        monkeypatch.delenv("BDX_TOKEN_FILE", raising=False)
        with pytest.raises(SystemExit) as info:
            main(["peers", "terms", "ID", "--url", th.api_url])
        _, err = capsys.readouterr()
        assert info.value.code == 5 and "[own_stale_crl]" in err
        assert not terms_events(served["ID"])
