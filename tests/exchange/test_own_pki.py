"""A node whose own trust list or CRL is stale, or whose own certificates expired: it serves
its API, its peer exchange refuses (fail closed), and it says so, naming itself, not the peer:
in its log (once per change), in /health and in officers' results. Real nodes served as
``bdx serve`` serves them, with documents made by the project's CA."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from certs.pki import params
from certs.pki.bootstrap import Region, write_region
from certs.pki.revocation import crl_pem
from matcher.fingerprint import iso19794_2
from matcher.synthetic import synthetic_templates
from node.exchange.requester import Peer
from node.exchange.setup import housekeeping_round, witnessing_round
from node.exchange.witnessing import witness_round
from tests.exchange.service_support import (
    ServiceNode,
    dated_region,
    serving,
)

COUNTRIES = ("TH", "ID")
WATCH = "node.exchange.pki_watch"
BDX = [sys.executable, "-c", "from node.cli import main; main()"]


@contextmanager
def running(region: Region, tmp_path: Path) -> Iterator[dict[str, ServiceNode]]:
    """TH and ID of ``region``, served; ID enrols the first finger of the probe's subject."""
    root = tmp_path / "region"
    write_region(region, root)
    with serving(tmp_path / "data", root, COUNTRIES) as nodes:
        nodes["ID"].enrol(["id-0"], [FINGERS[0][0]])
        yield nodes


FINGERS = synthetic_templates(2, 2, seed=5)


