"""Face neighbour lists (CSLS offsets) kept current through appends, deletions and compaction,
and the search ranked by them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from matcher.face.hubness import csls_offsets
from matcher.gallery import Gallery
from matcher.search import neighbours
from matcher.search.face import face_records, face_schema, gallery_embeddings, search_face

FMT, VER = "dlib-resnet-v1-flip/hog", 1
K = 4


def _people(rng: np.random.Generator, people: int, images: int) -> np.ndarray:
    """(people * images, 128) unit rows, images of one person near a common centre."""
    centres = rng.standard_normal((people, 1, 128))
    e = (centres + 0.6 * rng.standard_normal((people, images, 128))).reshape(-1, 128)
    return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)


def _append(g: Gallery, emb: np.ndarray, first: int, *, int8: bool = False) -> None:
    refs = [f"r{first + i}" for i in range(len(emb))]
    subs = [f"s{(first + i) // 3}" for i in range(len(emb))]
    g.append(face_records(refs, subs, emb, schema=g.schema, format=FMT, format_version=VER))


def _expected(g: Gallery, k: int) -> np.ndarray:
    """CSLS offsets by global id computed from scratch over the live rows (0 elsewhere)."""
    e = gallery_embeddings(g)
    out = np.zeros(g.size, np.float32)
    live = np.flatnonzero(g.alive)
    out[live] = csls_offsets(e[live], k)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("int8", [False, True])
def test_incremental_lists_equal_a_fresh_build(tmp_path: Path, seed: int, int8: bool) -> None:
    rng = np.random.default_rng(seed)
    emb = _people(rng, 40, 3)
    with Gallery.create(tmp_path / "g", face_schema(FMT, VER, int8=int8)) as g:
        lists: neighbours.NeighbourLists | None = None
        added = 0
        for step in range(8):
            if step % 3 == 2 and len(g) > 4:  # delete a few live records
                live = g.references()
                g.delete(list(rng.choice(live, size=min(5, len(live) - 2), replace=False)))
            elif step == 6:
                g.compact()
            else:
                n = int(rng.integers(1, 25))
                _append(g, emb[added : added + n], added)
                added += n
            lists = neighbours.refresh(lists, g, gallery_embeddings(g), K)
            fresh = neighbours.refresh(None, g, gallery_embeddings(g), K)
            assert lists.generation == g.generation and lists.size == g.size
            np.testing.assert_array_equal(lists.ids, fresh.ids)
            np.testing.assert_allclose(lists.scores, fresh.scores, atol=1e-6)
            np.testing.assert_allclose(lists.offsets(), _expected(g, K), atol=1e-6)
            finite = np.isfinite(lists.scores)
            np.testing.assert_array_equal(lists.neighbours >= 0, finite)
            # each neighbour is another live record, and its score is the cosine to it
            rows = np.broadcast_to(np.arange(len(lists.ids))[:, None], finite.shape)
            assert not (lists.neighbours == rows)[finite].any()
            e = gallery_embeddings(g)[lists.ids]
            cos = np.einsum("ij,ij->i", e[rows[finite]], e[lists.neighbours[finite]])
            np.testing.assert_allclose(cos, lists.scores[finite], atol=1e-5)


def test_small_galleries(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    emb = _people(rng, 2, 2)
    with Gallery.create(tmp_path / "g", face_schema(FMT, VER)) as g:
        empty = neighbours.refresh(None, g, gallery_embeddings(g), K)
        assert empty.offsets().shape == (0,)
        _append(g, emb[:1], 0)
        one = neighbours.refresh(empty, g, gallery_embeddings(g), K)
        assert one.offsets().tolist() == [0.0]
        _append(g, emb[1:3], 1)  # three records: each has two others, fewer than K
        three = neighbours.refresh(one, g, gallery_embeddings(g), K)
        e = gallery_embeddings(g)
        s = e @ e.T
        want = [(s[i].sum() - s[i, i]) / 2 for i in range(3)]
        np.testing.assert_allclose(three.offsets(), want, atol=1e-6)
        assert np.isinf(three.scores[:, 2:]).all()
        assert (three.neighbours[:, 2:] == neighbours.NO_NEIGHBOUR).all()


def test_other_k_is_not_reused(tmp_path: Path) -> None:
    emb = _people(np.random.default_rng(6), 5, 3)
    with Gallery.create(tmp_path / "g", face_schema(FMT, VER)) as g:
        _append(g, emb, 0)
        two = neighbours.refresh(None, g, gallery_embeddings(g), 2)
        five = neighbours.refresh(two, g, gallery_embeddings(g), 5)
        np.testing.assert_allclose(five.offsets(), _expected(g, 5), atol=1e-6)
        with pytest.raises(ValueError, match="k must be"):
            neighbours.refresh(None, g, gallery_embeddings(g), 0)


def test_search_ranks_by_csls_and_reports_cosine(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    emb = _people(rng, 30, 3)
    probes = _people(rng, 5, 1)
    with Gallery.create(tmp_path / "g", face_schema(FMT, VER)) as g:
        _append(g, emb, 0)
        g.delete(["r4", "r50"])
        offsets = neighbours.refresh(None, g, gallery_embeddings(g), K).offsets()
        e = gallery_embeddings(g)
        for q in [*probes, emb[10]]:
            (res,) = search_face(g, q[None, :], format=FMT, format_version=VER, offsets=offsets)
            key = np.where(g.alive, e @ q - offsets / 2, -np.inf)
            want = np.lexsort((np.arange(key.size), -key))[:10]
            assert [c.reference for c in res.candidates] == g.resolve(want)[0]
            np.testing.assert_allclose([c.score for c in res.candidates], e[want] @ q, atol=1e-6)


def test_threshold_puts_matches_first_whatever_the_offsets(tmp_path: Path) -> None:
    """A record at the threshold ranks before one below it even when the offsets say
    otherwise, so the hit decision is the cosine's."""
    e = np.zeros((2, 128), np.float32)
    e[0, 0] = 1.0
    e[1, 1] = 1.0
    q = np.zeros(128, np.float32)
    q[0], q[1] = 0.62, 0.6
    q /= np.linalg.norm(q)  # cos to r0 0.719, to r1 0.695
    with Gallery.create(tmp_path / "g", face_schema(FMT, VER)) as g:
        _append(g, e, 0)
        offsets = np.array([0.9, 0.1], np.float32)  # r0 crowded: CSLS prefers r1
        (plain,) = search_face(g, q[None, :], format=FMT, format_version=VER, offsets=offsets)
        assert [c.reference for c in plain.candidates] == ["r1", "r0"]
        (res,) = search_face(
            g, q[None, :], format=FMT, format_version=VER, offsets=offsets, threshold=0.7
        )
        assert [c.reference for c in res.candidates] == ["r0", "r1"]
        assert res.hit is True and [c.reference for c in res.hits] == ["r0"]
        np.testing.assert_allclose([c.score for c in res.candidates], [0.7190, 0.6958], atol=1e-3)


