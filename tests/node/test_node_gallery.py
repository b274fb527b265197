"""Enrolment from images into the real gallery store: HTTP (`POST /gallery/enrol`) and
`bdx gallery load/stats/reconcile`, on synthetic fingerprints and a public-domain portrait."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from node_support import TestClient, bearer, cli
from PIL import Image
from skimage import data as skdata
from sqlalchemy import Engine

from matcher.synthetic import make_impression, make_master
from node.api.app import create_app
from node.db.models import Role
from node.services.galleries import GallerySet
from node.settings import Settings


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def finger_png() -> bytes:
    return png(make_impression(make_master(7), 0))


@pytest.fixture(scope="module")
def face_png() -> bytes:
    return png(skdata.astronaut())


@pytest.fixture
def operator(make_token: object) -> dict[str, str]:
    return bearer(make_token(Role.OPERATOR, name="op"))  # type: ignore[operator]


def enrol(client: TestClient, headers: dict[str, str], body: bytes, **params: object):  # type: ignore[no-untyped-def]
    return client.post("/gallery/enrol", headers=headers, params=params, content=body)


def test_enrol_a_fingerprint_then_delete_it(
    client: TestClient, operator: dict[str, str], finger_png: bytes, galleries: GallerySet
) -> None:
    r = enrol(
        client,
        operator,
        finger_png,
        subject="case-9",
        modality="fingerprint",
        finger_position=2,
        source="desk-1",
    )
    assert r.status_code == 201, r.text
    (record,) = r.json()["records"]
    assert (record["state"], record["finger_position"], record["source"]) == ("active", 2, "desk-1")
    assert record["format"] == "bdx-mcc-lssr" and 0 <= record["quality"] <= 100
    assert galleries.references() == {record["reference"]}
    stats = client.get("/gallery/statistics", headers=operator).json()
    (store,) = stats["stores"].values()
    assert store["records"] == 1 and stats["active_by_finger_position"] == {"2": 1}
    assert client.delete("/subjects/case-9", headers=operator).json()["templates_removed"] == 1
    assert galleries.references() == set()


def _blocked(folder: Path, name: str) -> Path:
    """A folder at ``name``, where the gallery's next write renames its file: that write fails
    (EISDIR), as writes into a gallery the node may not write fail, root's included."""
    blocker = folder / name
    blocker.mkdir()
    return blocker


def test_an_unwritable_gallery_is_503_and_a_retried_deletion_finishes(
    client: TestClient, operator: dict[str, str], finger_png: bytes, galleries: GallerySet
) -> None:
    """The OSError was a 500; and a deletion whose gallery write failed left its rows flagged,
    every retry answering 404 "another deletion holds them" until the node restarted."""
    params = {"modality": "fingerprint", "finger_position": 2}
    assert enrol(client, operator, finger_png, subject="case-9", **params).status_code == 201
    (gallery,) = galleries.galleries().values()
    body = json.loads((gallery.directory / "MANIFEST.json").read_bytes())["body"]
    blocker = _blocked(gallery.directory, f"seg-{body['next_segment']:08d}.ref.npy")
    r = enrol(client, operator, finger_png, subject="case-10", **params)
    assert (r.status_code, r.json()["error"]) == (503, "storage_error"), r.text
    assert client.get("/subjects/case-10", headers=operator).status_code == 404
    blocker.rmdir()
    blocker = _blocked(gallery.directory, f"tomb-{gallery.generation + 1:010d}.npy")
    for _ in range(2):  # the retry redoes the gallery step
        r = client.delete("/subjects/case-9", headers=operator)
        assert (r.status_code, r.json()["error"]) == (503, "storage_error"), r.text
    blocker.rmdir()
    r = client.delete("/subjects/case-9", headers=operator)
    assert (r.status_code, r.json()["templates_removed"]) == (200, 1), r.text
    assert client.get("/subjects/case-9", headers=operator).status_code == 404
    assert galleries.references() == set()


