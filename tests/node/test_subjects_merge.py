"""``bdx subjects merge KEEP DUPLICATE`` and ``POST /subjects/{keep}/merge``: an operator
merges a duplicate enrolment into the subject kept, through a running node."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from node_support import bearer, cli, enrol
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

import node.services.merging as merging_service
import node.services.subjects as subjects_service
from matcher.face.template import FaceTemplate
from node.db.models import AuditEvent, Encounter, Modality, RecordState, Role, Subject
from node.exchange.references import HitReferences
from node.exchange.responder import Probe
from node.exchange.search import GallerySearch, RecordRestrictions
from node.repositories.records import RecordRepository
from node.restrictions import SharingRestrictions
from node.services.enrolment import Capture, EnrolmentService, Extracted
from node.services.erasure import finish_deletions
from node.services.galleries import GallerySet, subject_key
from node.settings import Settings
from policy.restrictions import parse_restrictions

#: Subjects enrolled with one random face each besides ``keep`` and ``dup``.
OTHERS = 8


def _face(rng: np.random.Generator) -> FaceTemplate:
    v = rng.standard_normal(128)
    return FaceTemplate((v / np.linalg.norm(v)).astype(np.float32), 90)


def _enrol_face(
    sessions: sessionmaker[Session],
    galleries: GallerySet,
    subject: str,
    face: FaceTemplate,
    restrictions: SharingRestrictions | None = None,
) -> None:
    capture = Capture(
        subject,
        Modality.FACE,
        b"",
        source=f"visa-{subject}",
        restrictions=restrictions or SharingRestrictions(),
    )
    with sessions() as s:
        EnrolmentService(s, galleries).enrol_extracted(
            [Extracted(capture, face, face.quality)], actor="test"
        )


@pytest.fixture
def faces(sessions: sessionmaker[Session], galleries: GallerySet) -> dict[str, FaceTemplate]:
    """``keep`` and ``dup`` (two faces of different people, as the test needs only that a probe
    of the duplicate's face finds it), ``dup`` also with two fingerprint records, others."""
    rng = np.random.default_rng(3)
    found = {name: _face(rng) for name in ["keep", "dup", *(f"other-{i}" for i in range(OTHERS))]}
    for name, face in found.items():
        limited = SharingRestrictions(peers=["MY"]) if name == "dup" else None
        asylum = SharingRestrictions(asylum_nationality="SY") if name == "keep" else None
        _enrol_face(sessions, galleries, name, face, limited or asylum)
    enrol(sessions, galleries, "dup", 2)
    return found


@pytest.fixture
def operator(
    live_server: str,
    make_token: object,
    faces: dict[str, FaceTemplate],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> list[str]:
    monkeypatch.delenv("BDX_TOKEN", raising=False)
    path = tmp_path / "token"
    path.write_text(make_token(Role.OPERATOR) + "\n")  # type: ignore[operator]
    return ["--url", live_server, "--token-file", str(path)]


def _id(sessions: sessionmaker[Session], external_id: str) -> int | None:
    with sessions() as s:
        return s.scalar(select(Subject.id).where(Subject.external_id == external_id))


def _search(url: str, officer: str, face: FaceTemplate) -> str:
    probe = {"template": base64.b64encode(face.to_bytes()).decode(), "k": 1}
    found = httpx.post(url + "/search/face", json=probe, headers=bearer(officer), timeout=30)
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["hit"] is True
    return str(body["candidates"][0]["subject"])


def test_merge_moves_records_encounters_and_hit_references_to_keep(
    operator: list[str],
    faces: dict[str, FaceTemplate],
    make_token: object,
    engine: Engine,
    sessions: sessionmaker[Session],
    galleries: GallerySet,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = operator[1]
    officer = make_token(Role.OFFICER)  # type: ignore[operator]
    assert _search(url, officer, faces["dup"]) == "dup"
    keep_id, dup_id = _id(sessions, "keep"), _id(sessions, "dup")
    assert keep_id is not None and dup_id is not None
    hits = HitReferences(engine, secrets.token_bytes(32))
    reference = hits.issue(uuid.uuid4(), "TH", subject_key(dup_id))
    args = ["subjects", "merge", "keep", "dup", "--yes", "--json", *operator]
    code, out, err = cli(args, capsys)
    assert code == 0, err
    assert json.loads(out) == {
        "keep": "keep",
        "duplicate": "dup",
        "records": 3,
        "encounters": 2,
        "hit_references": 1,
    }
    # the duplicate is gone, its id never given again; keep holds everything
    assert _id(sessions, "dup") is None
    code, _, err = cli(["subjects", "show", "dup", *operator], capsys)
    assert code == 4 and "[unknown_subject]" in err
    code, out, err = cli(["subjects", "show", "keep", "--json", *operator], capsys)
    shown = json.loads(out)
    assert code == 0 and len(shown["records"]) == 4 and len(shown["encounters"]) == 3
    assert {r["state"] for r in shown["records"]} == {"active"}
    with sessions() as s:
        owners = set(s.scalars(select(Encounter.subject_id)))
    assert dup_id not in owners
    # the duplicate's face is found as keep's, by the search the node serves
    assert _search(url, officer, faces["dup"]) == "keep"
    assert _search(url, officer, faces["keep"]) == "keep"
    assert len(galleries.references()) == OTHERS + 4
    # a hit reference issued on the duplicate resolves to keep
    code, out, err = cli(["subjects", "reference", reference, "--json", *operator], capsys)
    assert code == 0, err
    assert json.loads(out)["subject"] == "keep"
    # restrictions: each record keeps its own, so keep is shared only as both allow
    restrictions = {
        (r["restrictions"]["asylum_nationality"], tuple(r["restrictions"]["peers"] or ()))
        for r in shown["records"]
    }
    assert restrictions == {("SY", ()), (None, ("MY",)), (None, ())}
    combined = RecordRestrictions(engine)([subject_key(keep_id)])[0]
    assert combined == parse_restrictions(["asylum_nationality:SY", "peers:MY"])
    with sessions() as s:
        events = list(s.scalars(select(AuditEvent).where(AuditEvent.action == "subject.merge")))
    assert [(e.target, e.details["duplicate"]) for e in events] == [("keep", "dup")]  # type: ignore[index]


def test_a_subject_enrolled_after_the_merge_gets_a_new_id(
    operator: list[str],
    sessions: sessionmaker[Session],
    galleries: GallerySet,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dup_id = _id(sessions, "dup")
    code, _, err = cli(["subjects", "merge", "keep", "dup", "-y", *operator], capsys)
    assert code == 0, err
    enrol(sessions, galleries, "dup", 1)
    again = _id(sessions, "dup")
    assert dup_id is not None and again is not None and again > dup_id


def test_refusals_change_nothing(
    operator: list[str],
    make_token: object,
    sessions: sessionmaker[Session],
    galleries: GallerySet,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = galleries.references()
    code, _, err = cli(["subjects", "merge", "keep", "keep", "-y", *operator], capsys)
    assert code == 2 and "merged into itself" in err
    url, token = operator[1], Path(operator[3]).read_text().strip()
    same = httpx.post(
        url + "/subjects/keep/merge", json={"duplicate": "keep"}, headers=bearer(token)
    )
    assert same.status_code == 422 and same.json()["error"] == "same_subject"
    code, _, err = cli(["subjects", "merge", "keep", "ghost", "-y", *operator], capsys)
    assert code == 4 and "[unknown_subject]" in err
    code, _, err = cli(["subjects", "merge", "ghost", "dup", "-y", *operator], capsys)
    assert code == 4 and "[unknown_subject]" in err
    code, _, err = cli(["subjects", "merge", "keep", "dup", *operator], capsys)
    assert code == 2 and "[confirmation_needed]" in err  # not a terminal, no --yes
    officer = make_token(Role.OFFICER)  # type: ignore[operator]
    refused = httpx.post(
        url + "/subjects/keep/merge", json={"duplicate": "dup"}, headers=bearer(officer)
    )
    assert refused.status_code == 403
    code, _, err = cli(
        ["subjects", "merge", "keep", "dup", "-y", *operator[:2], "--token", officer], capsys
    )
    assert code == 5 and "[wrong_role]" in err
    assert _id(sessions, "dup") is not None and galleries.references() == before
    with sessions() as s:
        assert s.scalar(select(AuditEvent).where(AuditEvent.action == "subject.merge")) is None


def test_a_subject_being_deleted_is_not_merged(
    operator: list[str], sessions: sessionmaker[Session], capsys: pytest.CaptureFixture[str]
) -> None:
    dup_id = _id(sessions, "dup")
    assert dup_id is not None
    with sessions() as s:  # as a deletion whose gallery write failed leaves it
        rows = RecordRepository(s).of_subject(dup_id)
        RecordRepository(s).set_state([rows[0].reference], RecordState.DELETING)
        s.commit()
    code, _, err = cli(["subjects", "merge", "keep", "dup", "-y", *operator], capsys)
    assert code == 3 and "[subject_busy]" in err
    code, out, _ = cli(["subjects", "show", "keep", "--json", *operator], capsys)
    assert len(json.loads(out)["records"]) == 1


def test_an_encounter_of_both_subjects_becomes_one(
    operator: list[str],
    faces: dict[str, FaceTemplate],
    sessions: sessionmaker[Session],
    galleries: GallerySet,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rng = np.random.default_rng(8)
    for name in ("keep", "dup"):
        capture = Capture(name, Modality.FACE, b"", encounter="booking-7")
        face = _face(rng)
        with sessions() as s:
            EnrolmentService(s, galleries).enrol_extracted(
                [Extracted(capture, face, face.quality)], actor="test"
            )
    code, out, err = cli(["subjects", "merge", "keep", "dup", "-y", "--json", *operator], capsys)
    assert code == 0, err
    assert json.loads(out)["records"] == 4 and json.loads(out)["encounters"] == 2
    code, out, _ = cli(["subjects", "show", "keep", "--json", *operator], capsys)
    encounters = [e["external_id"] for e in json.loads(out)["encounters"]]
    assert sorted(e or "" for e in encounters).count("booking-7") == 1
    assert len(json.loads(out)["records"]) == 6


def test_a_duplicate_whose_templates_the_gallery_lost_is_not_merged(
    operator: list[str],
    sessions: sessionmaker[Session],
    galleries: GallerySet,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dup_id = _id(sessions, "dup")
    assert dup_id is not None
    with sessions() as s:
        lost = RecordRepository(s).of_subject(dup_id)[0].reference
    galleries.remove([lost])  # the gallery lost it; the database still has the record
    before = galleries.references()
    code, _, err = cli(["subjects", "merge", "keep", "dup", "-y", *operator], capsys)
    assert code == 7 and "[missing_from_gallery]" in err
    assert galleries.references() == before and _id(sessions, "dup") == dup_id


@contextmanager
def _merge_held_at_commit(
    url: str, token: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[threading.Event, list[httpx.Response]]]:
    """A merge of ``dup`` into ``keep`` over the API, held just before its commit step (step 3:
    the window is widened, no logic replaced) until the yielded event is set or the block
    ends; yields that event and the list the merge's answer is put in once it has ended."""
    at_commit, go = threading.Event(), threading.Event()
    commit = merging_service._merge_commit

    def paused(*args: Any, **kwargs: Any) -> tuple[int, int]:
        at_commit.set()
        assert go.wait(30)
        return commit(*args, **kwargs)

    monkeypatch.setattr(merging_service, "_merge_commit", paused)
    merged: list[httpx.Response] = []
    merging = threading.Thread(
        target=lambda: merged.append(
            httpx.post(
                url + "/subjects/keep/merge",
                json={"duplicate": "dup"},
                headers=bearer(token),
                timeout=60,
            )
        )
    )
    merging.start()
    try:
        assert at_commit.wait(30)
        yield go, merged
    finally:
        go.set()
        merging.join()


def test_a_restriction_set_on_the_duplicate_during_a_merge_goes_to_the_copies(
    operator: list[str],
    engine: Engine,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A restriction set on the duplicate between the merge's copies (step 1, restrictions
    read then) and its commit was lost: KEEP's copies kept the older, looser ones."""
    url, token = operator[1], Path(operator[3]).read_text().strip()
    with _merge_held_at_commit(url, token, monkeypatch) as (_, merged):
        restricted = httpx.put(
            url + "/subjects/dup/restrictions",
            json={"no_exchange_consent": True},
            headers=bearer(token),
            timeout=30,
        )
        assert restricted.status_code == 200, restricted.text
    assert merged[0].status_code == 200, merged[0].text
    keep_id = _id(sessions, "keep")
    assert keep_id is not None
    with sessions() as s:
        rows = RecordRepository(s).of_subject(keep_id)
        consent = [r.restrictions.get("no_exchange_consent") for r in rows]
    assert sorted(map(bool, consent)) == [False, True, True, True]
    combined = RecordRestrictions(engine)([subject_key(keep_id)])[0]
    assert combined.no_exchange_consent


def _block_removals(galleries: GallerySet) -> list[Path]:
    """Make each gallery's next write fail (EISDIR), as a full or read-only disk would."""
    blockers = []
    for gallery in galleries.galleries().values():
        blocker = gallery.directory / f"tomb-{gallery.generation + 1:010d}.npy"
        blocker.mkdir()
        blockers.append(blocker)
    return blockers


def test_a_merge_whose_gallery_removal_fails_leaves_the_duplicate_out_of_every_search(
    operator: list[str],
    faces: dict[str, FaceTemplate],
    engine: Engine,
    sessions: sessionmaker[Session],
    galleries: GallerySet,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The duplicate's old records were settled although the gallery still held them: a
    peer's search returned the duplicate first and then dropped it (a false no-hit)."""
    commit = merging_service._merge_commit
    blockers: list[Path] = []

    def then_the_disk_fails(*args: Any, **kwargs: Any) -> tuple[int, int]:
        done = commit(*args, **kwargs)
        blockers.extend(_block_removals(galleries))
        return done

    monkeypatch.setattr(merging_service, "_merge_commit", then_the_disk_fails)
    keep_id = _id(sessions, "keep")
    code, _, err = cli(["subjects", "merge", "keep", "dup", "-y", *operator], capsys)
    # a peer's search finds keep, never the duplicate's old records
    found = GallerySearch(galleries)(Probe("face", face=faces["dup"]), 1, 1e-3)
    assert [c.record_ref for c in found] == [subject_key(keep_id or 0)]
    assert (code, len(err.splitlines())) == (7, 1) and err.endswith(" [storage_error]\n"), err
    assert "'dup' was merged into 'keep'" in err and "do not merge again" in err
    with sessions() as s:
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == "subject.merge"))
    assert event is not None
    # the duplicate is being deleted: not restricted (its restrictions would go with it)
    token = Path(operator[3]).read_text().strip()
    refused = httpx.put(
        operator[1] + "/subjects/dup/restrictions",
        json={"no_exchange_consent": True},
        headers=bearer(token),
    )
    assert refused.status_code == 409 and refused.json()["error"] == "subject_deleting"
    restrict = ["subjects", "restrict", "dup", "--restrictions", '{"no_exchange_consent": true}']
    code, _, err = cli([*restrict, *operator], capsys)
    assert code == 3 and "[subject_deleting]" in err and "was merged into another" in err, err
    for blocker in blockers:
        blocker.rmdir()
    assert finish_deletions(galleries, sessions) == 3  # the running node's erasure task
    assert _id(sessions, "dup") is None
    assert not galleries.unsettled()


#: Runs a merge of ``dup`` into ``keep`` that stops after its step 2 (copies committed pending
#: and appended to the gallery) and waits there to be killed.
_CRASHING_MERGE = """
import sys, time
from pathlib import Path
import node.services.merging as merging
from node.db.engine import create_db_engine, session_factory
from node.services.galleries import GallerySet

def hang(*args, **kwargs):
    print("ready", flush=True)
    time.sleep(600)

merging._merge_commit = hang
sessions = session_factory(create_db_engine(sys.argv[1]))
with GallerySet.open(Path(sys.argv[2])) as galleries, sessions() as session:
    merging.merge_subjects(session, galleries, "keep", "dup", actor="user:op")
"""


def test_a_merge_killed_before_its_commit_is_undone_by_reconcile(
    node_env: Settings,
    engine: Engine,
    sessions: sessionmaker[Session],
    db_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Reconcile activated the copies of a merge killed between its gallery copy and its
    commit: both subjects stayed live, and deleting the duplicate (the advice then) lost its
    hit references and encounters. Now nothing is merged and the merge is run again."""
    rng = np.random.default_rng(5)
    faces = {name: _face(rng) for name in ("keep", "dup", "other")}
    with GallerySet.open(node_env.gallery_path) as galleries:
        for name, face in faces.items():
            _enrol_face(sessions, galleries, name, face)
        enrol(sessions, galleries, "dup", 2)
        before = galleries.references()
    dup_id = _id(sessions, "dup")
    assert dup_id is not None
    hits = HitReferences(engine, secrets.token_bytes(32))
    reference = hits.issue(uuid.uuid4(), "TH", subject_key(dup_id))
    script = tmp_path / "crashing_merge.py"
    script.write_text(_CRASHING_MERGE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    worker = subprocess.Popen(
        [sys.executable, str(script), db_url, str(node_env.gallery_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
    finally:
        worker.kill()
        worker.wait()
        if worker.stdout is not None:
            worker.stdout.close()
    code, _, err = cli(["gallery", "reconcile"], capsys)  # as bdx serve's start-up
    assert code == 0, err
    keep_id = _id(sessions, "keep")
    assert keep_id is not None and _id(sessions, "dup") == dup_id
    with sessions() as s:
        kept = RecordRepository(s).of_subject(keep_id)
        duplicate = RecordRepository(s).of_subject(dup_id)
    assert len(kept) == 1 and len(duplicate) == 3
    assert {r.state for r in [*kept, *duplicate]} == {RecordState.ACTIVE}
    with GallerySet.open(node_env.gallery_path) as galleries:
        assert galleries.references() == before  # the copies are gone from the gallery too
        done = merge_subjects_service(sessions, galleries)  # run again, as the README says
        assert (done.records, done.encounters, done.hit_references) == (3, 2, 1)
        found = GallerySearch(galleries)(Probe("face", face=faces["dup"]), 1, 1e-3)
    assert [c.record_ref for c in found] == [subject_key(keep_id)]
    with sessions() as s:
        assert all(r.merge_of is None for r in RecordRepository(s).of_subject(keep_id))
    resolved = hits.resolve(reference)
    assert resolved is not None and resolved[0] == subject_key(keep_id)


def merge_subjects_service(
    sessions: sessionmaker[Session], galleries: GallerySet
) -> merging_service.MergeResult:
    with sessions() as s:
        return merging_service.merge_subjects(s, galleries, "keep", "dup", actor="user:op")


def test_a_restriction_read_before_the_merge_holds_the_subject_until_it_is_written(
    operator: list[str],
    engine: Engine,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On SQLite the subject's row lock did nothing and the driver read outside the
    transaction: a restriction of the duplicate that had read its records (all active) wrote
    them after the merge committed, answered 200, and KEEP's copies stayed unrestricted."""
    url, token = operator[1], Path(operator[3]).read_text().strip()
    read, go = threading.Event(), threading.Event()
    check = subjects_service._restrictable

    def paused(*args: Any, **kwargs: Any) -> Any:  # widens the read-to-write window only
        left = check(*args, **kwargs)
        read.set()
        go.wait(30)
        return left

    monkeypatch.setattr(subjects_service, "_restrictable", paused)
    answers: dict[str, httpx.Response] = {}
    restricting = threading.Thread(
        target=lambda: answers.setdefault(
            "restrict",
            httpx.put(
                url + "/subjects/dup/restrictions",
                json={"no_exchange_consent": True},
                headers=bearer(token),
                timeout=60,
            ),
        )
    )
    merging = threading.Thread(
        target=lambda: answers.setdefault(
            "merge",
            httpx.post(
                url + "/subjects/keep/merge",
                json={"duplicate": "dup"},
                headers=bearer(token),
                timeout=60,
            ),
        )
    )
    restricting.start()
    try:
        assert read.wait(30)
        merging.start()
        merging.join(3)  # the merge waits for the restriction (it ended here before)
    finally:
        go.set()
        restricting.join()
        merging.join()
    assert answers["restrict"].status_code == 200, answers["restrict"].text
    assert answers["merge"].status_code == 200, answers["merge"].text
    keep_id = _id(sessions, "keep")
    assert keep_id is not None
    with sessions() as s:
        rows = RecordRepository(s).of_subject(keep_id)
        consent = [bool(r.restrictions.get("no_exchange_consent")) for r in rows]
    assert sorted(consent) == [False, True, True, True]
    assert RecordRestrictions(engine)([subject_key(keep_id)])[0].no_exchange_consent


def test_a_restriction_set_on_keep_during_a_merge_is_kept_on_the_copies(
    operator: list[str],
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A restriction of KEEP between the merge's copies (step 1) and its commit covered the
    pending copies (200, listed in the answer), then the commit gave the copies the
    duplicate's restrictions again: KEEP's records were shareable with other peers."""
    url, token = operator[1], Path(operator[3]).read_text().strip()
    with _merge_held_at_commit(url, token, monkeypatch) as (_, merged):
        restricted = httpx.put(
            url + "/subjects/keep/restrictions",
            json={"peers": ["FR"]},
            headers=bearer(token),
            timeout=30,
        )
        assert restricted.status_code == 200, restricted.text
        assert len(restricted.json()["records"]) == 4  # its own and the three copies
    assert merged[0].status_code == 200, merged[0].text
    keep_id = _id(sessions, "keep")
    assert keep_id is not None
    with sessions() as s:
        rows = RecordRepository(s).of_subject(keep_id)
        peers = sorted(json.dumps(r.restrictions.get("peers")) for r in rows)
    # each copy as both allow: the face's peers MY and FR (none), the fingerprints' FR
    assert peers == ['["FR"]', '["FR"]', '["FR"]', "[]"]


def test_a_search_while_the_merge_waits_for_its_locks_finds_the_duplicate(
    operator: list[str],
    engine: Engine,
    faces: dict[str, FaceTemplate],
    sessions: sessionmaker[Session],
    galleries: GallerySet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The duplicate's old records left every search before step 3 took its locks: while it
    waited (KEEP restricted meanwhile, say), a search for the person found nobody."""
    url, token = operator[1], Path(operator[3]).read_text().strip()
    keep_id, dup_id = _id(sessions, "keep"), _id(sessions, "dup")
    assert keep_id is not None and dup_id is not None

    def search() -> list[str]:
        found = GallerySearch(galleries)(Probe("face", face=faces["dup"]), 1, 1e-3)
        return [c.record_ref for c in found]

    with (
        _merge_held_at_commit(url, token, monkeypatch) as (go, merged),
        engine.connect() as holder,
        holder.begin() as held,
    ):
        # KEEP's row lock (PostgreSQL) or the write lock (SQLite), as a restriction holds it
        holder.execute(
            text("UPDATE subjects SET created_at = created_at WHERE id = :id"), {"id": keep_id}
        )
        go.set()
        time.sleep(1)  # step 3 waits for the lock
        assert search() == [subject_key(dup_id)]
        held.rollback()
    assert merged[0].status_code == 200, merged[0].text
    assert search() == [subject_key(keep_id)]
