"""Renewing a running node's certificates (README, "Renewing a node's certificates"): TH and
ID served like ``bdx serve`` over mutual TLS, TH's certificates renewed with ``bdx pki``
while both run, never restarted; and the renewed pairs a node must refuse."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from certs.pki.bootstrap import NodeMaterial, build_region, make_node, write_region
from certs.pki.ca import CertificateAuthority
from certs.pki.keys import (
    certificate_pem,
    fingerprint,
    load_certificate,
    write_private_key,
    write_public,
)
from certs.pki.revocation import crl_pem
from certs.translog.export import export_json
from matcher.fingerprint import iso19794_2
from matcher.fingerprint.template import FingerprintTemplate
from matcher.synthetic import synthetic_templates
from node.cli import main
from node.exchange.requester import Peer
from node.exchange.setup import housekeeping_round
from node.exchange.witnessing import witness_round
from tests.exchange.service_support import ServiceNode, serving

COUNTRIES = ("TH", "ID")


@pytest.fixture(scope="module")
def fingers() -> list[list[FingerprintTemplate]]:
    return synthetic_templates(2, 2, seed=11)


@pytest.fixture
def region(tmp_path: Path) -> Iterator[tuple[CertificateAuthority, Path]]:
    built = build_region(COUNTRIES)
    root = tmp_path / "region"
    write_region(built, root)
    yield built.ca, root


@pytest.fixture
def nodes(
    region: tuple[CertificateAuthority, Path],
    tmp_path: Path,
    fingers: list[list[FingerprintTemplate]],
) -> Iterator[dict[str, ServiceNode]]:
    """TH and ID, each with one subject enrolled; rounds are run by the tests."""
    _, root = region
    with serving(tmp_path / "data", root, COUNTRIES, checkpoint_interval_s=3600) as handles:
        handles["ID"].enrol(["id-0"], [fingers[0][0]])
        handles["TH"].enrol(["th-0"], [fingers[1][0]])
        yield handles


def answers(node: ServiceNode, peer: str, probe: FingerprintTemplate) -> dict[str, object]:
    body = {
        "peers": [peer],
        "purpose": "border_control",
        "modality": "fingerprint",
        "templates": [
            {"data": base64.b64encode(iso19794_2.encode(probe)).decode(), "finger_position": 1}
        ],
        "case_ref": "case-1",
    }
    with httpx.Client(timeout=30) as client:
        r = client.post(
            node.api_url + "/queries", json=body, headers={"Authorization": f"Bearer {node.token}"}
        )
    assert r.status_code == 200, r.text
    result: dict[str, object] = r.json()["results"][0]
    return result


def both_ways_hit(nodes: dict[str, ServiceNode], fingers: list[list[FingerprintTemplate]]) -> None:
    for asker, peer, finger in (("TH", "ID", 0), ("ID", "TH", 1)):
        got = answers(nodes[asker], peer, fingers[finger][1])
        assert (got["status"], got["outcome"]) == ("answered", "hit"), (asker, got)


def rounds(*nodes: ServiceNode) -> None:
    for node in nodes:
        asyncio.run(housekeeping_round(node.exchange, 3600.0))


def presented(node: ServiceNode, by: ServiceNode) -> x509.Certificate:
    """The TLS certificate ``node``'s peer listener presents to ``by`` in a new handshake."""
    ctx = by.exchange.credentials.client_context()
    port = int(node.peer_url.rsplit(":", 1)[1])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def pki(capsys: pytest.CaptureFixture[str], *args: str) -> None:
    with pytest.raises(SystemExit) as done:
        main(["pki", *args])
    _, err = capsys.readouterr()
    assert done.value.code in (0, None), err


