"""Three country nodes built by ``create_app`` from settings and served like ``bdx serve``
(API port + mutual-TLS peer port): officers' queries, peers' answers, policy refusals, a peer
that is down and a revoked certificate."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from certs.pki.bootstrap import build_region, write_region
from certs.pki.revocation import crl_pem
from certs.translog import Checkpoint, SignedCheckpoint, SigningKey, SplitViewError
from matcher.fingerprint import iso19794_2
from matcher.fingerprint.template import FingerprintTemplate
from matcher.synthetic import synthetic_templates
from node.exchange.references import REF_CHARS
from node.exchange.replay import ReplayError, exchange_nonces
from node.exchange.requester import Peer
from node.exchange.witnessing import peer_witness_key, witness_round
from node.repositories.audit import AuditRepository
from node.restrictions import SharingRestrictions
from node.service_errors import InvalidRequestError
from tests.exchange.service_support import ServiceNode, free_port, serving, start_service_node

RUNNING = ("TH", "ID", "MY")
DOWN = "VN"  # in the region and the rules, never started
FINGERS = 10
BDX = [sys.executable, "-c", "from node.cli import main; main()"]


@pytest.fixture(scope="module")
def fingers() -> list[list[FingerprintTemplate]]:
    return synthetic_templates(FINGERS, 2, seed=11)


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Any:
    built = build_region((*RUNNING, DOWN))
    root = tmp_path_factory.mktemp("svc-region")
    write_region(built, root)
    return built, root


@pytest.fixture(scope="module")
def nodes(
    region: Any, fingers: list[list[FingerprintTemplate]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServiceNode]]:
    """ID enrols fingers 0–3, MY fingers 4–7 (finger 3 restricted to MY only at ID). ID runs
    its searches in a search process; it starts before the gallery exists and sees each
    enrolment (a new generation)."""
    _, root = region
    data = tmp_path_factory.mktemp("svc-nodes")
    ports = {cc: (free_port(), free_port()) for cc in (*RUNNING, DOWN)}
    urls = {cc: f"https://127.0.0.1:{p}" for cc, (_, p) in ports.items()}
    handles: dict[str, ServiceNode] = {}
    try:
        for cc in RUNNING:
            peers = {p: urls[p] for p in (*RUNNING, DOWN) if p != cc}
            # ID searches in a worker process (node.services.search_pool), MY in its threads.
            extra = {"search_processes": 1} if cc == "ID" else {}
            handles[cc] = start_service_node(data, root, cc, *ports[cc], peers, **extra)
        handles["ID"].enrol([f"id-{i}" for i in range(3)], [fingers[i][0] for i in range(3)])
        handles["ID"].enrol(["id-3"], [fingers[3][0]], SharingRestrictions(peers=["MY"]))
        handles["MY"].enrol([f"my-{i}" for i in range(4, 8)], [fingers[i][0] for i in range(4, 8)])
        yield handles
    finally:
        for h in handles.values():  # all at once: each holds keep-alive connections to others
            h.pair.stop()
        for h in handles.values():
            h.stop()


def officer_query(
    node: ServiceNode, to: list[str], probe: FingerprintTemplate, purpose: str = "border_control"
) -> httpx.Response:
    body = {
        "peers": to,
        "purpose": purpose,
        "modality": "fingerprint",
        "templates": [
            {"data": base64.b64encode(iso19794_2.encode(probe)).decode(), "finger_position": 1}
        ],
        "case_ref": "case-42",
    }
    with httpx.Client(timeout=30) as client:
        return client.post(
            node.api_url + "/queries",
            json=body,
            headers={"Authorization": f"Bearer {node.token}"},
        )


def by_peer(response: httpx.Response) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.text
    return {r["peer"]: r for r in response.json()["results"]}


def test_officer_query_hit_and_no_hit(
    nodes: dict[str, ServiceNode], fingers: list[list[FingerprintTemplate]]
) -> None:
    response = officer_query(nodes["TH"], ["ID"], fingers[1][1])
    body = response.json()
    got = by_peer(response)["ID"]
    assert (got["status"], got["outcome"], body["hit"], body["complete"]) == (
        "answered",
        "hit",
        True,
        True,
    )
    assert got["reference"] and got["strength"] and got["reply_jws"].count(".") == 2
    miss = by_peer(officer_query(nodes["TH"], ["ID"], fingers[9][1]))["ID"]
    assert (miss["status"], miss["outcome"], miss["reference"]) == ("answered", "no_hit", None)


def test_peer_policy_refusal_and_local_refusal(
    nodes: dict[str, ServiceNode], fingers: list[list[FingerprintTemplate]]
) -> None:
    # MY answers asylum queries only: it signs a refusal. TH sends no law_enforcement query.
    got = by_peer(officer_query(nodes["TH"], ["MY", "ID"], fingers[5][1]))
    assert (got["MY"]["status"], got["MY"]["outcome"]) == ("answered", "refused")
    assert got["MY"]["reason"]
    asylum = by_peer(officer_query(nodes["TH"], ["MY"], fingers[5][1], purpose="asylum"))
    assert asylum["MY"]["outcome"] == "hit"
    local = by_peer(officer_query(nodes["TH"], ["ID"], fingers[1][1], purpose="law_enforcement"))
    assert local["ID"]["status"] == "refused_locally"
    assert local["ID"]["reply_jws"] is None


def test_record_restriction_suppresses_the_hit(
    nodes: dict[str, ServiceNode], fingers: list[list[FingerprintTemplate]]
) -> None:
    """ID's record 3 may be shared with MY only: TH gets a no-hit, MY (asylum) a hit."""
    assert by_peer(officer_query(nodes["TH"], ["ID"], fingers[3][1]))["ID"]["outcome"] == "no_hit"
    got = by_peer(officer_query(nodes["MY"], ["ID"], fingers[3][1], purpose="asylum"))
    assert got["ID"]["outcome"] == "hit"