def test_a_subject_whose_deletion_failed_shows_it_pending(
    client: TestClient, operator: dict[str, str], finger_png: bytes, galleries: GallerySet
) -> None:
    """GET /subjects/{id} and the listing showed the subject of a deletion that answered 503
    as an enrolled one, with nothing saying its deletion had begun, until a retry finished it."""
    params = {"modality": "fingerprint", "finger_position": 2}
    for subject in ("case-9", "case-10"):
        assert enrol(client, operator, finger_png, subject=subject, **params).status_code == 201
    (gallery,) = galleries.galleries().values()
    blocker = _blocked(gallery.directory, f"tomb-{gallery.generation + 1:010d}.npy")
    r = client.delete("/subjects/case-9", headers=operator)
    assert (r.status_code, r.json()["error"]) == (503, "storage_error"), r.text
    shown = client.get("/subjects/case-9", headers=operator).json()
    assert shown["state"] == "deleting"
    assert [record["state"] for record in shown["records"]] == ["deleting"]
    assert client.get("/subjects/case-10", headers=operator).json()["state"] == "active"
    listed = client.get("/subjects", headers=operator).json()["items"]
    assert [(s["external_id"], s["state"]) for s in listed] == [
        ("case-9", "deleting"),
        ("case-10", "active"),
    ]
    blocker.rmdir()
    assert client.delete("/subjects/case-9", headers=operator).status_code == 200
    assert client.get("/subjects/case-9", headers=operator).status_code == 404


def test_a_segment_the_node_cannot_read_back_is_503(
    client: TestClient, operator: dict[str, str], finger_png: bytes, galleries: GallerySet
) -> None:
    """The node reads every segment again at each commit: one it cannot read (ELOOP here;
    EACCES, EIO alike) is its storage failing, 503 storage_error, not the request's fault."""
    params = {"modality": "fingerprint", "finger_position": 2}
    assert enrol(client, operator, finger_png, subject="case-9", **params).status_code == 201
    (gallery,) = galleries.galleries().values()
    (segment,) = gallery.directory.glob("seg-*.ref.npy")
    segment.unlink()
    segment.symlink_to(segment.name)
    r = enrol(client, operator, finger_png, subject="case-10", **params)
    assert (r.status_code, r.json()["error"]) == (503, "storage_error"), r.text
    assert "unreadable_gallery_file" in r.json()["detail"]
    r = client.delete("/subjects/case-9", headers=operator)
    assert (r.status_code, r.json()["error"]) == (503, "storage_error"), r.text


def test_a_tombstone_file_of_garbage_is_503(
    client: TestClient, operator: dict[str, str], finger_png: bytes, galleries: GallerySet
) -> None:
    """Every commit reads the tombstone file back: one holding no .npy array raised np.load's
    ValueError, a 500 with a traceback in the log; it is the node's storage failing."""
    params = {"modality": "fingerprint", "finger_position": 2}
    for subject in ("case-8", "case-9"):
        assert enrol(client, operator, finger_png, subject=subject, **params).status_code == 201
    assert client.delete("/subjects/case-8", headers=operator).status_code == 200
    (gallery,) = galleries.galleries().values()
    (tombstones,) = gallery.directory.glob("tomb-*.npy")
    tombstones.write_bytes(b"not an array at all\n")
    r = enrol(client, operator, finger_png, subject="case-10", **params)
    assert (r.status_code, r.json()["error"]) == (503, "storage_error"), r.text
    assert "bad_tombstones" in r.json()["detail"] and tombstones.name in r.json()["detail"]


def test_enrol_a_face(
    client: TestClient, operator: dict[str, str], face_png: bytes, galleries: GallerySet
) -> None:
    r = enrol(client, operator, face_png, subject="case-1", modality="face")
    assert r.status_code == 201, r.text
    (record,) = r.json()["records"]
    assert record["modality"] == "face" and record["finger_position"] is None
    assert any(name.startswith("face-") for name in galleries.galleries())


