"""``GET /quota`` and ``bdx policy quota``: operators and auditors see each peer's daily quota on
the rule's current day (in its time zone), used, limit and remaining, on two real nodes (TH and
ID, served as ``bdx serve`` serves them); ID's queries consume TH's quota for ID, the reading
consumes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from certs.pki.bootstrap import build_region, write_region
from matcher.fingerprint.template import FingerprintTemplate
from matcher.synthetic import synthetic_templates
from node.db.models import AuditEvent, Role
from node.services.users import UserService
from policy.rules import parse_policy
from tests.exchange.service_support import ServiceNode, serving
from tests.exchange.test_peer_limits import ask, client, outcome, signed_query

COUNTRIES = ("TH", "ID")
#: TH's rules give ID this many fingerprint searches a day (service_support.rules).
LIMIT = 100


@dataclass
class Tokens:
    operator: str
    auditor: str


@pytest.fixture(scope="module")
def fingers() -> list[list[FingerprintTemplate]]:
    return synthetic_templates(2, 2, seed=23)


@pytest.fixture(scope="module")
def region_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("quota-region")
    write_region(build_region(COUNTRIES), root)
    return root


@pytest.fixture(scope="module")
def nodes(
    region_root: Path,
    fingers: list[list[FingerprintTemplate]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, ServiceNode]]:
    root = region_root
    data = tmp_path_factory.mktemp("quota-nodes")
    with serving(data, root, COUNTRIES) as running:
        running["TH"].enrol(["th-0"], [fingers[0][0]])
        yield running


@pytest.fixture(scope="module")
def tokens(nodes: dict[str, ServiceNode]) -> Tokens:
    with nodes["TH"].app.state.sessions() as session:
        users = UserService(session)
        issued = {}
        for role in (Role.OPERATOR, Role.AUDITOR):
            users.add_user(role.value, role, actor="test")
            issued[role] = users.issue_token(role.value, expires_days=1, actor="test").token
    return Tokens(issued[Role.OPERATOR], issued[Role.AUDITOR])


def read_quota(node: ServiceNode, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(node.api_url + "/quota", headers=headers, timeout=30)


def id_fingerprint(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    (item,) = [i for i in response.json()["items"] if i["peer"] == "ID"]
    return dict(item)


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``bdx ARGS`` in-process: (exit code, stdout, stderr)."""
    from node.cli import main

    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_a_peer_query_moves_used_and_remaining_and_reading_consumes_nothing(
    nodes: dict[str, ServiceNode],
    tokens: Tokens,
    fingers: list[list[FingerprintTemplate]],
    region_root: Path,
) -> None:
    """ID's signed query, posted with ID's TLS certificate to TH's peer port, takes one of
    TH's fingerprint searches for ID."""
    th = nodes["TH"]
    before = id_fingerprint(read_quota(th, tokens.operator))
    assert before["modality"] == "fingerprint" and before["timezone"] == "UTC"
    assert before["day"] == datetime.now(UTC).date().isoformat()
    assert before["limit"] == LIMIT and before["used"] + before["remaining"] == LIMIT
    again = id_fingerprint(read_quota(th, tokens.auditor))
    assert again["used"] == before["used"]  # reading twice consumed nothing
    with client(region_root, "ID") as http:
        assert outcome(ask(http, th, signed_query(nodes["ID"], "TH", fingers[0][1]))) == "hit"
    after = id_fingerprint(read_quota(th, tokens.operator))
    assert (after["used"], after["remaining"]) == (before["used"] + 1, before["remaining"] - 1)
    body = read_quota(th, tokens.operator).json()
    assert body["policy_version"] == "svc-1" and [i["peer"] for i in body["items"]] == ["ID"]


def test_only_operators_and_auditors_may_read(
    nodes: dict[str, ServiceNode], tokens: Tokens, region_root: Path
) -> None:
    """On the API port only: the peer port, open to the region, serves the peer routes."""
    th = nodes["TH"]
    with client(region_root, "ID") as http:
        headers = {"Authorization": f"Bearer {tokens.auditor}"}
        assert http.get(th.peer_url + "/quota", headers=headers).status_code == 404
    missing = read_quota(th, None)
    assert missing.status_code == 401 and missing.json()["error"] == "missing_token"
    officer = read_quota(th, th.token)
    assert officer.status_code == 403 and officer.json()["error"] == "wrong_role"
    assert read_quota(th, "not-a-token").status_code == 401
    spec = httpx.get(th.api_url + "/openapi.json", timeout=30).json()
    assert spec["paths"]["/quota"]["get"]["description"] == "Role: auditor or operator."


def far_zone(now: datetime) -> str:
    """A zone whose date differs from UTC's at ``now`` (by an hour's margin at least)."""
    return "Etc/GMT+12" if now.hour < 11 else "Pacific/Kiritimati"