def test_offsets_must_fit_the_snapshot(tmp_path: Path) -> None:
    emb = _people(np.random.default_rng(8), 3, 2)
    with Gallery.create(tmp_path / "g", face_schema(FMT, VER)) as g:
        _append(g, emb, 0)
        with pytest.raises(ValueError, match="offsets must be"):
            search_face(g, emb[:1], format=FMT, format_version=VER, offsets=np.zeros(3))
        with pytest.raises(ValueError, match="one probe"):
            search_face(g, emb[:2], format=FMT, format_version=VER, offsets=np.zeros(6))


def test_saved_lists_bring_a_later_snapshot_up_to_date(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    emb = _people(rng, 30, 3)
    file = tmp_path / "lists.npz"
    with Gallery.create(tmp_path / "g", face_schema(FMT, VER)) as g:
        _append(g, emb[:60], 0)
        neighbours.save(neighbours.refresh(None, g, gallery_embeddings(g), K), file)
        # later: records deleted and added, and one reference back with another template
        g.delete(["r5", "r17", "r40"])
        _append(g, emb[60:], 60)
        g.delete(["r2"])
        other = _people(rng, 1, 1)
        again = face_records(["r2"], ["x"], other, schema=g.schema, format=FMT, format_version=VER)
        g.append(again)
        saved = neighbours.load(file)
        assert saved.generation < g.generation
        lists = neighbours.refresh(saved, g, gallery_embeddings(g), K)
        np.testing.assert_allclose(lists.offsets(), _expected(g, K), atol=1e-6)


def test_unusable_files_are_refused(tmp_path: Path) -> None:
    emb = _people(np.random.default_rng(10), 4, 3)
    with Gallery.create(tmp_path / "g", face_schema(FMT, VER)) as g:
        _append(g, emb, 0)
        lists = neighbours.refresh(None, g, gallery_embeddings(g), K)
    good = tmp_path / "good.npz"
    neighbours.save(lists, good)
    with pytest.raises(FileNotFoundError):
        neighbours.load(tmp_path / "missing.npz")
    data = good.read_bytes()
    cases = {
        "truncated": data[: len(data) // 2],
        "garbage": b"not a zip at all",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match="unreadable"):
            neighbours.load(tmp_path / name)
    bad = tmp_path / "bad.npz"
    np.savez(bad, meta=np.array([neighbours.FILE_VERSION, 1, 12, K]), ids=lists.ids,
             references=lists.references, scores=lists.scores,
             neighbours=lists.neighbours + 100, checks=lists.checks)  # fmt: skip
    with pytest.raises(ValueError, match="inconsistent"):
        neighbours.load(bad)
    np.savez(bad, meta=np.array([99, 1, 12, K]))
    with pytest.raises(ValueError, match="other arrays"):
        neighbours.load(bad)