def test_peer_down_is_a_partial_result(
    nodes: dict[str, ServiceNode], fingers: list[list[FingerprintTemplate]]
) -> None:
    response = officer_query(nodes["TH"], ["ID", DOWN], fingers[0][1])
    got = by_peer(response)
    assert response.json()["complete"] is False
    assert got["ID"]["outcome"] == "hit"
    assert got[DOWN]["status"] == "unreachable"
    assert got[DOWN]["outcome"] is None and got[DOWN]["detail"]


def test_peers_witness_each_others_checkpoints(
    nodes: dict[str, ServiceNode], fingers: list[list[FingerprintTemplate]]
) -> None:
    th = nodes["TH"].exchange
    peers = [th.peers["ID"], th.peers["MY"], th.peers[DOWN]]
    officer_query(nodes["TH"], ["ID"], fingers[0][1])
    th.log.issue_checkpoint()
    first = asyncio.run(witness_round(th.log, th.credentials, peers, 5.0))
    assert first["ID"] == first["MY"] == "cosigned" and first[DOWN] != "cosigned"
    keys = [peer_witness_key(th.credentials.anchors, cc) for cc in ("ID", "MY")]
    latest = th.log.latest_checkpoint()
    assert latest is not None
    assert sorted(latest.verified_cosigners(keys)) == ["bdx.id/witness", "bdx.my/witness"]
    assert nodes["ID"].exchange.witness.latest_size("TH") == latest.checkpoint.size
    # The log grows: the next round carries a consistency proof from the cosigned size.
    officer_query(nodes["TH"], ["MY"], fingers[5][1], purpose="asylum")
    th.log.issue_checkpoint()
    again = asyncio.run(witness_round(th.log, th.credentials, peers[:2], 5.0))
    assert again == {"ID": "cosigned", "MY": "cosigned"}
    cosigned = th.log.latest_checkpoint()
    assert cosigned is not None
    # Cosigned already: not asked again. A new checkpoint is asked for.
    assert asyncio.run(witness_round(th.log, th.credentials, peers[:1], 5.0)) == {"ID": "cosigned"}
    officer_query(nodes["TH"], ["ID"], fingers[0][1])
    th.log.issue_checkpoint()
    # "ID" at MY's address: MY's certificate is refused before the checkpoint is sent.
    posing = Peer("ID", th.peers["MY"].url)
    refused = asyncio.run(witness_round(th.log, th.credentials, [posing], 5.0))
    assert refused == {"ID": "untrusted_peer: wrong_country"}
    grown = th.log.latest_checkpoint()
    assert grown is not None and grown.checkpoint.size > latest.checkpoint.size

    # A rewritten history: TH's key signs another root for the size ID already cosigned.
    witnessed = cosigned.checkpoint
    forged = SignedCheckpoint.sign(
        Checkpoint(witnessed.origin, witnessed.size, bytes(32), witnessed.timestamp_ms + 1),
        SigningKey(witnessed.origin, th.credentials.signing_key),
    )
    before = nodes["ID"].exchange.log.size()
    with pytest.raises(SplitViewError):
        nodes["ID"].exchange.witness.cosign("TH", forged.to_bytes().decode(), [])
    kept = [json.loads(e.data) for e in nodes["ID"].exchange.log.entries(before)]
    assert [(e["type"], e["peer"], e["reason"]) for e in kept] == [
        ("witness_refusal", "TH", "split_view")
    ]
    # A node may only have its own log witnessed.
    with pytest.raises(InvalidRequestError) as info:
        nodes["ID"].exchange.witness.cosign("MY", grown.to_bytes().decode(), [])
    assert info.value.reason == "wrong_origin"


def test_witnesses_compare_their_views_and_catch_a_split_view(
    nodes: dict[str, ServiceNode], fingers: list[list[FingerprintTemplate]]
) -> None:
    """TH's log passes each witness's own checks when it shows each of them one consistent
    history; only comparing the witnesses' views catches two histories. ID asks MY what it
    cosigned for TH's log (and TH for the proof between the two sizes)."""
    from sqlalchemy import delete

    from certs.translog import schema as log_schema
    from node.exchange.witnessing import compare_views

    th, idn, my = (nodes[cc].exchange for cc in ("TH", "ID", "MY"))
    officer_query(nodes["TH"], ["ID"], fingers[0][1])
    th.log.issue_checkpoint()
    asyncio.run(witness_round(th.log, th.credentials, [th.peers["ID"], th.peers["MY"]], 5.0))
    officer_query(nodes["TH"], ["ID"], fingers[0][1])
    th.log.issue_checkpoint()
    asyncio.run(witness_round(th.log, th.credentials, [th.peers["MY"]], 5.0))  # MY is ahead
    held = idn.witness.view("TH")
    assert held is not None and my.witness.latest_size("TH") > held.checkpoint.size
    peers = [idn.peers["TH"], idn.peers["MY"]]
    got = asyncio.run(compare_views(idn.witness, idn.credentials, peers, 5.0))
    assert got["TH/MY"] == "consistent", got
    assert "split_view" not in got.values()

    # MY was shown another history of TH's log from the start (its state for TH is replaced
    # by a checkpoint TH's key signed for ID's size with another root).
    forged = SignedCheckpoint.sign(
        Checkpoint(held.checkpoint.origin, held.checkpoint.size, bytes(32), 1),
        SigningKey(held.checkpoint.origin, th.credentials.signing_key),
    )
    engine = nodes["MY"].app.state.engine
    origin = held.checkpoint.origin

    def forget_th() -> None:
        with engine.begin() as conn:
            conn.execute(
                delete(log_schema.witnessed).where(log_schema.witnessed.c.origin == origin)
            )
            heads = log_schema.witness_heads
            conn.execute(delete(heads).where(heads.c.origin == origin))

    forget_th()
    try:
        my.witness.cosign("TH", forged.to_bytes().decode(), [])
        before = idn.log.size()
        got = asyncio.run(compare_views(idn.witness, idn.credentials, peers, 5.0))
        assert got["TH/MY"] == "split_view", got
        kept = [json.loads(e.data) for e in idn.log.entries(before)]
        alarm = [e for e in kept if e["type"] == "split_view"]
        assert [(e["peer"], e["witness"]) for e in alarm] == [("TH", "MY")]
        assert alarm[0]["held"] == held.to_bytes().decode()
        assert alarm[0]["presented"] == forged.to_bytes().decode()
    finally:
        forget_th()  # MY cosigns TH's real log again at the next round