def test_a_renewal_by_the_documented_steps_is_no_outage(
    nodes: dict[str, ServiceNode],
    region: tuple[CertificateAuthority, Path],
    fingers: list[list[FingerprintTemplate]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """TH's certificates are renewed by the README's steps while TH and ID run: new keys and
    certificates (bdx pki request, issue), a trust list with TH's old and new ones (bdx pki
    trust-list), TH's files replaced, a housekeeping round, later a list without the old.
    Queries answer both ways all along, and witnessing goes on. The trust list could hold one
    pair per member, a node kept the certificate and key it started with until a restart
    (its peers refused it as soon as the old certificate left the list), and witnessing built
    its TLS client from the files each round while checkpoints were signed with the old key."""
    caplog.set_level(logging.INFO, logger="node.exchange.renewal")
    th, idn = nodes["TH"], nodes["ID"]
    _, root = region
    both_ways_hit(nodes, fingers)
    creds = th.exchange.credentials
    assert presented(th, idn) == creds.tls_cert

    # 1. new keys and certificates
    new = tmp_path / "th-new"
    ca = str(root / "ca")
    for kind, extra in (("tls", ["--dns", "localhost", "--ip", "127.0.0.1"]), ("signing", [])):
        request = ["--country", "TH", "--node-name", "bdx-th", "--kind", kind, "--out", str(new)]
        pki(capsys, "request", *request, *extra)
        csr = str(new / f"th-{kind}.csr")
        out = str(new / f"th-{kind}.pem")
        pki(capsys, "issue", "--ca", ca, "--csr", csr, "--kind", kind, "--out", out)
    # 2. a trust list with TH's old (in nodes/th) and new certificates, held by both
    renewed = f"TH={new / 'th-tls.pem'},{new / 'th-signing.pem'}"
    trust_list = str(root / "trust-list.jws")
    members = ["--members-dir", str(root / "nodes")]
    pki(capsys, "trust-list", "--ca", ca, *members, "--member", renewed, "--out", trust_list)
    rounds(th, idn)
    assert idn.exchange.credentials.anchors.trust_list.sequence == 2
    both_ways_hit(nodes, fingers)
    # an auditor takes TH's log keys from the PKI now: both, one a line (it got the new only)
    anchors = ["--trust-list", trust_list, "--root", str(root / "root.pem")]
    anchors += ["--crl", str(root / "crl.pem")]
    with pytest.raises(SystemExit) as done:
        main(["pki", "vkey", "--country", "TH", *anchors])
    vkeys, err = capsys.readouterr()
    assert done.value.code in (0, None), err
    auditor_keys = tmp_path / "th-log-keys.txt"
    auditor_keys.write_text(vkeys)
    assert len(vkeys.split()) == 2
    # 3. TH's files replaced; until TH's next round, everything runs on the pair it holds
    folder = root / "nodes" / "th"
    for kind in ("tls", "signing"):
        os.replace(new / f"th-{kind}.key", folder / f"{kind}.key")
        os.replace(new / f"th-{kind}.pem", folder / f"{kind}.pem")
    peer_id = [Peer("ID", idn.peer_url)]
    th_log, th_creds = th.exchange.log, th.exchange.credentials
    th_log.issue_checkpoint()
    assert asyncio.run(witness_round(th_log, th_creds, peer_id, 5.0)) == {"ID": "cosigned"}
    # 4. TH's next round picks them up
    rounds(th)
    new_tls, new_signing = (load_certificate(folder / f"{k}.pem") for k in ("tls", "signing"))
    assert (creds.tls_cert, creds.signing_cert) == (new_tls, new_signing)
    lines = [r for r in caplog.records if r.name == "node.exchange.renewal"]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    assert f"{new_tls.serial_number:x}" in lines[0].getMessage()
    assert fingerprint(new_signing) in lines[0].getMessage()
    assert presented(th, idn) == new_tls
    both_ways_hit(nodes, fingers)
    # 5. later: a trust list without TH's old certificates (nodes/th holds the new ones)
    pki(capsys, "trust-list", "--ca", ca, *members, "--out", trust_list)
    rounds(th, idn)
    listed = idn.exchange.credentials.anchors.trust_list.member("TH")
    assert listed is not None and listed.tls == (new_tls,)
    both_ways_hit(nodes, fingers)
    # the checkpoints TH asks ID to cosign are signed with the new key, and TH cosigns with it
    assert asyncio.run(witness_round(th_log, th_creds, peer_id, 5.0)) == {"ID": "cosigned"}
    idn.exchange.log.issue_checkpoint()
    peer_th = [Peer("TH", th.peer_url)]
    got = asyncio.run(witness_round(idn.exchange.log, idn.exchange.credentials, peer_th, 5.0))
    assert got == {"TH": "cosigned"}
    log_keys = th.app.state.settings.data_dir / "log-keys.txt"
    assert len(log_keys.read_text().split()) == 2  # the store audit verifies the old key's
    # An export of TH's whole log holds checkpoints under both keys: the auditor's file of
    # `bdx pki vkey` output verifies it, as do the node's log-keys.txt (a file of two vkeys
    # was malformed key material, exit 3) and that output given inline.
    export = tmp_path / "th-export.json"
    export.write_bytes(export_json(th_log))
    for keys in (str(auditor_keys), str(log_keys), vkeys):  # vkeys: --log-key "$(vkey ...)"
        with pytest.raises(SystemExit) as done:
            main(["audit", "verify", str(export), "--log-key", keys])
        out, err = capsys.readouterr()
        assert done.value.code in (0, None), err
        assert out.startswith("OK ")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def write_pair(root: Path, node: NodeMaterial, *, tls_key: object = None) -> None:
    """Replace ``node``'s four files in the region (``tls_key``: another key for TLS)."""
    folder = root / "nodes" / node.country.lower()
    for name in ("tls.key", "tls.pem", "signing.key", "signing.pem"):
        (folder / name).unlink()
    write_private_key(folder / "tls.key", tls_key or node.tls_key)  # type: ignore[arg-type]
    write_public(folder / "tls.pem", certificate_pem(node.tls_cert))
    write_private_key(folder / "signing.key", node.signing_key)
    write_public(folder / "signing.pem", certificate_pem(node.signing_cert))


def test_a_renewed_pair_that_does_not_validate_is_refused_and_the_one_in_use_stays(
    nodes: dict[str, ServiceNode],
    region: tuple[CertificateAuthority, Path],
    fingers: list[list[FingerprintTemplate]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """New files for TH that must not be used: a TLS key that is not its certificate's, a pair
    not in the trust list, a listed pair whose TLS certificate is revoked. Each is refused with
    one ERROR line (however many rounds see it) and TH goes on with its pair, answering both
    ways. Then a trust list is published without TH's certificates in use: one ERROR says so
    (the node accepted such a list and said nothing)."""
    caplog.set_level(logging.INFO, logger="node.exchange.renewal")
    th, idn = nodes["TH"], nodes["ID"]
    ca, root = region
    creds = th.exchange.credentials
    old = (creds.tls_cert, creds.signing_cert)
    renewed = make_node(ca, "TH")

    def errors(reason: str) -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.ERROR and r.getMessage().endswith(f"[{reason}]")
        ]

    def still_old() -> None:
        assert (creds.tls_cert, creds.signing_cert) == old
        assert presented(th, idn) == old[0]
        assert not [r for r in caplog.records if r.levelno == logging.INFO]
        both_ways_hit(nodes, fingers)

    write_pair(root, renewed, tls_key=renewed.signing_key)
    rounds(th, th)
    assert len(errors("key_mismatch")) == 1
    still_old()
    write_pair(root, renewed)
    rounds(th, th)
    assert len(errors("not_in_trust_list")) == 1
    still_old()
    idn_pair = (
        idn.country,
        idn.exchange.credentials.tls_cert,
        idn.exchange.credentials.signing_cert,
    )
    listed = [("TH", *old), ("TH", renewed.tls_cert, renewed.signing_cert)]
    write_public(root / "trust-list.jws", ca.trust_list([*listed, idn_pair]).encode())
    ca.revoke(renewed.tls_cert)
    write_public(root / "crl.pem", crl_pem(ca.crl()))
    rounds(idn, th, th)
    assert len(errors("revoked")) == 1
    still_old()
    # a trust list without the certificates TH uses (only the revoked renewal)
    write_public(root / "trust-list.jws", ca.trust_list([listed[1], idn_pair]).encode())
    rounds(th, th)
    # the standing watch says it, once per certificate, and nothing else does (the renewal
    # check said it a third time)
    unlisted = errors("own_certificate_not_in_trust_list")
    assert len(unlisted) == 2 and all("is refused" in m for m in unlisted), unlisted
    assert not [m for m in errors("not_in_trust_list") if "in use are refused" in m]
    assert (creds.tls_cert, creds.signing_cert) == old
