"""A certified peer must not grow an honest witness's permanent storage for free.

Three nodes served as ``bdx serve`` serves them; "ID" misbehaves with its own real keys: it
signs checkpoints of its own log and posts them to TH's witness endpoint over mutual TLS,
each padded with signature lines of its choosing (unverified text, up to the note limit).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from certs.pki.bootstrap import build_region, write_region
from certs.pki.credentials import NodePaths
from certs.pki.tls import client_context
from certs.translog import Checkpoint, SignedCheckpoint, SigningKey, schema
from certs.translog.note import Note, NoteSignature
from node.exchange.witnessing import VIEWS_PATH, WITNESS_PATH, log_origin, peer_log_key
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


def checkpoint_of(node: ServiceNode, size: int) -> SignedCheckpoint:
    """A checkpoint of ``node``'s log signed with its real key: size ``size``, a random root."""
    origin = log_origin(node.country)
    key = SigningKey(origin, node.exchange.credentials.signing_key)
    return SignedCheckpoint.sign(
        Checkpoint(origin, size, os.urandom(32), int(time.time() * 1000)), key
    )


def witnessed_rows(node: ServiceNode, origin: str) -> list[bytes]:
    t = schema.witnessed
    with node.app.state.engine.connect() as conn:
        return list(conn.execute(select(t.c.note).where(t.c.origin == origin)).scalars())


def test_the_same_checkpoint_resent_with_junk_lines_is_one_row(
    nodes: dict[str, ServiceNode], region_dir: Path
) -> None:
    """ID re-sent one checkpoint (same size, root and log signature) 50 times, changing only
    padding signature lines: each got a cosignature and added a ~7 KB row to TH's witness
    history (whole notes were compared and stored). Now: a cosignature each, one row,
    holding the body and ID's log signature; the view TH serves of ID's log verifies."""
    th, idn = nodes["TH"], nodes["ID"]
    signed = checkpoint_of(idn, 1000)
    with peer_client(region_dir, "ID") as client:
        for i in range(50):
            body = {"checkpoint": padded(signed), "old_size": 1000 if i else 0}
            r = client.post(th.peer_url + WITNESS_PATH, json=body)
            assert r.status_code == 200, r.text
    assert witnessed_rows(th, log_origin("ID")) == [signed.to_bytes()]
    with peer_client(region_dir, "MY") as client:  # what MY's compare_views asks TH
        r = client.get(f"{th.peer_url}{VIEWS_PATH}/ID")
    assert r.status_code == 200, r.text
    view = SignedCheckpoint.from_bytes(r.json()["checkpoint"].encode())
    assert view == signed
    view.verify(peer_log_key(nodes["MY"].exchange.credentials.anchors, "ID"))
