"""A certified peer must not grow an honest witness's permanent storage for free.

Three nodes served as ``bdx serve`` serves them. A peer misbehaves with its own real keys:
it signs checkpoints of its own log and posts them to TH's witness endpoint over mutual
TLS, each padded with signature lines of its choosing (unverified text, up to the note
limit); or a witness serves such a padded view of another log.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from certs.pki.bootstrap import build_region, write_region
from certs.pki.credentials import NodePaths
from certs.pki.tls import client_context
from certs.translog import Checkpoint, SignedCheckpoint, SigningKey, schema
from certs.translog.note import Note, NoteSignature
from node.exchange.requester import Peer
from node.exchange.witnessing import (
    EVIDENCE_PER_HELD,
    PROOF_PATH,
    VIEWS_PATH,
    WITNESS_PATH,
    compare_views,
    log_origin,
    peer_log_key,
    witness_round,
)
from tests.exchange.conftest import tls_app
from tests.exchange.service_support import ServiceNode, serving

COUNTRIES = ("TH", "ID", "MY")
JUNK_LINES = 95  # with the log's line, ~6.8 KB: within the 8192-character request limit


@pytest.fixture(scope="module")
def region_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("witness-region")
    write_region(build_region(COUNTRIES), root)
    return root


@pytest.fixture(scope="module")
def nodes(
    region_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServiceNode]]:
    with serving(tmp_path_factory.mktemp("witness-nodes"), region_dir, COUNTRIES) as started:
        yield started


def peer_client(region_dir: Path, country: str) -> httpx.Client:
    """An HTTPS client presenting ``country``'s TLS certificate (the peer listener's caller)."""
    paths = NodePaths.from_region(region_dir, country)
    return httpx.Client(
        verify=client_context(paths.tls_cert, paths.tls_key, paths.root), timeout=30
    )


def padded(signed: SignedCheckpoint) -> str:
    """``signed`` with ``JUNK_LINES`` fresh random signature lines after the log's own."""
    junk = tuple(NoteSignature(f"x{i}", os.urandom(4), os.urandom(40)) for i in range(JUNK_LINES))
    return Note(signed.note.text, signed.note.signatures + junk).encode().decode()


def witnessed_by(witness: ServiceNode, peer: ServiceNode) -> SignedCheckpoint:
    """Grow ``peer``'s real log, issue a checkpoint and have ``witness`` cosign it (a real
    witness round over mutual TLS); returns the checkpoint."""
    log = peer.exchange.log
    log.append_many([b'{"type":"x"}', b'{"type":"y"}'])
    latest = log.issue_checkpoint()
    got = asyncio.run(
        witness_round(log, peer.exchange.credentials, [peer.exchange.peers[witness.country]], 5)
    )
    assert got == {witness.country: "cosigned"}, got
    return latest


def signed_by(peer: ServiceNode, size: int) -> SignedCheckpoint:
    """A checkpoint of ``peer``'s log signed with its real key: ``size``, a random root."""
    origin = log_origin(peer.country)
    key = SigningKey(origin, peer.exchange.credentials.signing_key)
    return SignedCheckpoint.sign(
        Checkpoint(origin, size, os.urandom(32), int(time.time() * 1000)), key
    )


def witnessed_rows(node: ServiceNode, origin: str) -> list[bytes]:
    t = schema.witnessed
    with node.app.state.engine.connect() as conn:
        query = select(t.c.note).where(t.c.origin == origin).order_by(t.c.id)
        return list(conn.execute(query).scalars())


def kept_events(node: ServiceNode, kind: str, since: int) -> list[dict[str, Any]]:
    events = [json.loads(e.data) for e in node.exchange.log.entries(since)]
    return [e for e in events if e.get("type") == kind]


