"""Fingerprint searches in worker processes (node.services.search_pool): real spawned workers."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from matcher.fingerprint.template import FingerprintTemplate
from matcher.gallery import Gallery
from matcher.gallery.errors import GalleryError
from matcher.search import fingerprint as fingerprint_search
from matcher.search import lanes
from matcher.search.fingerprint import fingerprint_records, fingerprint_schema
from matcher.synthetic.templates import synthetic_templates
from node.service_errors import StoreUnavailableError
from node.services.galleries import GallerySet, gallery_name
from node.services.search import fingerprint_candidates
from node.services.search_pool import SearchPool


@pytest.fixture(scope="module")
def fingers() -> list[list[FingerprintTemplate]]:
    return synthetic_templates(30, 2, seed=21)


@pytest.fixture
def galleries(tmp_path: Path) -> Iterator[GallerySet]:
    with GallerySet.open(tmp_path / "galleries") as g:
        yield g


@pytest.fixture
def pool(galleries: GallerySet) -> Iterator[SearchPool]:
    p = SearchPool(galleries.root / gallery_name(fingerprint_schema()), 1)
    try:
        yield p
    finally:
        p.close()


def enrol(galleries: GallerySet, fingers: list, lo: int, hi: int) -> None:
    refs = [f"s{i}" for i in range(lo, hi)]
    batch = fingerprint_records(refs, refs, [f[0] for f in fingers[lo:hi]])
    galleries.append(fingerprint_schema(), batch)


def test_workers_find_what_the_node_finds_and_follow_its_generations(
    galleries: GallerySet, pool: SearchPool, fingers: list
) -> None:
    """The pool started before the gallery existed; every append is a new generation."""
    enrol(galleries, fingers, 0, 20)
    probes = [fingers[3][1], fingers[25][1]]
    with galleries.reading(fingerprint_schema()) as g:
        assert g is not None
        assert pool.fingerprint(g, probes, 5) == fingerprint_candidates(g, probes, 5)
        assert pool.fingerprint(g, probes, 5)[0].subject == "s3"
    enrol(galleries, fingers, 20, 30)  # s25 is in the gallery now
    with galleries.reading(fingerprint_schema()) as g:
        assert g is not None
        got = pool.fingerprint(g, probes, 5)
        assert got == fingerprint_candidates(g, probes, 5)
        assert {c.subject for c in got[:2]} == {"s3", "s25"}


def test_a_worker_refuses_a_snapshot_other_than_the_nodes(
    galleries: GallerySet, pool: SearchPool, fingers: list
) -> None:
    enrol(galleries, fingers, 0, 10)
    directory = galleries.root / gallery_name(fingerprint_schema())
    with Gallery.open(directory) as old:  # a handle left at the first generation
        enrol(galleries, fingers, 10, 20)
        with pytest.raises(GalleryError) as err:
            pool.fingerprint(old, [fingers[0][1]], 3)
    assert err.value.reason == "stale_gallery"


def _unreadable_segment(galleries: GallerySet, fingers: list, directory: Path) -> None:
    enrol(galleries, fingers, 10, 20)  # a second segment, which the worker has not read
    newest = max(directory.glob("seg-*.ref.npy"))
    newest.unlink()
    newest.symlink_to(newest.name)  # ELOOP (EACCES, EIO alike)


def _garbage_tombstones(galleries: GallerySet, fingers: list, directory: Path) -> None:
    galleries.remove(["s5"])  # a tombstone file, which the worker has not read
    (tombstones,) = directory.glob("tomb-*.npy")
    tombstones.write_bytes(b"not an array at all\n")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [(_unreadable_segment, "unreadable_gallery_file"), (_garbage_tombstones, "bad_tombstones")],
)
def test_a_worker_that_cannot_read_a_gallery_file_is_a_storage_error(
    galleries: GallerySet,
    fingers: list,
    damage: Callable[[GallerySet, list, Path], None],
    reason: str,
) -> None:
    """The worker's OSError, or np.load's ValueError on a damaged tombstone file, came back
    raw: a peer's query failed with a traceback in the node's log instead of a search failure
    of the node."""
    directory = galleries.root / gallery_name(fingerprint_schema())
    pool = SearchPool(directory, 1, follow_s=3600)  # re-reads only for a search
    try:
        enrol(galleries, fingers, 0, 10)
        with galleries.reading(fingerprint_schema()) as g:
            assert g is not None and pool.fingerprint(g, [fingers[2][1]], 3)[0].subject == "s2"
        damage(galleries, fingers, directory)
        with (
            galleries.reading(fingerprint_schema()) as g,
            pytest.raises(StoreUnavailableError) as err,
        ):
            assert g is not None
            pool.fingerprint(g, [fingers[2][1]], 3)
        assert err.value.reason == "storage_error" and reason in str(err.value)
    finally:
        pool.close()


def _broken(pool: SearchPool) -> None:
    """Wait until the pool's executor has noticed that a worker died."""
    executor = pool._executor  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while not executor._broken:  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the executor never noticed the death"
        time.sleep(0.02)


