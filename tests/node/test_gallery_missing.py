"""Active records whose templates the gallery lacks (a database newer than its gallery, the two
restored from different moments): the node says so at start-up, and the command its ERROR line
names lists them, with whom to re-enrol, while the node keeps running.

`bdx gallery reconcile --json`, which the line named, answered `gallery_locked` (exit 7) beside
a running node and listed bare references, not the subjects to re-enrol."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from node_support import cli, enrol, free_port, wait_for_health
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from node.db.engine import create_db_engine, session_factory
from node.db.migrate import upgrade
from node.db.models import Modality, TemplateRecord
from node.services.galleries import GallerySet
from node.services.records import MissingRecord, RecordService, missing_records
from node.settings import Settings

BDX = [sys.executable, "-c", "from node.cli import main; main()"]


def _reference(sessions: sessionmaker[Session], subject: str, finger: int) -> str:
    with sessions() as s:
        query = select(TemplateRecord.reference).where(
            TemplateRecord.subject.has(external_id=subject),
            TemplateRecord.finger_position == finger,
        )
        return s.scalars(query).one()


def _restored_node(settings: Settings) -> str:
    """A node whose gallery lost case-1's finger 2 (the database is newer): its reference."""
    engine = create_db_engine(settings.db_url)
    try:
        upgrade(engine)
        sessions = session_factory(engine)
        with GallerySet.open(settings.gallery_path) as galleries:
            enrol(sessions, galleries, "case-1", 2)
            enrol(sessions, galleries, "case-2", 1)
            lost = _reference(sessions, "case-1", 2)
            galleries.remove([lost])
    finally:
        engine.dispose()
    return lost


def test_the_start_up_error_names_a_command_that_lists_them_beside_the_node(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "node"
    lost = _restored_node(Settings(data_dir=data_dir, country="XB"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BDX_")}
    env.update(BDX_DATA_DIR=str(data_dir), BDX_COUNTRY="XB")
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*BDX, "serve", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for_health(proc, port, 60)
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
        assert (health["status"], health["missing_from_gallery"]) == ("degraded", 1)
        (line,) = [x for x in log.read_text().splitlines() if "not in the gallery" in x]
        assert line.startswith("ERROR") and "leave the node running" in line, line
        named = re.search(r"`(bdx gallery reconcile[^`]*)`", line)
        assert named is not None, line
        command = named.group(1).split()[1:]  # the node runs, as the line says it may
        done = subprocess.run(
            [*BDX, *command, "--json"], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {
            "missing_from_gallery": [
                {
                    "reference": lost,
                    "subject": "case-1",
                    "modality": "fingerprint",
                    "finger_position": 2,
                }
            ]
        }
        said = subprocess.run(
            [*BDX, *command], env=env, capture_output=True, text=True, timeout=120
        )
        assert said.returncode == 0, said.stderr
        assert f"subject case-1: fingerprint finger 2 (record {lost})" in said.stdout
        assert "1 active records of 1 subjects are not in the gallery" in said.stdout
        assert proc.poll() is None  # still serving
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_list_missing_changes_nothing_and_refuses_remove_orphans(
    node_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    lost = _restored_node(node_env)
    for _ in range(2):  # the start-up reconcile would only count it: listing leaves it active
        code, out, err = cli(["gallery", "reconcile", "--list-missing", "--json"], capsys)
        assert code == 0, err
        assert [m["reference"] for m in json.loads(out)["missing_from_gallery"]] == [lost]
    code, _, err = cli(["gallery", "reconcile", "--list-missing", "--remove-orphans"], capsys)
    assert code == 2 and "--remove-orphans" in err
    with GallerySet.open(node_env.gallery_path):  # a node holds the gallery
        code, out, _ = cli(["gallery", "reconcile", "--list-missing"], capsys)
        assert code == 0 and "subject case-1: fingerprint finger 2" in out
    code, out, _ = cli(["gallery", "reconcile", "--json"], capsys)  # the writer: node stopped
    assert code == 0 and json.loads(out)["missing_from_gallery"] == [lost]


def test_missing_records_name_subject_modality_and_finger(
    sessions: sessionmaker[Session], session: Session, galleries: GallerySet
) -> None:
    enrol(sessions, galleries, "case-1", 3)
    enrol(sessions, galleries, "case-0", 1)
    gone = [_reference(sessions, "case-1", 3), _reference(sessions, "case-0", 1)]
    galleries.remove(gone)
    assert missing_records(session, galleries.references) == [
        MissingRecord(gone[1], "case-0", Modality.FINGERPRINT.value, 1),
        MissingRecord(gone[0], "case-1", Modality.FINGERPRINT.value, 3),
    ]


def test_a_subject_deleted_while_the_gallery_is_read_is_not_listed(
    sessions: sessionmaker[Session], session: Session, galleries: GallerySet
) -> None:
    """The node deletes a subject between the listing's read of the database and its read of
    the gallery: its records, gone from the gallery, were active when first read, and were
    listed as missing although nobody is to be re-enrolled."""
    enrol(sessions, galleries, "case-1", 1)
    enrol(sessions, galleries, "case-2", 1)
    lost = _reference(sessions, "case-1", 1)
    galleries.remove([lost])

    def read_during_a_deletion() -> set[str]:
        with sessions() as other:
            RecordService(other, galleries).delete_subject("case-2", actor="user:op")
        return galleries.references()

    assert [m.reference for m in missing_records(session, read_during_a_deletion)] == [lost]