@pytest.mark.parametrize(
    ("body", "params", "status", "reason"),
    [
        (b"", {"subject": "s", "modality": "face"}, 422, "empty_body"),
        (b"not an image at all", {"subject": "s", "modality": "fingerprint"}, 422, "not_an_image"),
        (
            png(np.full((300, 300), 200, np.uint8)),
            {"subject": "s", "modality": "fingerprint"},
            422,
            "no_ridge_area",
        ),
        (b"x", {"subject": "s", "modality": "face", "finger_position": 1}, 422, "bad_position"),
        (b"x", {"modality": "face"}, 422, "invalid_request"),
        (b"x", {"subject": "a/b", "modality": "face"}, 422, "invalid_request"),
        (b"x", {"subject": " padded", "modality": "face"}, 422, "invalid_request"),
        (b"x", {"subject": "s", "modality": "iris"}, 422, "invalid_request"),
        (
            b"x",
            {"subject": "s", "modality": "fingerprint", "finger_position": 11},
            422,
            "invalid_request",
        ),
    ],
)
def test_enrol_refusals(
    client: TestClient,
    operator: dict[str, str],
    galleries: GallerySet,
    body: bytes,
    params: dict[str, object],
    status: int,
    reason: str,
) -> None:
    r = enrol(client, operator, body, **params)
    assert (r.status_code, r.json()["error"]) == (status, reason), r.text
    assert r.json()["detail"]
    assert galleries.references() == set()


def test_enrol_upload_limit(
    settings: Settings, engine: Engine, galleries: GallerySet, make_token: object
) -> None:
    small = settings.model_copy(update={"max_upload_bytes": 1000})
    headers = bearer(make_token(Role.OPERATOR))  # type: ignore[operator]
    with TestClient(create_app(small, engine=engine, gallery=galleries)) as c:
        r = enrol(c, headers, b"x" * 1001, subject="s", modality="face")
    assert (r.status_code, r.json()["error"]) == (413, "payload_too_large")


def test_enrol_needs_operator(client: TestClient, make_token: object) -> None:
    officer = bearer(make_token(Role.OFFICER))  # type: ignore[operator]
    r = enrol(client, officer, b"x", subject="s", modality="face")
    assert (r.status_code, r.json()["error"]) == (403, "wrong_role")