def test_the_same_checkpoint_resent_with_junk_lines_is_one_row(
    nodes: dict[str, ServiceNode], region_dir: Path
) -> None:
    """ID re-sent its checkpoint (same size, root and log signature) 50 times, changing only
    padding signature lines: each got a cosignature and added a ~7 KB row to TH's witness
    history (whole notes were compared and stored). Now: a cosignature each, no new row;
    the row holds the body and ID's log signature, and the view TH serves of ID's log
    verifies under ID's key."""
    th, idn = nodes["TH"], nodes["ID"]
    signed = witnessed_by(th, idn)
    origin = log_origin("ID")
    rows = witnessed_rows(th, origin)
    assert rows[-1] == signed.to_bytes()
    with peer_client(region_dir, "ID") as client:
        for _ in range(50):
            body = {"checkpoint": padded(signed), "old_size": signed.checkpoint.size}
            r = client.post(th.peer_url + WITNESS_PATH, json=body)
            assert r.status_code == 200, r.text
    assert witnessed_rows(th, origin) == rows
    with peer_client(region_dir, "MY") as client:  # what MY's compare_views asks TH
        r = client.get(f"{th.peer_url}{VIEWS_PATH}/ID")
    assert r.status_code == 200, r.text
    view = SignedCheckpoint.from_bytes(r.json()["checkpoint"].encode())
    assert view == signed
    view.verify(peer_log_key(nodes["MY"].exchange.credentials.anchors, "ID"))


def present_to(
    client: httpx.Client,
    th: ServiceNode,
    note: SignedCheckpoint,
    old_size: int,
    proof: list[bytes] | None = None,
) -> tuple[int, str]:
    """Post ``note`` (padded) to TH's witness endpoint; the status and error code."""
    body = {
        "checkpoint": padded(note),
        "old_size": old_size,
        "proof": [base64.b64encode(h).decode() for h in proof or []],
    }
    r = client.post(th.peer_url + WITNESS_PATH, json=body)
    return r.status_code, r.json().get("error", "")