def test_the_witness_view_and_proof_routes_refuse_what_they_cannot_answer(
    nodes: dict[str, ServiceNode], region: Any
) -> None:
    from certs.pki.tls import client_context

    _, root = region
    folder = Path(root) / "nodes" / "th"
    tls = client_context(folder / "tls.pem", folder / "tls.key", Path(root) / "root.pem")
    base = nodes["ID"].peer_url + "/peer/v1"
    size = nodes["ID"].exchange.log.size()
    with httpx.Client(verify=tls, timeout=30) as client:
        assert client.get(base + "/witness/views/VN").json()["error"] == "unknown_log"
        assert client.get(base + "/witness/views/th").status_code == 422
        for old, new in ((2, 2), (3, 2), (1, size + 1)):
            r = client.get(base + "/log/consistency", params={"old": old, "new": new})
            assert (r.status_code, r.json()["error"]) == (422, "bad_size"), r.text
        r = client.get(base + "/log/consistency", params={"old": 1, "new": size})
        assert r.status_code == 200 and r.json()["new_size"] == size
    import ssl

    no_cert = ssl.create_default_context(cafile=str(Path(root) / "root.pem"))
    with (
        httpx.Client(verify=no_cert, timeout=30) as client,
        pytest.raises(httpx.HTTPError),  # no client certificate: refused in the handshake
    ):
        client.get(base + "/witness/views/TH").raise_for_status()


def test_every_outbound_decision_is_logged_with_the_officer(
    nodes: dict[str, ServiceNode], fingers: list[list[FingerprintTemplate]]
) -> None:
    """A peer this node's rules refuse to ask is logged with its reason, case and officer,
    as a sent query is (an unknown peer left no log entry at all). A query naming one is
    refused as a whole (422 unknown_peer), its attempt logged all the same."""
    log = nodes["TH"].exchange.log
    before = log.size()
    assert by_peer(officer_query(nodes["TH"], ["ID"], fingers[2][1]))["ID"]["status"]
    unknown = officer_query(nodes["TH"], ["SG"], fingers[2][1])
    assert (unknown.status_code, unknown.json()["error"]) == (422, "unknown_peer")
    events = [json.loads(e.data) for e in log.entries(before)]
    decisions = {e["peer"]: e for e in events if e["type"] == "policy_decision"}
    sent = next(e for e in events if e["type"] == "query_sent")
    assert sent["officer"]
    for peer, allowed in (("ID", True), ("SG", False)):
        decision = decisions[peer]
        assert (decision["direction"], decision["allowed"]) == ("outbound", allowed)
        assert decision["officer"] == sent["officer"] and decision["case_ref"] == "case-42"
    assert decisions["SG"]["refusal"] == "unknown_peer"


def test_committed_node_actions_reach_the_tamper_evident_log(nodes: dict[str, ServiceNode]) -> None:
    node = nodes["MY"]
    log = node.exchange.log

    def actions() -> list[dict[str, Any]]:
        events = [json.loads(e.data) for e in log.entries()]
        return [e for e in events if e.get("type") == "node_action"]

    before = len(actions())
    with node.app.state.sessions() as session:
        AuditRepository(session).record("admin:ana", "user.disable", "bob", {"why": "left"})
        session.commit()
    with node.app.state.sessions() as session:
        AuditRepository(session).record("admin:ana", "user.disable", "eve")
        session.rollback()  # never happened: not logged
    logged = actions()[before:]
    assert [(e["actor"], e["action"], e["target"]) for e in logged] == [
        ("admin:ana", "user.disable", "bob")
    ]
    assert logged[0]["details"] == {"why": "left"} and logged[0]["node"] == "MY"


def test_the_serving_node_records_its_log_key_and_held_pki(
    nodes: dict[str, ServiceNode],
) -> None:
    """``bdx serve`` is what writes the node's state files (the CLI only reads them): the log
    key it signs with (so that its store audit still verifies after a certificate renewal)
    and the trust-list sequence and CRL number it holds."""
    from node.exchange.setup import HELD_FILE, LOG_KEYS_FILE

    node = nodes["MY"]
    data_dir = node.app.state.settings.data_dir
    keys = (data_dir / LOG_KEYS_FILE).read_text().split()
    assert keys == [node.exchange.log.verifying_key.to_vkey()]
    held = json.loads((data_dir / HELD_FILE).read_text())
    assert held["trust_list_sequence"] == node.exchange.credentials.anchors.trust_list.sequence


def test_officer_api_needs_an_officer_and_exchange_log_records(
    nodes: dict[str, ServiceNode], fingers: list[list[FingerprintTemplate]]
) -> None:
    with httpx.Client() as client:
        r = client.post(nodes["TH"].api_url + "/queries", json={})
    assert r.status_code == 401
    before = nodes["ID"].exchange.log.size()
    officer_query(nodes["TH"], ["ID"], fingers[2][1])
    assert nodes["ID"].exchange.log.size() > before


