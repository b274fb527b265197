"""Acceptance: ``bdx gallery load`` of 10,000 synthetic ISO/IEC 19794-2 records succeeds, adds
nothing when repeated, and survives a SIGKILL mid-load: after the resumed run the database's
active records are exactly the gallery's references, 10,000 of them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from matcher.fingerprint.iso19794_2 import encode
from matcher.synthetic import synthetic_templates
from node.db.models import RecordState, TemplateRecord
from node.services.galleries import GallerySet
from node.settings import Settings

FINGERS, IMPRESSIONS = 5_000, 2
TOTAL = FINGERS * IMPRESSIONS
BDX = [sys.executable, "-c", "from node.cli import main; main()"]


def write_iso_folder(root: Path) -> None:
    """FVC layout of ISO records: ``<finger>_<impression>.fmr``."""
    root.mkdir()
    for f, impressions in enumerate(synthetic_templates(FINGERS, IMPRESSIONS, seed=7)):
        for i, template in enumerate(impressions):
            (root / f"{f + 1}_{i + 1}.fmr").write_bytes(encode(template))


def active_count(session: Session) -> int:
    session.expire_all()
    query = select(func.count()).where(TemplateRecord.state == RecordState.ACTIVE)
    return int(session.scalar(query) or 0)


def load(env: dict[str, str], root: Path) -> dict[str, object]:
    done = subprocess.run(
        [*BDX, "gallery", "load", str(root), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out: dict[str, object] = json.loads(done.stdout)
    return out


@pytest.mark.slow
def test_load_10k_iso_records_killed_resumed_and_repeated(
    settings: Settings, engine: Engine, session: Session, tmp_path: Path
) -> None:
    root = tmp_path / "iso"
    write_iso_folder(root)
    env = {
        **os.environ,
        "PYTHONPATH": os.getcwd(),
        "BDX_DATABASE_URL": settings.db_url,
        "BDX_DATA_DIR": str(settings.data_dir),
    }
    with subprocess.Popen(
        [*BDX, "gallery", "load", str(root), "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    ) as proc:
        deadline = time.monotonic() + 120
        while active_count(session) == 0:  # kill once some batches are in, mid-load
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no batch was loaded in time"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    partial = active_count(session)
    assert 0 < partial < TOTAL

    resumed = load(env, root)
    assert resumed["failed"] == []
    assert resumed["enrolled"] == TOTAL - partial
    assert resumed["skipped"] == partial

    repeated = load(env, root)
    assert (repeated["enrolled"], repeated["skipped"]) == (0, TOTAL)

    session.expire_all()
    rows = session.execute(select(TemplateRecord.reference, TemplateRecord.state)).all()
    assert {state for _, state in rows} == {RecordState.ACTIVE}
    with GallerySet.open(settings.gallery_path) as galleries:
        in_gallery = galleries.references()
    assert {ref for ref, _ in rows} == in_gallery
    assert len(in_gallery) == TOTAL