def query(node: ServiceNode, to: str) -> dict[str, Any]:
    """The officer's result for ``to`` of a border-control query of finger 0's second view."""
    body = {
        "peers": [to],
        "purpose": "border_control",
        "modality": "fingerprint",
        "templates": [
            {
                "data": base64.b64encode(iso19794_2.encode(FINGERS[0][1])).decode(),
                "finger_position": 1,
            }
        ],
    }
    r = httpx.post(
        node.api_url + "/queries",
        json=body,
        headers={"Authorization": f"Bearer {node.token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()["results"][0]
    return result


def bdx_query(node: ServiceNode, to: str, tmp_path: Path) -> tuple[int, str]:
    """``bdx query`` of the probe through ``node``'s API: (exit code, stderr)."""
    probe = tmp_path / "probe.iso"
    probe.write_bytes(iso19794_2.encode(FINGERS[0][1]))
    token = tmp_path / "token"
    token.write_text(node.token)
    args = ["query", str(probe), "--to", to, "--purpose", "border_control", "--url", node.api_url]
    done = subprocess.run(
        [*BDX, *args, "--token-file", str(token)], capture_output=True, text=True, check=False
    )
    return done.returncode, done.stderr


def health(node: ServiceNode) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(node.api_url + "/health", timeout=10).json()
    return body


def errors(caplog: pytest.LogCaptureFixture, code: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == WATCH and r.levelno == logging.ERROR and code in r.getMessage()
    ]


def events(node: ServiceNode, kind: str) -> list[dict[str, Any]]:
    parsed = [json.loads(e.data) for e in node.exchange.log.entries()]
    return [e for e in parsed if e.get("type") == kind]


def test_a_stale_crl_is_told_at_start_in_health_and_to_officers_until_a_fresh_one_is_in(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The nodes' CRL went stale a day ago. They would not start (exit 5, the officers' and
    operators' API down with them); a CRL that went stale while they ran was refused in
    silence: /health ok, officers told ``untrusted_peer (stale_crl)``, which blames the peer.
    Now each says it once at ERROR, /health is degraded with the date, the officer's result
    is refused here naming this node, no witness is asked, and a fresh CRL ends it."""
    caplog.set_level(logging.INFO)
    issued = datetime.now(UTC) - params.CRL_VALIDITY - params.DEFAULT_GRACE - timedelta(days=1)
    region = dated_region(COUNTRIES, crl_issued=issued)
    stale_at = issued.replace(microsecond=0) + params.CRL_VALIDITY + params.DEFAULT_GRACE
    with running(region, tmp_path) as nodes:
        th, idn = nodes["TH"], nodes["ID"]
        assert len(errors(caplog, "[own_stale_crl]")) == 2  # one per node, at start

        got = health(th)
        assert got["status"] == "degraded"
        [notice] = got["pki"]
        assert (notice["document"], notice["state"], notice["reason"]) == (
            "crl",
            "stale",
            "stale_crl",
        )
        assert datetime.fromisoformat(notice["at"]) == stale_at
        assert "this node's CRL (number 1)" in notice["detail"]

        result = query(th, "ID")
        assert (result["status"], result["reason"]) == ("refused_locally", "own_stale_crl")
        assert "this node's CRL" in result["detail"] and "stale since" in result["detail"]
        [decision] = [e for e in events(th, "policy_decision") if e["direction"] == "outbound"]
        assert decision["allowed"] is False and decision["refusal"] == "own_stale_crl"
        assert not events(th, "query_sent")  # nothing left this node
        # the officers' history lists the attempt all the same, with this node's reason
        history = httpx.get(
            th.api_url + "/queries", headers={"Authorization": f"Bearer {th.token}"}, timeout=30
        )
        assert history.status_code == 200, history.text
        [listed] = history.json()["items"]
        assert (listed["query_id"], listed["status"], listed["reason"]) == (
            result["query_id"],
            "refused_locally",
            "own_stale_crl",
        )
        assert "this node's CRL" in listed["detail"]
        code, err = bdx_query(th, "ID", tmp_path)
        assert code == 5 and "this node's own PKI documents" in err and "own_stale_crl" in err
        assert "outbound rules" not in err

        caplog.clear()
        for node in (th, idn):  # later rounds: the same state is not logged again
            asyncio.run(housekeeping_round(node.exchange, 3600.0))
            asyncio.run(witnessing_round(node.exchange))
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert idn.exchange.witness.view("TH") is None  # no witness was asked

        fresh = crl_pem(region.ca.crl())
        (tmp_path / "region" / "crl.pem").write_bytes(fresh)
        for node in (th, idn):
            asyncio.run(housekeeping_round(node.exchange, 3600.0))
        assert "this node's CRL is in order again" in caplog.text
        assert health(th) | {"version": None} == {
            "status": "ok",
            "country": "TH",
            "version": None,
            "gallery": True,
            "missing_from_gallery": 0,
            "pki": [],
        }
        result = query(th, "ID")
        assert (result["status"], result["outcome"]) == ("answered", "hit")


def test_a_crl_that_goes_stale_while_the_node_runs_is_logged_in_the_next_round(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The reviewer's case: TH takes in a CRL already past its next update (a WARNING: it
    goes stale after the grace) that goes stale seconds later. The reload skipped the
    unchanged file, so nothing was logged and /health stayed ok; now the next round logs it at
    ERROR, once, and /health and officers say so."""
    caplog.set_level(logging.INFO)
    region = dated_region(COUNTRIES)
    with running(region, tmp_path) as nodes:
        th = nodes["TH"]
        stale_at = datetime.now(UTC) + timedelta(seconds=4)
        issued = stale_at - params.CRL_VALIDITY - params.DEFAULT_GRACE
        (tmp_path / "region" / "crl.pem").write_bytes(crl_pem(region.ca.crl(now=issued)))
        caplog.clear()
        asyncio.run(housekeeping_round(th.exchange, 3600.0))
        assert th.exchange.credentials.anchors.crl.number == 2
        [warned] = [r for r in caplog.records if r.name == WATCH]
        assert warned.levelno == logging.WARNING and "goes stale at" in warned.getMessage()
        assert health(th)["status"] == "ok"
        assert query(th, "ID")["outcome"] == "hit"
        time.sleep(max(0.0, (stale_at - datetime.now(UTC)).total_seconds()) + 1)
        caplog.clear()
        for _ in range(2):
            asyncio.run(housekeeping_round(th.exchange, 3600.0))
        assert len(errors(caplog, "[own_stale_crl]")) == 1
        assert health(th)["status"] == "degraded"
        assert query(th, "ID")["reason"] == "own_stale_crl"


def test_witnessing_warnings_say_when_this_nodes_own_crl_is_at_fault(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A witnessing round run under a stale CRL said "its certificate was refused" of every
    peer; it names this node's stale CRL and the reason now."""
    issued = datetime.now(UTC) - params.CRL_VALIDITY - params.DEFAULT_GRACE - timedelta(days=1)
    with running(dated_region(COUNTRIES, crl_issued=issued), tmp_path) as nodes:
        th = nodes["TH"]
        th.exchange.log.maybe_issue_checkpoint(0)
        peers: Sequence[Peer] = list(th.exchange.peers.values())
        got = asyncio.run(witness_round(th.exchange.log, th.exchange.credentials, peers, 5.0))
    assert got == {"ID": "untrusted_peer: stale_crl"}
    assert "witnessing by ID: this node's own CRL is stale, so no peer validates (stale_crl)" in [
        r.getMessage() for r in caplog.records
    ]


def test_an_expired_certificate_of_this_node_is_named_as_this_nodes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """TH's TLS and signing certificates ended yesterday. TH would not start; one whose
    certificate ended while it ran told its officers ``unreachable: ReadError`` and /health
    stayed ok. Now TH starts with an ERROR per certificate, /health is degraded with the
    dates, and its officers' results name TH's own expired certificate."""
    region = dated_region(COUNTRIES, ends={"TH": datetime.now(UTC) - timedelta(days=1)})
    ended = region.nodes["TH"].tls_cert.not_valid_after_utc
    with running(region, tmp_path) as nodes:
        th = nodes["TH"]
        assert len(errors(caplog, "[own_certificate_expired]")) == 2  # TLS and signing
        asyncio.run(housekeeping_round(th.exchange, 3600.0))  # as the node's first round
        said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        expired = [m for m in said if "this node's" in m and "expired" in m]
        assert len(expired) == 2, expired  # the renewal check said it a third time
        got = health(th)
        assert got["status"] == "degraded"
        assert {(n["document"], n["state"], n["reason"]) for n in got["pki"]} == {
            ("tls_certificate", "expired", "expired"),
            ("signing_certificate", "expired", "expired"),
        }
        assert {datetime.fromisoformat(n["at"]) for n in got["pki"]} == {ended}
        assert health(nodes["ID"])["status"] == "ok"  # ID's own documents are in order
        result = query(th, "ID")
        assert (result["status"], result["reason"]) == (
            "refused_locally",
            "own_certificate_expired",
        )
        assert (
            "this node's TLS certificate" in result["detail"] and "expired at" in result["detail"]
        )


def test_the_watch_warns_ahead_and_logs_each_change_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """TH's certificates end in three days: a WARNING each at start (within
    CERT_EXPIRY_WARNING), not repeated; past their end an ERROR each, once; the trust list and
    CRL past their next update: a WARNING each (they go stale after the grace)."""
    caplog.set_level(logging.INFO)
    region = dated_region(COUNTRIES, ends={"TH": datetime.now(UTC) + timedelta(days=3)})
    with running(region, tmp_path) as nodes:
        watch = nodes["TH"].exchange.pki_watch
        started = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == WATCH]
        assert [level for level, _ in started] == [logging.WARNING] * 2, started
        assert "this node's TLS certificate" in started[0][1] and "expires at" in started[0][1]
        assert health(nodes["TH"])["status"] == "ok"  # a warning: the exchange works
        assert [n["reason"] for n in health(nodes["TH"])["pki"]] == ["expires_soon"] * 2

        def logged(when: datetime | None = None) -> list[tuple[int, str]]:
            caplog.clear()
            watch.check(when)
            return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == WATCH]

        assert logged() == []  # the same state: nothing new
        end = watch.credentials.tls_cert.not_valid_after_utc
        over = logged(end + timedelta(seconds=1))
        assert [level for level, _ in over] == [logging.ERROR] * 2
        assert all("[own_certificate_expired]" in m for _, m in over)
        assert logged(end + timedelta(seconds=2)) == []
        due = watch.credentials.anchors.crl.next_update + timedelta(hours=1)
        lists = [(level, m) for level, m in logged(due) if "certificate" not in m]
        assert [level for level, _ in lists] == [logging.WARNING] * 2
        assert any("CRL (number 1) was due for update" in m for _, m in lists)
        assert watch.refusal(due) is not None and watch.refusal() is None


def test_a_node_whose_signing_certificate_is_revoked_answers_and_cosigns_nothing(
    tmp_path: Path,
) -> None:
    """Its TLS certificate still valid, peers connect: it charged the quota, searched, logged a
    hit and signed the reply with the revoked key, and cosigned and stored a checkpoint, all of
    which its peers then threw away. It now refuses both, unsigned, naming itself. Its
    /health notice is dated with the CRL entry's revocation date (it was null: the README
    and the officer's error promise "since when")."""
    region = dated_region(COUNTRIES)
    revoked_at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    region.ca.revoke(region.nodes["ID"].signing_cert, now=revoked_at)
    region = Region(region.ca, region.nodes, region.trust_list, crl_pem(region.ca.crl()))
    with running(region, tmp_path) as nodes:
        th, idn = nodes["TH"], nodes["ID"]
        [notice] = health(idn)["pki"]
        assert (notice["document"], notice["state"], notice["reason"]) == (
            "signing_certificate",
            "refused",
            "revoked",
        )
        assert notice["at"] is not None and datetime.fromisoformat(notice["at"]) == revoked_at
        assert f"is revoked since {revoked_at:%Y-%m-%d %H:%M:%S}Z" in notice["detail"]
        result = query(th, "ID")
        assert result["status"] != "answered", result
        assert events(idn, "policy_decision") == [] and events(idn, "reply_sent") == []
        refused = events(idn, "query_refused")
        assert [(e["stage"], e["reason"]) for e in refused] == [
            ("credentials", "own_certificate_revoked")
        ]
        th.exchange.log.maybe_issue_checkpoint(0)
        peers = [th.exchange.peers["ID"]]
        got = asyncio.run(witness_round(th.exchange.log, th.exchange.credentials, peers, 5.0))
        assert got["ID"] != "cosigned" and idn.exchange.witness.view("TH") is None


def test_a_revoked_own_certificate_is_named_once_by_the_cli_and_the_log(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """TH got a hit, then its TLS certificate was revoked. ``bdx peers terms ID`` and ``bdx
    queries outcome QID`` ended ``[own_certificate_revoked] [own_certificate_revoked]``, and
    so did the node's ``request failed:`` lines: the sentence carried its code, and the error
    line added the reason again. Each line now ends with it once, as the README's
    ``bdx: error: <message> [<reason>]``; the PKI watch's own ERROR line keeps it, once."""
    from node.cli import main

    caplog.set_level(logging.INFO)
    region = dated_region(COUNTRIES)
    with running(region, tmp_path) as nodes:
        th = nodes["TH"]
        sent = query(th, "ID")
        assert sent["outcome"] == "hit", sent
        region.ca.revoke(th.exchange.credentials.tls_cert)
        (tmp_path / "region" / "crl.pem").write_bytes(crl_pem(region.ca.crl()))
        caplog.clear()
        asyncio.run(housekeeping_round(th.exchange, 3600.0))
        [watched] = errors(caplog, "[own_certificate_revoked]")
        assert watched.endswith("until it is renewed [own_certificate_revoked]"), watched
        assert watched.count("own_certificate_revoked") == 1
        [notice] = health(th)["pki"]
        assert notice["reason"] == "revoked" and "own_certificate_revoked" not in notice["detail"]

        monkeypatch.setenv("BDX_TOKEN", th.token)
        monkeypatch.delenv("BDX_TOKEN_FILE", raising=False)
        caplog.clear()
        for args in (["peers", "terms", "ID"], ["queries", "outcome", sent["query_id"]]):
            capsys.readouterr()
            with pytest.raises(SystemExit) as done:
                main([*args, "--url", th.api_url])
            _, err = capsys.readouterr()
            assert done.value.code == 5, err
            assert err.startswith("bdx: error: ") and "is revoked" in err, err
            assert err.endswith("until it is renewed [own_certificate_revoked]\n"), err
            assert err.count("own_certificate_revoked") == 1, err
        failed = [
            r.getMessage()
            for r in caplog.records
            if r.name == "node.api.errors" and r.getMessage().startswith("request failed: ")
        ]
        assert len(failed) == 2, failed
        for said in failed:
            assert said.endswith("until it is renewed [own_certificate_revoked]"), said
            assert said.count("own_certificate_revoked") == 1, said

        # a local command on TH's settings: its warning line ends with the code, once
        s = th.app.state.settings
        cfg = tmp_path / "th.toml"
        cfg.write_text(
            f'country = "TH"\ndata_dir = "{s.data_dir}"\ndatabase_url = "{s.db_url}"\n'
            f'pki_dir = "{s.pki_dir}"\npolicy_file = "{s.policy_file}"\n'
        )
        capsys.readouterr()
        with pytest.raises(SystemExit) as done:
            main(["audit", "list", "--limit", "1", "--config", str(cfg)])
        _, err = capsys.readouterr()
        assert done.value.code in (0, None), err
        [warned] = [w for w in err.splitlines() if "own_certificate_revoked" in w]
        assert warned.startswith("bdx: warning: this node's TLS certificate"), err
        assert warned.endswith(" [own_certificate_revoked]") and warned.count("own_") == 1