def test_peer_routes_refuse_without_client_certificate(nodes: dict[str, ServiceNode]) -> None:
    """On the API port a peer route's path is an unknown path (test_api_port_peer_paths)."""
    with httpx.Client() as client:
        r = client.post(nodes["ID"].api_url + "/peer/v1/queries", content=b"x.y.z")
    assert (r.status_code, r.json()["error"]) == (404, "not_found")


def test_bdx_query_cli_exit_codes(
    nodes: dict[str, ServiceNode], fingers: list[list[FingerprintTemplate]], tmp_path: Path
) -> None:
    probe = tmp_path / "probe.iso"
    probe.write_bytes(iso19794_2.encode(fingers[1][1]))
    base = [
        *BDX, "query", str(probe), "--purpose", "border_control",
        "--finger", "1", "--url", nodes["TH"].api_url, "--json",
    ]  # fmt: skip
    env = {**os.environ, "BDX_TOKEN": nodes["TH"].token}
    done = subprocess.run([*base, "--to", "ID"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"][0]["outcome"] == "hit"
    partial = subprocess.run([*base, "--to", f"ID,{DOWN}"], env=env, capture_output=True, text=True)
    assert partial.returncode == 6
    assert json.loads(partial.stdout)["complete"] is False
    assert partial.stderr.startswith("bdx: error:") and DOWN in partial.stderr
    # refused here, not a peer unreachable: SG is no peer of TH's (an option value refused,
    # 2), fishing a purpose TH's rules refuse (5)
    for to, purpose, code, why in (
        ("ID,SG", "border_control", 2, "[unknown_peer]"),
        ("ID", "fishing", 5, "[refused_locally]"),
    ):
        args = [*base[:6], purpose, *base[7:], "--to", to]
        local = subprocess.run(args, env=env, capture_output=True, text=True)
        assert local.returncode == code, local.stderr
        assert why in local.stderr and "no answer" not in local.stderr
    env["BDX_TOKEN"] = "bdx_not-a-token"
    refused = subprocess.run([*base, "--to", "ID"], env=env, capture_output=True, text=True)
    assert refused.returncode == 5 and "[malformed_token]" in refused.stderr  # 401: refused
    unreachable = [*base[:-3], "--url", f"http://127.0.0.1:{free_port()}", "--json", "--to", "ID"]
    gone = subprocess.run(unreachable, env=env, capture_output=True, text=True)
    assert gone.returncode == 6 and "[node_unreachable]" in gone.stderr
    env.pop("BDX_TOKEN")
    no_token = subprocess.run([*base, "--to", "ID"], env=env, capture_output=True, text=True)
    assert no_token.returncode == 2 and "[no_token]" in no_token.stderr


def test_bdx_query_prints_the_hit_reference_whole_on_80_columns(
    nodes: dict[str, ServiceNode], fingers: list[list[FingerprintTemplate]], tmp_path: Path
) -> None:
    """Piped output is 80 columns: the results table cut the 22-character reference to
    ``uaU0Ug8ywvtblgdGgGpF…``, the one thing the officer quotes to follow the hit up."""
    probe = tmp_path / "probe.iso"
    probe.write_bytes(iso19794_2.encode(fingers[1][1]))
    args = [
        *BDX, "query", str(probe), "--purpose", "border_control", "--finger", "1",
        "--url", nodes["TH"].api_url, "--to", "ID", "--case-ref", "case-80",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["BDX_TOKEN"] = nodes["TH"].token
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "…" not in done.stdout, done.stdout
    assert max(len(line) for line in done.stdout.splitlines()) <= 80, done.stdout
    words = done.stdout.replace("│", " ").split()
    references = [w for w in words if re.fullmatch(rf"[A-Za-z0-9_-]{{{REF_CHARS}}}", w)]
    assert len(references) == 1, done.stdout


def test_bdx_query_waits_as_told_and_says_the_node_was_slow(
    fingers: list[list[FingerprintTemplate]], tmp_path: Path
) -> None:
    """A node that accepts the connection and answers late (its peers' deadline may be up
    to 300 s): ``--timeout`` bounds the wait, and the error says it did not answer in time,
    not that it could not be reached (``bdx query`` gave up at 90 s and said so before)."""
    probe = tmp_path / "probe.iso"
    probe.write_bytes(iso19794_2.encode(fingers[1][1]))
    with socket.socket() as server:  # accepts (the kernel's backlog), never answers
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        args = [*BDX, "query", str(probe), "--purpose", "border_control", "--to", "ID"]
        env = {**os.environ, "BDX_TOKEN": "bdx_x"}
        start = time.monotonic()
        done = subprocess.run(
            [*args, "--url", url, "--timeout", "2"], env=env, capture_output=True, text=True
        )
        waited = time.monotonic() - start
    assert done.returncode == 6, done.stderr
    assert "[node_timeout]" in done.stderr and "within 2 s" in done.stderr
    assert 2 <= waited < 20
    for endless in ("inf", "1e300"):  # a usage error, not a socket's OverflowError
        bad = subprocess.run(
            [*args, "--url", url, "--timeout", endless], env=env, capture_output=True, text=True
        )
        assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr


def test_officer_query_body_errors(nodes: dict[str, ServiceNode]) -> None:
    both = {
        "peers": ["ID"],
        "purpose": "border_control",
        "modality": "fingerprint",
        "templates": [{"data": "AAAA"}],
        "images": [{"data": "AAAA"}],
    }
    bad_template = {**both, "images": []}
    headers = {"Authorization": f"Bearer {nodes['TH'].token}"}
    with httpx.Client() as client:
        r = client.post(nodes["TH"].api_url + "/queries", json=both, headers=headers)
        assert r.status_code == 422
        r = client.post(nodes["TH"].api_url + "/queries", json=bad_template, headers=headers)
        assert r.status_code in (400, 422) and r.json()["error"]
        # Two faces: refused here (peers refused it after charging a unit of their quota).
        from matcher.face.template import FaceTemplate

        face = np.zeros(128, np.float32)
        face[0] = 1.0
        data = base64.b64encode(FaceTemplate(face, 80).to_bytes()).decode()
        sent = nodes["ID"].exchange.log.size()
        two = {**bad_template, "modality": "face", "templates": [{"data": data}] * 2}
        r = client.post(nodes["TH"].api_url + "/queries", json=two, headers=headers)
        assert (r.status_code, r.json()["error"]) == (422, "bad_probe"), r.text
        assert nodes["ID"].exchange.log.size() == sent


def test_an_oversized_template_is_refused_without_quoting_it(
    nodes: dict[str, ServiceNode],
    fingers: list[list[FingerprintTemplate]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A template over the wire limit (or under it) is the officer's error (422), not a 500
    whose logged validation error quoted the template's first and last bytes."""
    from matcher.fingerprint import iso19794_2
    from node.exchange.messages import MAX_TEMPLATE_BYTES

    record = iso19794_2.encode(fingers[0][1]) + bytes(MAX_TEMPLATE_BYTES)
    body = {
        "peers": ["ID"],
        "purpose": "border_control",
        "modality": "fingerprint",
        "templates": [{"data": base64.b64encode(record).decode()}],
    }
    headers = {"Authorization": f"Bearer {nodes['TH'].token}"}
    with caplog.at_level(logging.DEBUG), httpx.Client() as client:
        r = client.post(nodes["TH"].api_url + "/queries", json=body, headers=headers)
    assert r.status_code == 422 and r.json()["error"] == "template_too_large"
    head = base64.b64encode(record[:12]).decode()[:12]
    assert head not in caplog.text and head not in r.text
    png = b"\x89PNG\r\n\x1a\n" + bytes(MAX_TEMPLATE_BYTES)  # an image sent as a template
    body["templates"] = [{"data": base64.b64encode(png).decode()}]
    with httpx.Client() as client:
        r = client.post(nodes["TH"].api_url + "/queries", json=body, headers=headers)
    assert r.status_code == 422 and r.json()["error"] == "image_not_template"
    assert "image" in r.json()["detail"]
    for tiny in (b"", b"\x01", b"\x01\x02"):  # under the wire's 4 base64url characters
        body["templates"] = [{"data": base64.b64encode(tiny).decode()}]
        with httpx.Client() as client:
            r = client.post(nodes["TH"].api_url + "/queries", json=body, headers=headers)
        assert r.status_code == 422 and r.json()["error"] == "bad_template", tiny


def test_officer_case_ref_follows_the_wire_rules(
    nodes: dict[str, ServiceNode], fingers: list[list[FingerprintTemplate]]
) -> None:
    """A case reference the signed query could not carry (a space, over 64 characters) is the
    officer's error (422) before anything is sent, not a 500 after the policy decision."""
    th = nodes["TH"]
    before = th.exchange.log.size()
    for ref in ("TH 2026/17", "X" * 65):
        body = {
            "peers": ["ID"],
            "purpose": "border_control",
            "modality": "fingerprint",
            "templates": [{"data": base64.b64encode(iso19794_2.encode(fingers[0][1])).decode()}],
            "case_ref": ref,
        }
        with httpx.Client(timeout=30) as client:
            r = client.post(
                th.api_url + "/queries", json=body, headers={"Authorization": f"Bearer {th.token}"}
            )
        assert r.status_code == 422 and r.json()["error"] == "invalid_request", r.text
    assert th.exchange.log.size() == before


def test_a_peers_signed_error_reaches_the_officer(
    nodes: dict[str, ServiceNode],
    fingers: list[list[FingerprintTemplate]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A peer whose gallery is unreadable answers a signed ``error``; the officer gets it as
    that peer's outcome beside the other peers' answers (it was a 500 for the whole query)."""
    from matcher.errors import GalleryError

    def broken(*args: object, **kwargs: object) -> list[object]:
        raise GalleryError("segment checksum mismatch", reason="bad_checksum")

    monkeypatch.setattr(nodes["ID"].exchange.responder.search, "_fingerprint", broken)
    got = by_peer(officer_query(nodes["TH"], ["ID", "MY"], fingers[5][1]))
    assert got["ID"]["status"] == "answered" and got["ID"]["outcome"] == "error"
    assert got["ID"]["reason"] == "search_unavailable"
    assert got["MY"]["status"] == "answered"  # the other peer's answer is not lost


def test_officer_query_without_exchange_is_unavailable(tmp_path: Path) -> None:
    from node.api.app import create_app
    from node.db.models import Role
    from node.services.users import UserService
    from node.settings import Settings
    from tests.node.node_support import TestClient

    app = create_app(Settings(data_dir=tmp_path))
    with TestClient(app) as client:
        with app.state.sessions() as session:
            users = UserService(session)
            users.add_user("o", Role.OFFICER, actor="test")
            token = users.issue_token("o", expires_days=1, actor="test").token
        body = {
            "peers": ["ID"],
            "purpose": "border_control",
            "modality": "fingerprint",
            "templates": [{"data": "AAAA"}],
        }
        r = client.post("/queries", json=body, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 503


def test_housekeeping_purges_nonces_that_can_no_longer_be_replayed(
    region: Any, tmp_path: Path
) -> None:
    """A running node's periodic housekeeping deletes the nonces seen longer ago than a replay
    could pass the time check; fresh ones stay and their replay is still refused."""
    _, root = region
    node = start_service_node(
        tmp_path, root, "TH", free_port(), free_port(), {}, checkpoint_interval_s=10
    )
    try:
        guard = node.exchange.responder.replay
        now = datetime.now(UTC)
        old = now - guard.retention - timedelta(seconds=30)
        guard.check("ID", "old-nonce-0001", old, old)
        older = old - timedelta(seconds=10)
        guard.check("MY", "old-nonce-0002", older, older)
        guard.check("ID", "fresh-nonce-0001", now, now)

        def stored() -> set[str]:
            with node.app.state.engine.connect() as conn:
                return set(conn.execute(select(exchange_nonces.c.nonce)).scalars())

        deadline = time.monotonic() + 20
        while stored() != {"fresh-nonce-0001"} and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stored() == {"fresh-nonce-0001"}
        with pytest.raises(ReplayError) as info:
            guard.check("ID", "fresh-nonce-0001", now, datetime.now(UTC))
        assert info.value.reason == "replayed_nonce"
        # The purged nonce's message cannot come back: it is refused as stale first.
        with pytest.raises(ReplayError) as info:
            guard.check("ID", "old-nonce-0001", old, datetime.now(UTC))
        assert info.value.reason == "stale_message"
    finally:
        node.stop()


def test_a_housekeeping_round_that_cannot_record_the_crl_keeps_the_node_going(
    nodes: dict[str, ServiceNode], region: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A newer CRL is accepted but the held file cannot be written (here: a folder where its
    temporary file goes; in the field a full or read-only disk). The round logs it and ends
    normally: the error used to end the housekeeping task and, with it, the node's exchange
    and gallery."""
    import asyncio

    from node.exchange.setup import HELD_FILE, housekeeping_round

    node = nodes["ID"]
    exchange = node.exchange
    built, root = region
    before = exchange.credentials.anchors.crl.number
    (Path(root) / "crl.pem").write_bytes(crl_pem(built.ca.crl()))  # a newer CRL, same entries
    blocked = node.app.state.settings.data_dir / (HELD_FILE + ".tmp")
    blocked.mkdir()
    try:
        asyncio.run(housekeeping_round(exchange, 3600.0))
    finally:
        blocked.rmdir()
    assert exchange.credentials.anchors.crl.number == before + 1  # in use all the same
    assert "trust list/CRL reload failed" in caplog.text
    assert node.app.state.exchange is exchange  # still set up


def test_the_api_answers_while_an_officer_querys_log_append_waits_for_the_lock(
    nodes: dict[str, ServiceNode], fingers: list[list[FingerprintTemplate]]
) -> None:
    """Another process holds TH's SQLite write lock. The officer query's log appends ran on the
    event loop, which serves the API and the peer listener: /health waited with it."""
    import sqlite3
    import threading

    th = nodes["TH"]
    database = th.app.state.engine.url.database
    assert database
    answers: list[httpx.Response] = []
    query = threading.Thread(
        target=lambda: answers.append(officer_query(th, ["ID"], fingers[1][1]))
    )
    lock = sqlite3.connect(database, timeout=1)
    try:
        lock.execute("BEGIN IMMEDIATE")  # the write lock, as another writer holds it
        query.start()
        time.sleep(0.5)  # the query's first append is waiting for the lock
        with httpx.Client(timeout=10) as client:
            health = client.get(th.api_url + "/health")
        assert health.status_code == 200
    finally:
        lock.rollback()
        lock.close()
        query.join(60)
    assert by_peer(answers[0])["ID"]["outcome"] == "hit"


def test_a_changed_rules_file_is_in_force_after_a_housekeeping_round(
    nodes: dict[str, ServiceNode],
    fingers: list[list[FingerprintTemplate]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """ID suspends TH's border-control queries by editing its rules file. The node read the
    file once at start-up and went on answering TH, naming the old version in its decisions;
    now the next round applies the new rules and logs when they came into force. An invalid
    edit is refused and the rules in force stay."""
    from node.exchange.setup import housekeeping_round

    idn = nodes["ID"]
    path = idn.app.state.settings.policy_file
    original = path.read_text()
    suspended = original.replace('version = "svc-1"', 'version = "svc-2"').replace(
        '[peers.TH]\npurposes = ["border_control", "asylum"]', '[peers.TH]\npurposes = ["asylum"]'
    )
    assert suspended.count("svc-2") == 1 and suspended != original.replace("svc-1", "svc-2")
    before = idn.exchange.log.size()
    try:
        path.write_text(suspended)
        asyncio.run(housekeeping_round(idn.exchange, 3600.0))
        got = by_peer(officer_query(nodes["TH"], ["ID"], fingers[1][1]))["ID"]
        assert (got["outcome"], got["reason"]) == ("refused", "purpose_not_allowed"), got
        events = [json.loads(e.data) for e in idn.exchange.log.entries(before)]
        loaded = next(e for e in events if e["type"] == "policy_loaded")
        assert (loaded["policy_version_before"], loaded["policy_version"]) == ("svc-1", "svc-2")
        decision = next(e for e in events if e["type"] == "policy_decision")
        assert decision["policy_version"] == "svc-2" and decision["allowed"] is False

        path.write_text(suspended.replace('country = "ID"', 'country = "ID"\nbogus = 1'))
        asyncio.run(housekeeping_round(idn.exchange, 3600.0))
        asyncio.run(housekeeping_round(idn.exchange, 3600.0))
        refusals = [r for r in caplog.records if "policy_file not reloaded" in r.getMessage()]
        assert len(refusals) == 1 and "bogus" in refusals[0].getMessage()
        assert idn.exchange.policy.policy.version == "svc-2"  # still in force
    finally:
        path.write_text(original)
        asyncio.run(housekeeping_round(idn.exchange, 3600.0))
    assert idn.exchange.policy.policy.version == "svc-1"
    assert by_peer(officer_query(nodes["TH"], ["ID"], fingers[1][1]))["ID"]["outcome"] == "hit"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/users/me"),
        ("POST", "/users"),
        ("GET", "/subjects"),
        ("GET", "/audit/log/entries"),
        ("GET", "/docs"),
        ("POST", "/openapi.json"),  # GET: the peer routes' own schema (test_query_history)
        ("GET", "/health"),
        ("GET", "/peer/v1/../users/me"),
        ("GET", "/peer/v1"),
    ],
)
def test_the_peer_port_serves_the_peer_routes_only(
    nodes: dict[str, ServiceNode], region: Any, method: str, path: str
) -> None:
    """A member's client certificate and an officer's token on the peer port reach no API
    route: that port is open to the whole region (a leaked token, or any certificate the
    root issued, would otherwise reach the admin and gallery API past the network's
    segmentation). The peer routes answer there as before."""
    from certs.pki.tls import client_context

    _, root = region
    folder = Path(root) / "nodes" / "my"
    tls = client_context(folder / "tls.pem", folder / "tls.key", Path(root) / "root.pem")
    th = nodes["TH"]
    headers = {"Authorization": f"Bearer {th.token}"}
    with httpx.Client(verify=tls) as client:
        r = client.request(method, th.peer_url + path, headers=headers, json={})
        assert r.status_code == 404, r.text
        assert r.json()["error"] == "not_found"
        # the API port still serves the API, and the peer port the peer routes
        assert httpx.get(th.api_url + "/users/me", headers=headers).status_code == 200
        peer = client.post(th.peer_url + "/peer/v1/queries", content=b"x.y.z")
    assert peer.status_code in (400, 403, 422) and peer.json()["error"] != "not_found"


def _ask_id_directly(
    nodes: dict[str, ServiceNode], region: Any, items: list[Any]
) -> dict[str, Any]:
    """TH's signed query carrying ``items``, posted to ID's peer port (TH's officer-side
    checks skipped, as a misbehaving member would); the signed reply's payload."""
    from certs.pki.tls import client_context

    _, root = region
    requester = nodes["TH"].exchange.requester
    token = requester.sign_query(
        requester.build_query("ID", "border_control", "fingerprint", items)
    )
    folder = Path(root) / "nodes" / "th"
    tls = client_context(folder / "tls.pem", folder / "tls.key", Path(root) / "root.pem")
    with httpx.Client(verify=tls, timeout=30) as client:
        r = client.post(
            nodes["ID"].peer_url + "/peer/v1/queries",
            content=token,
            headers={"Content-Type": "application/jose"},
        )
    assert r.status_code == 200, r.text
    body = r.text.split(".")[1]
    payload: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return payload


def _item(record: bytes) -> Any:
    from node.exchange.messages import TemplateItem, b64url

    return TemplateItem(
        format="iso19794-2:2005", format_version=20, finger_position=1, data=b64url(record)
    )


def test_a_peer_query_of_more_finger_views_than_a_probe_has_is_refused(
    nodes: dict[str, ServiceNode], region: Any, fingers: list[list[FingerprintTemplate]]
) -> None:
    """A record may hold 255 views and a query 11 records, each view a whole 1:N search (one
    query was 2,805 searches for one unit of quota): at most MAX_FINGERS views in all."""
    from dataclasses import replace

    from node.services.search import MAX_FINGERS

    view = replace(fingers[1][1], finger_position=0)
    record = iso19794_2.encode_views([view] * (MAX_FINGERS + 1))
    got = _ask_id_directly(nodes, region, [_item(record)])
    assert (got["outcome"], got["reason"]) == ("refused", "unusable_template")
    split = [_item(iso19794_2.encode_views([view] * 6)), _item(iso19794_2.encode_views([view] * 5))]
    got = _ask_id_directly(nodes, region, split)
    assert (got["outcome"], got["reason"]) == ("refused", "unusable_template")


def test_a_peer_probe_is_one_persons_fingers_at_most_one_of_unknown_position(
    nodes: dict[str, ServiceNode], region: Any, fingers: list[list[FingerprintTemplate]]
) -> None:
    """Views of unknown position (0) escaped the repeated-finger check and were each searched
    against the whole gallery: one record of ten people's fingers, all at position 0, tested
    ten people for one unit of quota (a hit when one of them was enrolled). Two such views are
    refused now, before any search, and the unit is given back; one is a probe as before."""
    from dataclasses import replace

    from node.exchange.messages import TemplateItem, b64url

    def unknown(record: bytes) -> TemplateItem:
        return TemplateItem(format="iso19794-2:2005", format_version=20, data=b64url(record))

    log = nodes["ID"].exchange.log
    enrolled = replace(fingers[1][1], finger_position=0)
    stranger = replace(fingers[0][1], finger_position=0)
    got = _ask_id_directly(nodes, region, [unknown(iso19794_2.encode(enrolled))])
    assert got["outcome"] == "hit"
    before = log.size()
    got = _ask_id_directly(nodes, region, [unknown(iso19794_2.encode_views([stranger, enrolled]))])
    assert (got["outcome"], got["reason"]) == ("refused", "unsupported_template")
    two_items = [unknown(iso19794_2.encode(stranger)), unknown(iso19794_2.encode(enrolled))]
    got = _ask_id_directly(nodes, region, two_items)
    assert (got["outcome"], got["reason"]) == ("refused", "unsupported_template")
    refused = [json.loads(e.data) for e in log.entries(before)]
    refused = [e for e in refused if e["type"] == "query_refused"]
    assert [(e["stage"], e["quota_returned"]) for e in refused] == [("template", True)] * 2


def test_a_refused_probe_gives_its_search_back_to_the_quota(
    nodes: dict[str, ServiceNode], region: Any, fingers: list[list[FingerprintTemplate]]
) -> None:
    """Templates refused after the policy allowed the query (a record that does not decode,
    too many views) ran no search: each used up a unit of the peer's daily quota."""
    from dataclasses import replace
    from datetime import date

    from node.services.search import MAX_FINGERS

    ledger = nodes["ID"].exchange.policy.ledger
    before = nodes["ID"].exchange.log.size()
    view = replace(fingers[1][1], finger_position=0)
    too_many = _item(iso19794_2.encode_views([view] * (MAX_FINGERS + 1)))
    garbage = _item(b"FMR\x00 20\x00" + bytes(40))
    for item in (too_many, garbage):
        got = _ask_id_directly(nodes, region, [item])
        assert got["outcome"] == "refused"
    events = [json.loads(e.data) for e in nodes["ID"].exchange.log.entries(before)]
    granted = [e["quota"] for e in events if e["type"] == "policy_decision"]
    refused = [e for e in events if e["type"] == "query_refused"]
    assert [e["stage"] for e in refused] == ["template", "template"]
    assert all(e["quota_returned"] is True for e in refused)
    assert [e["quota"]["used"] for e in refused] == [g["used"] - 1 for g in granted]
    day = date.fromisoformat(granted[-1]["day"])
    assert ledger.used("TH", "fingerprint", day) == granted[0]["used"] - 1


@pytest.mark.parametrize("points", ["none", "one point"])
def test_a_peer_probe_with_too_few_distinct_minutiae_is_refused_not_a_no_hit(
    nodes: dict[str, ServiceNode],
    region: Any,
    fingers: list[list[FingerprintTemplate]],
    points: str,
) -> None:
    """A record with no minutiae, or all on one point, scores 0 against everything: it was a
    signed no-hit (a quota unit spent on a search that could find nothing)."""
    from dataclasses import replace

    t = fingers[1][1]
    n = 0 if points == "none" else 40
    empty = replace(
        t,
        x=np.full(n, 100, np.float32),
        y=np.full(n, 100, np.float32),
        angle=np.zeros(n, np.float32),
        kind=np.ones(n, np.uint8),
        quality=np.full(n, 60, np.uint8),
    )
    got = _ask_id_directly(nodes, region, [_item(iso19794_2.encode(empty))])
    assert (got["outcome"], got["reason"]) == ("refused", "unusable_template")


def test_a_peer_probe_recorded_at_1000_ppi_finds_its_mate(
    nodes: dict[str, ServiceNode], region: Any, fingers: list[list[FingerprintTemplate]]
) -> None:
    """The same finger as a 1000 ppi record (coordinates twice as far apart) was a signed
    no-hit: the matcher compared it at its own scale. It is scaled to 500 ppi now."""
    from dataclasses import replace

    t = fingers[2][1]
    fine = replace(
        t,
        x=t.x * 2,
        y=t.y * 2,
        width=2 * t.width + 1,
        height=2 * t.height + 1,
        resolution_ppi=1000,
        orientation=None,
    )
    coarse = _ask_id_directly(nodes, region, [_item(iso19794_2.encode(t))])
    got = _ask_id_directly(nodes, region, [_item(iso19794_2.encode(fine))])
    assert coarse["outcome"] == "hit"
    assert got["outcome"] == "hit", got


def test_the_replay_window_setting_is_the_clock_difference_both_ways(
    region: Any, fingers: list[list[FingerprintTemplate]], tmp_path: Path
) -> None:
    """With replay_window_s = 1800 on both nodes and ID's clock 10 minutes ahead, ID accepted
    TH's query, charged its quota and logged a hit, while TH threw the reply away as
    invalid_reply: its reply-time check used a fixed 5 minutes."""
    from datetime import UTC, datetime, timedelta

    _, root = region
    with serving(tmp_path, root, ("TH", "ID"), replay_window_s=1800) as handles:
        handles["ID"].enrol(["id-0"], [fingers[0][0]])
        responder = handles["ID"].exchange.responder
        responder.clock = lambda: datetime.now(UTC) + timedelta(minutes=10)
        result = by_peer(officer_query(handles["TH"], ["ID"], fingers[0][1]))["ID"]
        assert (result["status"], result["outcome"]) == ("answered", "hit"), result


def test_a_peer_whose_tls_certificate_is_revoked_is_sent_nothing(
    nodes: dict[str, ServiceNode], region: Any, fingers: list[list[FingerprintTemplate]]
) -> None:
    """Last but one in this module: MY's TLS certificate is revoked and TH reloads the CRL.
    TH's kept-alive connection to MY was checked when it opened; it is dropped with the CRL
    change and the new one is refused before the query is written (OpenSSL checks the chain
    only)."""
    th, my = nodes["TH"], nodes["MY"]
    first = by_peer(officer_query(th, ["MY"], fingers[1][1], purpose="asylum"))["MY"]
    assert first["status"] == "answered"  # and its connection is kept alive in TH's pool
    built, root = region
    built.ca.revoke(built.nodes["MY"].tls_cert)
    (Path(root) / "crl.pem").write_bytes(crl_pem(built.ca.crl()))
    th.exchange.credentials.reload()
    before = my.exchange.log.size()
    got = by_peer(officer_query(th, ["MY"], fingers[1][1], purpose="asylum"))["MY"]
    assert got["status"] == "untrusted_peer" and "revoked" in got["detail"]
    assert my.exchange.log.size() == before  # no query_received: nothing reached MY


def test_revoked_requester_is_refused(
    nodes: dict[str, ServiceNode], region: Any, fingers: list[list[FingerprintTemplate]]
) -> None:
    """Runs last (after the TLS revocation above): MY's signing certificate is revoked and ID
    reloads the new CRL. Every node's housekeeping re-reads the CRL within a minute, so no test
    that needs MY's signatures may run after it (it stood mid-module, and the tests after it
    failed whenever the module ran for more than a minute)."""
    built, root = region
    built.ca.revoke(built.nodes["MY"].signing_cert)
    (Path(root) / "crl.pem").write_bytes(crl_pem(built.ca.crl()))
    nodes["ID"].exchange.credentials.reload()
    got = by_peer(officer_query(nodes["MY"], ["ID"], fingers[1][1], purpose="asylum"))["ID"]
    assert got["status"] == "http_error"
    assert "revoked" in got["detail"]