def test_a_worker_dead_while_idle_costs_no_query(
    galleries: GallerySet, pool: SearchPool, fingers: list
) -> None:
    """The next query found the pool broken before it was sent and failed all the same
    (search_unavailable to a peer); it runs on a new pool now."""
    enrol(galleries, fingers, 0, 10)
    (pid,) = list(pool._executor._processes)  # type: ignore[attr-defined]
    old = pool._executor  # type: ignore[attr-defined]
    os.kill(pid, signal.SIGKILL)
    _broken(pool)
    with galleries.reading(fingerprint_schema()) as g:
        assert g is not None
        assert pool.fingerprint(g, [fingers[2][1]], 3)[0].subject == "s2"
    assert pool._executor is not old  # type: ignore[attr-defined]


def test_a_worker_dead_during_a_search_fails_that_search_and_the_pool_is_replaced(
    galleries: GallerySet, pool: SearchPool, fingers: list
) -> None:
    """The search is sent to a stopped worker, which is then killed."""
    from concurrent.futures import ThreadPoolExecutor

    enrol(galleries, fingers, 0, 10)
    (pid,) = list(pool._executor._processes)  # type: ignore[attr-defined]
    with galleries.reading(fingerprint_schema()) as g:
        assert g is not None
        os.kill(pid, signal.SIGSTOP)
        with ThreadPoolExecutor(1) as caller:
            search = caller.submit(pool.fingerprint, g, [fingers[2][1]], 3)
            time.sleep(0.3)  # the search is in the stopped worker's queue
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(StoreUnavailableError) as err:
                search.result(timeout=30)
        assert err.value.reason == "search_unavailable"
        assert pool.fingerprint(g, [fingers[2][1]], 3)[0].subject == "s2"  # a new worker
        pool.close()
        with pytest.raises(StoreUnavailableError):  # closed for good: nothing restarts it
            pool.fingerprint(g, [fingers[2][1]], 3)


def test_workers_that_cannot_open_the_gallery_fail_the_start(tmp_path: Path) -> None:
    (tmp_path / "MANIFEST.json").write_text("not a manifest")
    with pytest.raises(StoreUnavailableError) as err:
        SearchPool(tmp_path, 1)
    assert err.value.reason == "search_unavailable"