def test_the_day_is_the_rule_time_zone_s(nodes: dict[str, ServiceNode], tokens: Tokens) -> None:
    """A rule with its own time zone counts today's searches on its own date, which is not
    UTC's: the listing names that day and the use of that day."""
    th = nodes["TH"]
    engine = th.exchange.policy
    in_force = engine.policy
    zone = far_zone(datetime.now(UTC))
    engine.policy = parse_policy(
        'version = "tz-1"\ncountry = "TH"\n[peers.ID]\npurposes = ["border_control"]\n'
        'modalities = ["fingerprint"]\ndaily_quota = { fingerprint = 7 }\n'
        f'timezone = "{zone}"\n'
    )
    try:
        day = datetime.now(ZoneInfo(zone)).date()
        granted = engine.decide_inbound("ID", "border_control", "fingerprint")
        assert granted.allowed and granted.quota["day"] == day.isoformat()
        item = id_fingerprint(read_quota(th, tokens.operator))
    finally:
        engine.policy = in_force
    assert day != datetime.now(UTC).date()
    assert (item["timezone"], item["day"], item["limit"]) == (zone, day.isoformat(), 7)
    assert (item["used"], item["remaining"]) == (1, 6)


@pytest.fixture
def token_file(tokens: Tokens, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("BDX_TOKEN", "BDX_TOKEN_FILE", "BDX_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "token"
    path.write_text(tokens.operator + "\n")
    return path


def test_cli_shows_the_quota_and_exits_as_documented(
    nodes: dict[str, ServiceNode],
    tokens: Tokens,
    token_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    th = nodes["TH"]
    url = ["--url", th.api_url]
    code, out, err = cli(
        ["policy", "quota", "--json", *url, "--token-file", str(token_file)], capsys
    )
    assert code == 0, err
    answer = json.loads(out)
    (item,) = answer["items"]
    used = item["used"]
    assert (item["peer"], item["limit"], item["remaining"]) == ("ID", LIMIT, LIMIT - used)
    code, out, err = cli(["policy", "quota", *url, "--token-file", str(token_file)], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("rules version svc-1 at ")
    today = datetime.now(UTC).date().isoformat()
    assert lines[1:] == [
        f"ID\tfingerprint\t{today} UTC\tused {used} of {LIMIT}\t{LIMIT - used} left"
    ]
    auditor = tmp_path / "auditor"
    auditor.write_text(tokens.auditor)
    code, _, err = cli(["policy", "quota", *url, "--token-file", str(auditor)], capsys)
    assert code == 0, err
    officer = tmp_path / "officer"
    officer.write_text(th.token)
    code, _, err = cli(["policy", "quota", *url, "--token-file", str(officer)], capsys)
    assert code == 5 and "[wrong_role]" in err
    code, _, err = cli(["policy", "quota", *url], capsys)
    assert code == 2 and "operator or auditor token" in err and "[no_token]" in err
    code, _, err = cli(
        ["policy", "quota", "--url", "http://127.0.0.1:9", "--token-file", str(token_file)],
        capsys,
    )
    assert code == 6 and "[node_unreachable]" in err
    code, out, _ = cli(["policy", "quota", "--json", *url, "--token-file", str(token_file)], capsys)
    assert json.loads(out)["items"][0]["used"] == used  # the CLI's readings consumed nothing


def quota_readings(node: ServiceNode) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(actor, target, details) of the node's ``quota.show`` audit events, oldest first."""
    with node.app.state.sessions() as session:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "quota.show").order_by(AuditEvent.id)
        ).all()
        return [(e.actor, e.target, e.details) for e in rows]


def test_each_reading_is_audited_and_logged(
    nodes: dict[str, ServiceNode],
    tokens: Tokens,
    token_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A reading of the quota, over the API or with `bdx policy quota`, is recorded in the
    audit trail as ``quota.show`` (who read, under which rules, how many rows), and mirrored
    to the tamper-evident log, as ``hit.list`` and ``query.list`` are; a refused one is not."""
    th = nodes["TH"]
    before = quota_readings(th)
    assert read_quota(th, tokens.auditor).status_code == 200
    code, _, err = cli(
        ["policy", "quota", "--url", th.api_url, "--token-file", str(token_file)], capsys
    )
    assert code == 0, err
    assert read_quota(th, th.token).status_code == 403  # an officer's: refused, not recorded
    details = {"policy_version": "svc-1", "returned": 1}
    assert quota_readings(th)[len(before) :] == [
        ("user:auditor", None, details),
        ("user:operator", None, details),
    ]
    r = httpx.get(
        th.api_url + "/audit/log/entries",
        params={"action": "quota.show", "limit": 100},
        headers={"Authorization": f"Bearer {tokens.auditor}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    logged = [i["event"] for i in r.json()["items"]][len(before) :]
    assert [(e["type"], e["actor"], e["details"]) for e in logged] == [
        ("node_action", "user:auditor", details),
        ("node_action", "user:operator", details),
    ]
