"""The node's gallery set keeps each face gallery's CSLS offsets current through appends and
deletions (the lists are refreshed, not rebuilt, and always equal a fresh computation)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest

from matcher.face.hubness import csls_offsets
from matcher.face.params import CSLS_K
from matcher.search import neighbours
from matcher.search.face import face_records, face_schema, gallery_embeddings
from node.services.galleries import NEIGHBOURS_SUFFIX, GallerySet

FMT, VER = "dlib-resnet-v1-flip-lm68/hog", 1


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    e = rng.standard_normal((n, 128)).astype(np.float32)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def _warm_set(root: Path, n: int, seed: int) -> GallerySet:
    """An open gallery set under ``root`` holding ``n`` face records r0.., lists built."""
    schema = face_schema(FMT, VER)
    refs = [f"r{i}" for i in range(n)]
    emb = _unit(np.random.default_rng(seed), n)
    galleries = GallerySet.open(root)
    galleries.append(
        schema, face_records(refs, refs, emb, schema=schema, format=FMT, format_version=VER)
    )
    galleries.warm()
    return galleries


def test_offsets_follow_appends_and_deletions(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    schema = face_schema(FMT, VER)
    emb = _unit(rng, 60)
    with GallerySet.open(tmp_path / "galleries") as galleries:
        galleries.warm()  # no gallery yet: nothing to build
        for lo, hi in [(0, 25), (25, 40), (40, 60)]:
            refs = [f"r{i}" for i in range(lo, hi)]
            galleries.append(
                schema,
                face_records(refs, refs, emb[lo:hi], schema=schema, format=FMT, format_version=VER),
            )
            if hi == 40:
                galleries.remove(["r3", "r30", "unknown"])
            with galleries.reading(schema) as gallery:
                assert gallery is not None
                got = galleries.face_offsets(gallery)
                assert got is galleries.face_offsets(gallery)  # kept while nothing changes
                e = gallery_embeddings(gallery)
                live = np.flatnonzero(gallery.alive)
                want = np.zeros(gallery.size, np.float32)
                want[live] = csls_offsets(e[live], CSLS_K)
                np.testing.assert_allclose(got, want, atol=1e-6)
    with GallerySet.open(tmp_path / "galleries") as reopened:
        reopened.warm()  # a new process builds them from the files
        with reopened.reading(schema) as gallery:
            assert gallery is not None
            np.testing.assert_allclose(reopened.face_offsets(gallery), want, atol=1e-6)


def test_lists_are_saved_at_close_and_reused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(4)
    schema = face_schema(FMT, VER)
    emb = _unit(rng, 30)
    refs = [f"r{i}" for i in range(30)]
    root = tmp_path / "galleries"
    with GallerySet.open(root) as galleries:
        galleries.append(
            schema, face_records(refs, refs, emb, schema=schema, format=FMT, format_version=VER)
        )
        galleries.warm()
    (file,) = root.glob("*" + NEIGHBOURS_SUFFIX)
    saved = neighbours.load(file)
    # mark the saved file: a reopened set that reuses it shows the mark in its offsets
    marked = dataclasses.replace(saved, scores=saved.scores - np.float32(0.01))
    neighbours.save(marked, file)
    with GallerySet.open(root) as galleries:
        galleries.warm()
        with galleries.reading(schema) as gallery:
            assert gallery is not None
            np.testing.assert_allclose(galleries.face_offsets(gallery), marked.offsets(), atol=1e-6)
    file.write_bytes(b"broken")
    with caplog.at_level(logging.WARNING), GallerySet.open(root) as galleries:
        galleries.warm()
        with galleries.reading(schema) as gallery:
            assert gallery is not None
            np.testing.assert_allclose(galleries.face_offsets(gallery), saved.offsets(), atol=1e-6)
    assert "not reused, rebuilt: unreadable" in caplog.text


def test_an_erasure_rewrites_the_saved_lists(tmp_path: Path) -> None:
    """The saved lists name every record and keep its best scores and embedding sum: after
    an erasure (here as `bdx gallery erase` runs it, without the lists in memory), the file
    names the deleted record no more; a saved file that cannot be read is removed."""
    schema = face_schema(FMT, VER)
    root = tmp_path / "galleries"
    _warm_set(root, 20, seed=5).close()  # the lists are built, and saved at close
    (file,) = root.glob("*" + NEIGHBOURS_SUFFIX)
    assert b"r7" in neighbours.load(file).references
    with GallerySet.open(root) as galleries:
        galleries.remove(["r7"])
        assert galleries.erase() == 1
        saved = neighbours.load(file)
        assert b"r7" not in saved.references and len(saved.references) == 19
        with galleries.reading(schema) as gallery:
            assert gallery is not None
            fresh = neighbours.refresh(None, gallery, gallery_embeddings(gallery))
        # the same best scores by reference (saved before the rewrite, whose ids shift)
        assert list(saved.references) == list(fresh.references)
        np.testing.assert_allclose(saved.scores, fresh.scores, atol=1e-6)
    file.write_bytes(b"broken")
    with GallerySet.open(root) as galleries:
        galleries.remove(["r8"])
        assert galleries.erase() == 1 and not file.exists()


def test_the_lists_drop_a_deleted_record_before_its_segment_is_rewritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lists are saved without the deleted record before the rewrite: a rewrite that
    fails (or a node killed after it) leaves no saved file naming the record for good."""
    from matcher.gallery import Gallery

    root = tmp_path / "galleries"
    with _warm_set(root, 12, seed=6) as galleries:
        galleries.remove(["r3"])

        def failing(self: Gallery, **kwargs: object) -> int:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(Gallery, "erase", failing)
        with pytest.raises(OSError):
            galleries.erase()
        (file,) = root.glob("*" + NEIGHBOURS_SUFFIX)
        assert b"r3" not in neighbours.load(file).references


def test_a_lists_file_that_cannot_be_written_stops_neither_erasure_nor_close(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "galleries"
    galleries = _warm_set(root, 8, seed=7)
    (gallery,) = galleries.galleries().values()
    path = root / (gallery.directory.name + NEIGHBOURS_SUFFIX)
    path.mkdir()  # neither written nor removed
    (path / "keep").write_text("")
    galleries.remove(["r2"])
    with caplog.at_level(logging.WARNING):
        assert galleries.erase() == 1
        galleries.close()
    assert gallery.stats().deleted == 0 and "not saved" in caplog.text
    assert galleries.galleries() == {} and gallery._lock is None  # closed all the same
