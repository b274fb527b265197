"""A certified peer must not grow an honest witness's permanent storage for free.

Three nodes served as ``bdx serve`` serves them. A peer misbehaves with its own real keys:
it signs checkpoints of its own log and posts them to TH's witness endpoint over mutual
TLS, each padded with signature lines of its choosing (unverified text, up to the note
limit); or a witness serves such a padded view of another log.
"""

from __future__ import annotations

import asyncio
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


def test_a_refusal_repeated_is_kept_once_without_the_padding(
    nodes: dict[str, ServiceNode], region_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """MY, once TH cosigned its log, sent rollbacks padded with 95 junk signature lines,
    again and again: each added a ~14 KB witness_refusal event (both notes, padding and
    all) to TH's append-only log and an ERROR line (800 in 8 s: +10 MiB). One fact, one
    event: repeats against the same held checkpoint add nothing, whether the same rollback
    with other padding or fresh ones; the notes kept carry no padding and verify."""
    th, my = nodes["TH"], nodes["MY"]
    held = witnessed_by(th, my)
    size = held.checkpoint.size
    rollback = signed_by(my, size - 1)
    before = th.exchange.log.size()
    caplog.set_level(logging.INFO, logger="node.exchange.witnessing")
    with peer_client(region_dir, "MY") as client:

        def present(note: SignedCheckpoint) -> None:
            body = {"checkpoint": padded(note), "old_size": size}
            r = client.post(th.peer_url + WITNESS_PATH, json=body)
            assert r.status_code == 403 and r.json()["error"] == "checkpoint_rollback", r.text

        for _ in range(20):
            present(rollback)
        for _ in range(20):
            present(signed_by(my, size - 1))  # another root each time, the same fact
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
            present(rollback)
    kept = kept_events(th, "witness_refusal", before)
    assert [e["held"] for e in kept] == [held.to_bytes().decode(), newer.to_bytes().decode()]


def test_a_split_view_seen_again_is_kept_once_without_the_padding(
    nodes: dict[str, ServiceNode], region_dir: Path
) -> None:
    """Each view comparison that found TH's log split kept both notes again, the other
    witness's as it served it (padding lines included). A fake "MY" (MY's TLS certificate)
    serves a view of TH's log with another root for the size ID holds, signed with TH's real
    key, new padding and a new root each time: one split_view event, no padding."""
    th, idn = nodes["TH"], nodes["ID"]
    held = witnessed_by(idn, th)
    first: list[SignedCheckpoint] = []

    def forged() -> dict[str, str]:
        signed = signed_by(th, held.checkpoint.size)
        first.append(signed)
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
    assert kept[0]["presented"] == first[0].to_bytes().decode()  # no padding lines
    assert kept[0]["held"] == held.to_bytes().decode()