def test_a_refusal_repeated_is_kept_once_without_the_padding(
    nodes: dict[str, ServiceNode], region_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """MY, once TH cosigned its log, sent rollbacks padded with 95 junk signature lines,
    again and again: each added a ~14 KB witness_refusal event (both notes, padding and
    all) to TH's append-only log and an ERROR line (800 in 8 s: +10 MiB). One presented
    tree, one event: the same rollback again with other padding adds nothing; the notes
    kept carry no padding and verify."""
    th, my = nodes["TH"], nodes["MY"]
    held = witnessed_by(th, my)
    size = held.checkpoint.size
    rollback = signed_by(my, size - 1)
    before = th.exchange.log.size()
    caplog.set_level(logging.INFO, logger="node.exchange.witnessing")
    rollback_refused = (403, "checkpoint_rollback")
    with peer_client(region_dir, "MY") as client:
        for _ in range(20):
            assert present_to(client, th, rollback, size) == rollback_refused
        kept = kept_events(th, "witness_refusal", before)
        assert [(e["peer"], e["reason"]) for e in kept] == [("MY", "checkpoint_rollback")]
        assert kept[0]["presented"] == rollback.to_bytes().decode()  # no padding lines
        assert kept[0]["held"] == held.to_bytes().decode()
        key = peer_log_key(th.exchange.credentials.anchors, "MY")
        for note in (kept[0]["presented"], kept[0]["held"]):
            SignedCheckpoint.from_bytes(note.encode()).verify(key)
        errors = [
            r for r in caplog.records if r.levelno >= logging.ERROR and "MY's log" in r.message
        ]
        assert len(errors) == 1, [r.message for r in errors]

        # Another checkpoint held: a rollback against it is another fact, kept once more.
        newer = witnessed_by(th, my)
        for _ in range(5):
            assert present_to(client, th, rollback, newer.checkpoint.size) == rollback_refused
    kept = kept_events(th, "witness_refusal", before)
    assert [e["held"] for e in kept] == [held.to_bytes().decode(), newer.to_bytes().decode()]


def test_an_old_checkpoint_resent_does_not_hide_a_forged_one(
    nodes: dict[str, ServiceNode], region_dir: Path
) -> None:
    """MY re-sent c1, an older checkpoint TH had cosigned (refused as a rollback, and kept as
    THE evidence of rollbacks against c2), then sent a checkpoint of c1's size with another
    root signed with its real key: refused, but not kept, so TH's log showed only MY's real
    roots. Now c1 is no evidence (TH cosigned it) and the forged tree is kept."""
    th, my = nodes["TH"], nodes["MY"]
    c1 = witnessed_by(th, my)
    c2 = witnessed_by(th, my)
    forged = signed_by(my, c1.checkpoint.size)
    before = th.exchange.log.size()
    with peer_client(region_dir, "MY") as client:
        for note in (c1, forged, c1):
            got = present_to(client, th, note, c2.checkpoint.size)
            assert got == (403, "checkpoint_rollback"), got
    kept = kept_events(th, "witness_refusal", before)
    assert [e["presented"] for e in kept] == [forged.to_bytes().decode()]
    assert kept[0]["held"] == c2.to_bytes().decode()


def test_an_extension_with_a_wrong_proof_does_not_hide_a_forged_one(
    nodes: dict[str, ServiceNode], region_dir: Path
) -> None:
    """MY sent its real next checkpoint with a well-formed wrong proof (a split view to TH:
    kept), then a forged checkpoint of that size with the real proof: refused, not kept. Now
    each presented tree is kept once."""
    th, my = nodes["TH"], nodes["MY"]
    held = witnessed_by(th, my)
    old = held.checkpoint.size
    log = my.exchange.log
    log.append_many([b'{"type":"z"}'])
    honest = log.issue_checkpoint()
    new = honest.checkpoint.size
    real = log.consistency_proof(old, new)
    forged = signed_by(my, new)
    before = th.exchange.log.size()
    with peer_client(region_dir, "MY") as client:
        wrong = [os.urandom(32) for _ in real]
        assert present_to(client, th, honest, old, wrong) == (403, "split_view")
        for _ in range(3):
            assert present_to(client, th, forged, old, real) == (403, "split_view")
    kept = kept_events(th, "witness_refusal", before)
    presented = [e["presented"] for e in kept]
    assert presented == [honest.to_bytes().decode(), forged.to_bytes().decode()]


def test_a_flood_of_forged_roots_keeps_at_most_the_bound(
    nodes: dict[str, ServiceNode], region_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Keyed by the presented tree, a peer signing a fresh root per request (the 800-request
    flood) could add an event each: at most EVIDENCE_PER_HELD are kept per held checkpoint
    and kind (another root at a size TH cosigned; a size it did not), the rest counted in
    one WARNING line per kind."""
    th, my = nodes["TH"], nodes["MY"]
    c1 = witnessed_by(th, my)
    c2 = witnessed_by(th, my)
    size = c2.checkpoint.size
    before = th.exchange.log.size()
    caplog.set_level(logging.DEBUG, logger="node.exchange.witnessing")
    flood = EVIDENCE_PER_HELD + 8
    with peer_client(region_dir, "MY") as client:
        for forged_size in (c1.checkpoint.size, size - 1):
            for _ in range(flood):
                got = present_to(client, th, signed_by(my, forged_size), size)
                assert got == (403, "checkpoint_rollback"), got
    kept = kept_events(th, "witness_refusal", before)
    sizes = [SignedCheckpoint.from_bytes(e["presented"].encode()).checkpoint.size for e in kept]
    assert sizes == [c1.checkpoint.size] * EVIDENCE_PER_HELD + [size - 1] * EVIDENCE_PER_HELD
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "not kept" in r.message
    ]
    assert len(warnings) == 2, [r.message for r in warnings]


def test_a_split_view_seen_again_is_kept_once_without_the_padding(
    nodes: dict[str, ServiceNode], region_dir: Path
) -> None:
    """Each view comparison that found TH's log split kept both notes again, the other
    witness's as it served it (padding lines included). A fake "MY" (MY's TLS certificate)
    serves a view of TH's log with another root for the size ID holds, signed with TH's real
    key, new padding and a new root each time: one split_view event, no padding."""
    th, idn = nodes["TH"], nodes["ID"]
    held = witnessed_by(idn, th)
    one = signed_by(th, held.checkpoint.size)
    served: list[SignedCheckpoint] = []

    def forged() -> dict[str, str]:
        signed = one if len(served) < 5 else signed_by(th, held.checkpoint.size)
        served.append(signed)
        return {"checkpoint": padded(signed)}

    app = FastAPI()
    app.get(f"{VIEWS_PATH}/{{cc}}")(lambda cc: forged())
    before = idn.exchange.log.size()
    with tls_app(app, region_dir, "MY") as url:
        peers = [Peer("TH", th.peer_url), Peer("MY", url)]
        for _ in range(5):
            got = asyncio.run(
                compare_views(idn.exchange.witness, idn.exchange.credentials, peers, 5)
            )
            assert got == {"TH/MY": "split_view"}, got
        kept = kept_events(idn, "split_view", before)
        assert [(e["peer"], e["witness"]) for e in kept] == [("TH", "MY")]
        assert kept[0]["presented"] == one.to_bytes().decode()  # no padding lines
        assert kept[0]["held"] == held.to_bytes().decode()

        # A fresh forged root each time: each is kept, up to the bound.
        for _ in range(EVIDENCE_PER_HELD + 3):
            got = asyncio.run(
                compare_views(idn.exchange.witness, idn.exchange.credentials, peers, 5)
            )
            assert got == {"TH/MY": "split_view"}, got
    kept = kept_events(idn, "split_view", before)
    assert [e["presented"] for e in kept] == [
        s.to_bytes().decode() for s in [one, *served[5 : 4 + EVIDENCE_PER_HELD]]
    ]


def test_a_view_this_node_cosigned_does_not_hide_a_forged_one(
    nodes: dict[str, ServiceNode], region_dir: Path
) -> None:
    """A witness serving an older checkpoint of TH's log that ID cosigned too, with TH (here
    a fake with TH's TLS certificate) serving a wrong proof to ID's checkpoint, was a split
    view kept as THE evidence against ID's held checkpoint: a forged view served next was not
    kept. Now a view ID cosigned is no evidence, and the forged one is kept."""
    th, idn = nodes["TH"], nodes["ID"]
    c1 = witnessed_by(idn, th)
    c2 = witnessed_by(idn, th)
    real = th.exchange.log.consistency_proof(c1.checkpoint.size, c2.checkpoint.size)
    forged = signed_by(th, c1.checkpoint.size)
    views = [c1, forged, c1, forged]

    fake_my, fake_th = FastAPI(), FastAPI()
    fake_my.get(f"{VIEWS_PATH}/{{cc}}")(lambda cc: {"checkpoint": padded(views.pop(0))})

    @fake_th.get(PROOF_PATH)
    def wrong_proof(old: int, new: int) -> dict[str, list[str]]:
        return {"proof": [base64.b64encode(os.urandom(32)).decode() for _ in real]}

    before = idn.exchange.log.size()
    with tls_app(fake_my, region_dir, "MY") as my_url, tls_app(fake_th, region_dir, "TH") as th_url:
        peers = [Peer("TH", th_url), Peer("MY", my_url)]
        while views:
            got = asyncio.run(
                compare_views(idn.exchange.witness, idn.exchange.credentials, peers, 5)
            )
            assert got == {"TH/MY": "split_view"}, got
    kept = kept_events(idn, "split_view", before)
    assert [e["presented"] for e in kept] == [forged.to_bytes().decode()]
    assert kept[0]["held"] == c2.to_bytes().decode()