def test_gallery_load_stats_and_reconcile(
    node_env: Settings,
    engine: Engine,
    tmp_path: Path,
    finger_png: bytes,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / "batch"
    for subject in ("p-1", "p-2"):
        (root / subject).mkdir(parents=True)
        (root / subject / "index.png").write_bytes(finger_png)
    (root / "p-2" / "broken.png").write_bytes(b"\x89PNG broken")
    (root / "p-2" / "notes.txt").write_text("ignored")
    code, out, _ = cli(
        [
            "gallery",
            "load",
            str(root),
            "--modality",
            "fingerprint",
            "--finger-position",
            "2",
            "--json",
        ],
        capsys,
    )
    report = json.loads(out)
    assert code == 3  # one image failed; the others are enrolled
    assert (report["enrolled"], report["subjects"]) == (2, 2)
    assert [(f["file"], f["error"]) for f in report["failed"]] == [
        ("p-2/broken.png", "not_an_image")
    ]

    code, out, _ = cli(["gallery", "stats", "--json"], capsys)
    (store,) = json.loads(out).values()
    assert (code, store["records"]) == (0, 2)
    code, out, _ = cli(["gallery", "reconcile", "--json"], capsys)
    assert code == 0 and not any(json.loads(out).values())
    code, out, _ = cli(["gallery", "upgrade", "--json"], capsys)
    assert (code, json.loads(out)) == (0, {name: 0 for name in json.loads(out)})  # current
    assert len(json.loads(out)) == 1


def test_gallery_commands_refuse_a_database_without_the_gallerys_records(
    node_env: Settings,
    tmp_path: Path,
    finger_png: bytes,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another (here empty) database: load and reconcile removed the whole gallery, exit 0."""
    from node_support import enrol as enrol_records

    from node.db.engine import create_db_engine, session_factory

    engine = create_db_engine(node_env.db_url)
    try:
        with GallerySet.open(node_env.gallery_path) as galleries:
            enrol_records(session_factory(engine), galleries, "case-1", 3)
    finally:
        engine.dispose()
    monkeypatch.setenv("BDX_DATABASE_URL", f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
    for command in (_one_image_load(tmp_path, finger_png), ["gallery", "reconcile"]):
        code, _, err = cli(command, capsys)
        assert code == 7 and err.count("\n") == 1 and "[too_many_orphans]" in err, err
    code, out, _ = cli(["gallery", "stats", "--json"], capsys)
    assert [s["records"] for s in json.loads(out).values()] == [3]
    code, out, _ = cli(["gallery", "reconcile", "--remove-orphans", "--json"], capsys)
    assert code == 0 and len(json.loads(out)["orphans_removed"]) == 3


def _one_image_load(tmp_path: Path, finger_png: bytes) -> list[str]:
    """The `bdx gallery load` arguments for a batch folder of one subject with one image."""
    (tmp_path / "b" / "p-1").mkdir(parents=True)
    (tmp_path / "b" / "p-1" / "x.png").write_bytes(finger_png)
    return ["gallery", "load", str(tmp_path / "b"), "--modality", "fingerprint"]


def test_gallery_load_refused_while_a_server_holds_the_gallery(
    node_env: Settings,
    engine: Engine,
    tmp_path: Path,
    finger_png: bytes,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cli(_one_image_load(tmp_path, finger_png), capsys)
    with GallerySet.open(node_env.gallery_path):
        code, _, err = cli(["gallery", "reconcile"], capsys)
    assert code == 7 and "[gallery_locked]" in err


def test_a_load_is_refused_while_a_server_holds_an_empty_gallery_set(
    node_env: Settings,
    engine: Engine,
    tmp_path: Path,
    finger_png: bytes,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A node started on an empty data_dir has no gallery yet: a load then created one the
    node never saw (its searches answered no_hit for people enrolled). The set's own lock
    refuses the load until the node stops."""
    load = _one_image_load(tmp_path, finger_png)
    with GallerySet.open(node_env.gallery_path) as serving:
        assert serving.galleries() == {}
        code, _, err = cli(load, capsys)
        assert code == 7 and "[gallery_locked]" in err
        assert [p.name for p in node_env.gallery_path.iterdir()] == ["LOCK"]  # no gallery made
    code, _, _ = cli(load, capsys)
    assert code == 0
    with GallerySet.open(node_env.gallery_path):  # stats only reads: it works beside a node
        code, out, _ = cli(["gallery", "stats", "--json"], capsys)
    (store,) = json.loads(out).values()
    assert (code, store["records"], store["deleted"]) == (0, 1, 0)


def test_gallery_load_missing_directory(
    node_env: Settings, engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(["gallery", "load", str(tmp_path / "nope"), "--modality", "face"], capsys)
    assert code == 4 and "[file_not_found]" in err


def test_gallery_set_lock_lets_searches_overlap_and_writers_wait() -> None:
    import threading
    import time

    from node.services.galleries import ReadWriteLock

    lock = ReadWriteLock()
    inside = threading.Barrier(2, timeout=5)

    def reader() -> None:
        with lock.reading():
            inside.wait()  # both readers are inside at once, or this times out

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in readers:
        t.start()
    for t in readers:
        t.join(5)
    assert not inside.broken

    order: list[str] = []
    reading = threading.Event()

    def long_reader() -> None:
        with lock.reading():
            reading.set()
            time.sleep(0.2)
            order.append("reader done")

    def writer() -> None:
        with lock.writing():
            order.append("writer")

    def late_reader() -> None:
        with lock.reading():
            order.append("late reader")

    first = threading.Thread(target=long_reader)
    first.start()
    reading.wait(5)
    w = threading.Thread(target=writer)
    w.start()
    time.sleep(0.05)  # the writer is waiting for the first reader
    late = threading.Thread(target=late_reader)
    late.start()
    for t in (first, w, late):
        t.join(5)
    # the writer waited for the reader inside, and held back the reader that came after it
    assert order == ["reader done", "writer", "late reader"]


def test_searches_go_on_while_a_merge_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merge after an append rewrites records (the largest, the whole gallery): searches
    must not wait for that, only for its commit. A search started while the merged segment
    is being written gets in and sees the records; after the merge everything reads back."""
    import threading

    from matcher.gallery import params, segment
    from matcher.search.fingerprint import fingerprint_records, fingerprint_schema
    from matcher.synthetic.templates import synthetic_templates

    schema = fingerprint_schema()
    templates = synthetic_templates(params.MERGE_FANIN, 1, seed=3)
    batches = [fingerprint_records([f"r{i}"], [f"s{i}"], t) for i, t in enumerate(templates)]
    seen: list[int] = []
    real_write = segment.write

    with GallerySet.open(tmp_path / "galleries") as galleries:

        def search() -> None:
            with galleries.reading(schema) as gallery:
                assert gallery is not None
                seen.append(len(gallery))

        def write(*args: object, **kwargs: object) -> object:
            references = args[2]
            if len(references) > 1:  # the merge, not an append
                t = threading.Thread(target=search)
                t.start()
                t.join(5)
                assert not t.is_alive(), "a search waited for the merge's rewrite"
            return real_write(*args, **kwargs)

        monkeypatch.setattr(segment, "write", write)
        for batch in batches:
            galleries.append(schema, batch)
        assert seen == [params.MERGE_FANIN]  # one merge, and the search saw every record
        (gallery,) = galleries.galleries().values()
        assert gallery.stats().segments == 1
        assert sorted(gallery.references()) == sorted(f"r{i}" for i in range(params.MERGE_FANIN))


def test_a_failed_merge_leaves_the_append_standing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The append committed before its merge: a merge that fails (disk full) is logged, the
    enrolment stands, and the next append merges."""
    import errno
    import logging

    from matcher.gallery import params, segment
    from matcher.search.fingerprint import fingerprint_records, fingerprint_schema
    from matcher.synthetic.templates import synthetic_templates

    schema = fingerprint_schema()
    n = params.MERGE_FANIN
    templates = synthetic_templates(n + 1, 1, seed=4)
    batches = [fingerprint_records([f"r{i}"], [f"s{i}"], t) for i, t in enumerate(templates)]
    real_write = segment.write

    def full(*args: object, **kwargs: object) -> object:
        if len(args[2]) > 1:  # type: ignore[arg-type]
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(*args, **kwargs)

    with GallerySet.open(tmp_path / "galleries") as galleries:
        monkeypatch.setattr(segment, "write", full)
        with caplog.at_level(logging.WARNING, logger="node.services.galleries"):
            for batch in batches[:n]:
                galleries.append(schema, batch)
        (gallery,) = galleries.galleries().values()
        assert len(gallery) == n and gallery.stats().segments == n
        assert "segments not merged" in caplog.text and "No space left" in caplog.text
        monkeypatch.setattr(segment, "write", real_write)
        galleries.append(schema, batches[n])
        assert len(gallery) == n + 1 and gallery.stats().segments == 1  # all n + 1 merged
        assert sorted(gallery.references()) == sorted(f"r{i}" for i in range(n + 1))


def test_a_merge_failing_past_its_commit_leaves_the_handle_current(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The merge's manifest is on disk when mapping its files fails (out of descriptors): the
    node's handle must not stay a generation behind, or the search processes (which refresh
    to the disk) refuse every search as a stale gallery until the next write."""
    import errno
    import logging

    from matcher.gallery import Gallery, params
    from matcher.gallery import manifest as mf
    from matcher.search.fingerprint import fingerprint_records, fingerprint_schema
    from matcher.synthetic.templates import synthetic_templates

    schema = fingerprint_schema()
    n = params.MERGE_FANIN
    templates = synthetic_templates(n, 1, seed=5)
    batches = [fingerprint_records([f"r{i}"], [f"s{i}"], t) for i, t in enumerate(templates)]
    real_install = Gallery._install
    failed = []

    def install(self: Gallery, man: mf.Manifest) -> None:
        if len(man.segments) == 1 and man.segments[0].count == n and not failed:
            failed.append(man.generation)  # the merge's commit, once
            raise OSError(errno.EMFILE, "Too many open files")
        real_install(self, man)

    with GallerySet.open(tmp_path / "galleries") as galleries:
        monkeypatch.setattr(Gallery, "_install", install)
        with caplog.at_level(logging.WARNING, logger="node.services.galleries"):
            for batch in batches:
                galleries.append(schema, batch)
        (gallery,) = galleries.galleries().values()
        assert failed and "Too many open files" in caplog.text
        assert gallery.generation == mf.read(gallery.directory).generation == failed[0]
        assert gallery.stats().segments == 1 and len(gallery) == n


def test_a_deleted_subjects_templates_leave_the_gallery_files(
    settings: Settings,
    engine: Engine,
    galleries: GallerySet,
    make_token: object,
    finger_png: bytes,
) -> None:
    """Deleting a subject hides its records at once; the running node then rewrites the
    segment that held them (every gallery_erase_interval_s), after which no gallery file
    holds the template."""
    import time

    app = create_app(
        settings.model_copy(update={"gallery_erase_interval_s": 0.2}),
        engine=engine,
        gallery=galleries,
    )
    headers = bearer(make_token(Role.OPERATOR, name="op"))  # type: ignore[operator]
    with TestClient(app) as client:
        other_png = png(make_impression(make_master(8), 0))
        for subject, image in (("keep", finger_png), ("gone", other_png)):
            r = enrol(client, headers, image, subject=subject, modality="fingerprint")
            assert r.status_code == 201, r.text
        gone = r.json()["records"][0]["reference"]
        ((name, gallery),) = galleries.galleries().items()
        template = np.ascontiguousarray(gallery.lookup(gone).arrays["descriptors"]).tobytes()

        def on_disk() -> bool:
            files = sorted((galleries.root / name).glob("seg-*"))
            return any(template in f.read_bytes() for f in files)

        assert on_disk()
        assert client.delete("/subjects/gone", headers=headers).status_code == 200
        deadline = time.monotonic() + 10
        while galleries.awaiting_erasure() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert galleries.awaiting_erasure() == 0 and not on_disk()
        assert len(gallery) == 1 and gone not in galleries.references()


def test_the_running_node_finishes_a_deletion_its_gallery_write_failed(
    settings: Settings,
    engine: Engine,
    galleries: GallerySet,
    make_token: object,
    finger_png: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A deletion that answered 503 stayed half done (rows deleting, templates in the
    gallery) until an operator sent it again or the node restarted; now the erasure task
    finishes it once the gallery is writable, logging no subject id or reference."""
    import logging
    import time

    app = create_app(
        settings.model_copy(update={"gallery_erase_interval_s": 0.2}),
        engine=engine,
        gallery=galleries,
    )
    headers = bearer(make_token(Role.OPERATOR, name="op"))  # type: ignore[operator]
    with caplog.at_level(logging.INFO, logger="node.services.erasure"), TestClient(app) as client:
        r = enrol(client, headers, finger_png, subject="case-77", modality="fingerprint")
        assert r.status_code == 201, r.text
        reference = r.json()["records"][0]["reference"]
        (gallery,) = galleries.galleries().values()
        blocker = _blocked(gallery.directory, f"tomb-{gallery.generation + 1:010d}.npy")
        r = client.delete("/subjects/case-77", headers=headers)
        assert (r.status_code, r.json()["error"]) == (503, "storage_error"), r.text
        time.sleep(0.6)  # rounds that fail as the deletion did
        assert client.get("/subjects/case-77", headers=headers).json()["state"] == "deleting"
        blocker.rmdir()
        deadline = time.monotonic() + 10
        while (status := client.get("/subjects/case-77", headers=headers).status_code) == 200:
            assert time.monotonic() < deadline, "the deletion was not finished"
            time.sleep(0.05)
        assert status == 404
        assert galleries.references() == set() and galleries.unsettled() == frozenset()
    logged = [r.getMessage() for r in caplog.records if r.name == "node.services.erasure"]
    assert any("not finished yet" in m and "[storage_error]" in m for m in logged), logged
    assert any(m.startswith("finished the deletion of 1 records") for m in logged), logged
    assert not any("case-77" in m or reference in m for m in logged)


def test_bdx_gallery_erase(node_env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    from matcher.search.fingerprint import fingerprint_records, fingerprint_schema
    from matcher.synthetic.templates import synthetic_templates

    templates = synthetic_templates(3, 1, seed=6)
    with GallerySet.open(node_env.gallery_path) as galleries:
        for i, t in enumerate(templates):
            galleries.append(fingerprint_schema(), fingerprint_records([f"r{i}"], [f"s{i}"], t))
        galleries.remove(["r0", "r2"])
    code, out, _ = cli(["gallery", "stats"], capsys)
    assert code == 0 and "2 deleted (awaiting erasure)" in out
    code, out, _ = cli(["gallery", "erase", "--json"], capsys)
    assert (code, json.loads(out)) == (0, {"erased": 2, "segments_rewritten": 2})  # 1 each
    code, out, _ = cli(["gallery", "erase"], capsys)
    assert (code, out.strip()) == (0, "erased 0 deleted records (0 segments rewritten)")
    code, out, _ = cli(["gallery", "stats", "--json"], capsys)
    (store,) = json.loads(out).values()
    assert (store["records"], store["deleted"]) == (1, 0)


def test_an_erasure_that_cannot_read_a_segment_logs_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The erasure task logged the raw OSError with its traceback every round."""
    import logging

    import anyio

    from matcher.search.fingerprint import fingerprint_records, fingerprint_schema
    from matcher.synthetic.templates import synthetic_templates
    from node.services.erasure import erasing

    with GallerySet.open(tmp_path / "galleries") as galleries:
        for i, t in enumerate(synthetic_templates(2, 1, seed=8)):
            galleries.append(fingerprint_schema(), fingerprint_records([f"r{i}"], [f"s{i}"], t))
        galleries.remove(["r0"])
        (gallery,) = galleries.galleries().values()
        first = min(gallery.directory.glob("seg-*.ref.npy"))  # r0's segment, to be rewritten
        first.unlink()
        first.symlink_to(first.name)

        async def run() -> None:
            async with erasing(galleries, 0.2):
                await anyio.sleep(0.5)

        with caplog.at_level(logging.ERROR, logger="node.services.erasure"):
            anyio.run(run)
        assert galleries.awaiting_erasure() == 1
    logged = [r for r in caplog.records if r.name == "node.services.erasure"]
    assert logged and all(r.exc_info is None for r in logged)
    assert all("[unreadable_gallery_file]" in r.getMessage() for r in logged)


def test_a_gallery_that_cannot_be_erased_does_not_hold_back_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from matcher.gallery import Gallery
    from matcher.search.face import face_records, face_schema
    from matcher.search.fingerprint import fingerprint_records, fingerprint_schema
    from matcher.synthetic.templates import synthetic_templates

    rng = np.random.default_rng(0)
    faces = rng.normal(size=(2, 128)).astype(np.float32)
    faces /= np.linalg.norm(faces, axis=1, keepdims=True)
    with GallerySet.open(tmp_path / "galleries") as galleries:
        (finger,) = synthetic_templates(1, 1, seed=7)
        galleries.append(fingerprint_schema(), fingerprint_records(["f0"], ["s0"], finger))
        schema = face_schema()
        batch = face_records(
            ["v0", "v1"],
            ["s0", "s1"],
            faces,
            schema=schema,
            format=schema.format,
            format_version=schema.format_version,
        )
        galleries.append(schema, batch)
        galleries.remove(["f0", "v1"])
        real = Gallery.erase

        def erase(self: Gallery, **kwargs: object) -> int:
            if self.schema.modality == "fingerprint":
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(self, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Gallery, "erase", erase)
        with pytest.raises(OSError, match="No space"):
            galleries.erase()
        deleted = {g.schema.modality: g.stats().deleted for g in galleries.galleries().values()}
        assert deleted == {"fingerprint": 1, "face": 0}


def test_close_stops_an_erasure_after_its_current_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shutdown waits for the segment being rewritten, not for every one (a large gallery
    could outlast the service manager's stop timeout); the rest waits for the next start."""
    import threading
    import time

    from matcher.gallery import segment
    from matcher.search.fingerprint import fingerprint_records, fingerprint_schema
    from matcher.synthetic.templates import synthetic_templates

    templates = synthetic_templates(3, 2, seed=8)
    galleries = GallerySet.open(tmp_path / "galleries")
    for i, pair in enumerate(templates):
        refs = [f"r{i}a", f"r{i}b"]
        galleries.append(fingerprint_schema(), fingerprint_records(refs, [f"s{i}"] * 2, pair))
    galleries.remove(["r0a", "r1a", "r2a"])  # one deletion in each of three segments
    real_write = segment.write
    closer = threading.Thread(target=galleries.close)
    done: list[int] = []

    def write(*args: object, **kwargs: object) -> object:
        if not closer.is_alive() and not done:  # the first rewrite: a shutdown begins
            closer.start()
            deadline = time.monotonic() + 5
            while not galleries._closing.is_set() and time.monotonic() < deadline:
                time.sleep(0.01)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(segment, "write", write)
    done.append(galleries.erase())
    closer.join(10)
    assert done == [1]  # the rewrite in progress finished, no other began
    with GallerySet.open(tmp_path / "galleries") as reopened:
        (again,) = reopened.galleries().values()
        assert again.stats().deleted == 2


def test_gallery_stats_and_upgrade_say_there_is_no_gallery_yet(
    node_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gallery upgrade` printed nothing at all on a node without galleries; `stats` said
    so. Under --json both print an empty object."""
    for command in ("stats", "upgrade"):
        assert cli(["gallery", command], capsys) == (0, "no galleries yet\n", ""), command
        code, out, _ = cli(["gallery", command, "--json"], capsys)
        assert (code, json.loads(out)) == (0, {}), command


def test_enrol_with_restrictions_sets_them_in_the_same_transaction(
    client: TestClient, operator: dict[str, str], finger_png: bytes
) -> None:
    """`restrictions` was ignored: the record was active and shared with every peer until a
    PUT .../restrictions came. It is stored with the record, the JSON the PUT routes take."""
    asylum = {"asylum_nationality": "sy", "peers": ["MY", "ID"], "purposes": ["asylum"]}
    r = enrol(
        client,
        operator,
        finger_png,
        subject="case-9",
        modality="fingerprint",
        restrictions=json.dumps(asylum),
    )
    assert r.status_code == 201, r.text
    (record,) = r.json()["records"]
    wanted = {**asylum, "asylum_nationality": "SY", "no_exchange_consent": False}
    assert (record["state"], record["restrictions"]) == ("active", wanted)
    shown = client.get("/subjects/case-9", headers=operator).json()
    assert [rec["restrictions"] for rec in shown["records"]] == [wanted]
    plain = enrol(client, operator, finger_png, subject="case-10", modality="fingerprint")
    assert plain.json()["records"][0]["restrictions"]["asylum_nationality"] is None


@pytest.mark.parametrize(
    "value",
    ["{", "[]", '{"asylum_nationality": "Syria"}', '{"purposes": ["gossip"]}', '{"x": 1}'],
)
def test_enrol_refuses_bad_restrictions(
    client: TestClient,
    operator: dict[str, str],
    finger_png: bytes,
    galleries: GallerySet,
    value: str,
) -> None:
    r = enrol(client, operator, finger_png, subject="s", modality="fingerprint", restrictions=value)
    assert (r.status_code, r.json()["error"]) == (422, "invalid_request"), r.text
    assert r.json()["detail"].startswith("restrictions")
    assert galleries.references() == set()
    assert client.get("/subjects/s", headers=operator).status_code == 404