def test_a_pool_needs_a_process(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one process"):
        SearchPool(tmp_path, 0)


@pytest.mark.skipif(not lanes.available(), reason="this CPU lacks AVX-512 VNNI: no lane layout")
def test_the_node_lays_out_its_fingerprint_gallery_at_start(
    galleries: GallerySet, fingers: list
) -> None:
    """In-process searches (no pool) do not wait for the layout either."""
    enrol(galleries, fingers, 0, 20)
    enrol(galleries, fingers, 20, 30)
    galleries.warm()
    with galleries.reading(fingerprint_schema()) as g:
        assert g is not None and len(g._segments) == 2
        assert all(fingerprint_search.LANES_KEY in s.derived for s in g._segments)


def test_workers_of_a_killed_node_exit(tmp_path: Path) -> None:
    """A node killed outright (SIGKILL: no shutdown) leaves no search process behind."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from node.services.search_pool import SearchPool\n"
        "pool = SearchPool(Path(sys.argv[1]), 2)\n"
        "print(*[p for p in pool._executor._processes], flush=True)\n"
        "sys.stdin.read()\n"
    )
    node = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert node.stdout is not None
        workers = [int(p) for p in node.stdout.readline().split()]
        assert len(workers) == 2
        node.kill()
        node.wait()
        deadline = time.monotonic() + 15
        alive = workers
        while alive and time.monotonic() < deadline:
            time.sleep(0.2)
            alive = [p for p in workers if _running(p)]
        assert alive == []
    finally:
        node.kill()
        node.wait()
        if node.stdin is not None:
            node.stdin.close()
        if node.stdout is not None:
            node.stdout.close()


def test_a_worker_that_starts_after_its_node_was_killed_exits(tmp_path: Path) -> None:
    """A worker still importing when the node was killed took its new parent (init) for the
    node and stayed for good (CI under load: 1 of 2 workers left after 15 s). Given the
    node's process id, a worker whose node is gone exits as it starts."""
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process id that is no parent of the worker's
    script = (
        "import sys, time\n"
        "from node.services.search_pool import _worker_start\n"
        "_worker_start(sys.argv[1], 3600.0, int(sys.argv[2]))\n"
        "time.sleep(60)\n"
        "sys.exit(3)\n"
    )
    worker = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), str(gone.pid)], timeout=50, check=False
    )
    assert worker.returncode == 0


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not gone, not a zombie)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/<pid>/maps")
def test_an_idle_worker_lets_go_of_erased_files(
    galleries: GallerySet, fingers: list, tmp_path: Path
) -> None:
    """After an erasure rewrote a segment, a worker that searched the old one (and so maps its
    files, the deleted template included) lets go of them without another search."""
    enrol(galleries, fingers, 0, 5)
    enrol(galleries, fingers, 5, 10)
    pool = SearchPool(galleries.root / gallery_name(fingerprint_schema()), 1, follow_s=0.2)
    try:
        with galleries.reading(fingerprint_schema()) as g:
            assert g is not None
            pool.fingerprint(g, [fingers[3][1]], 5)  # the worker maps both segments
        (pid,) = pool._running()._processes  # type: ignore[attr-defined]
        directory = str(galleries.root / gallery_name(fingerprint_schema()))

        def deleted_maps() -> list[str]:
            lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
            return [line for line in lines if directory in line and "(deleted)" in line]

        galleries.remove(["s3"])
        assert galleries.erase() == 1 and deleted_maps()  # the old segment, still mapped
        deadline = time.monotonic() + 10
        while deleted_maps() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert deleted_maps() == []
    finally:
        pool.close()


@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="reads /proc/<pid>/limits")
def test_workers_write_no_core_files(pool: SearchPool) -> None:
    """A worker holds probes: a crash must not dump them to a core file (node.hardening)."""
    (pid,) = pool._running()._processes  # type: ignore[attr-defined]
    (core,) = [
        line for line in Path(f"/proc/{pid}/limits").read_text().splitlines() if "core" in line
    ]
    assert core.split()[-3:-1] == ["0", "0"], core


def test_every_finger_is_checked_before_the_first_search(
    galleries: GallerySet, fingers: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe of real fingers and one unusable last view ran every earlier finger's full 1:N
    search before its refusal, and a peer's refused query gets its quota unit back: free
    searches. Now nothing is searched (the real search is only counted here)."""
    from dataclasses import replace

    import numpy as np

    import node.services.search as search_service
    from matcher.errors import MatcherError

    enrol(galleries, fingers, 0, 10)
    one_point = replace(
        fingers[3][1],
        x=np.full(20, 100, np.float32),
        y=np.full(20, 100, np.float32),
        angle=np.zeros(20, np.float32),
        kind=np.ones(20, np.uint8),
        quality=np.full(20, 60, np.uint8),
        finger_position=2,
    )
    real = search_service.search_fingerprint
    calls: list[object] = []
    monkeypatch.setattr(
        search_service, "search_fingerprint", lambda *a, **kw: calls.append(a) or real(*a, **kw)
    )
    with galleries.reading(fingerprint_schema()) as g:
        assert g is not None
        with pytest.raises(MatcherError) as err:
            fingerprint_candidates(g, [fingers[2][1], fingers[5][1], one_point], 3)
        assert err.value.reason == "too_few_minutiae" and calls == []
        assert fingerprint_candidates(g, [fingers[2][1]], 3)[0].subject == "s2" and calls
