from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from matcher.errors import TemplateFormatError
from matcher.face.template import FaceTemplate
from matcher.gallery import Gallery
from matcher.search.face import face_records, face_schema, search_face, templates_to_records
from matcher.search.topk import TopK

FMT, VER = "dlib-resnet-v1-flip/hog", 1


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    e = rng.standard_normal((n, 128)).astype(np.float32)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def _gallery(path: Path, emb: np.ndarray, *, int8: bool = False, chunks: int = 3) -> Gallery:
    schema = face_schema(FMT, VER, int8=int8)
    g = Gallery.create(path, schema)
    for part in np.array_split(np.arange(len(emb)), chunks):
        if part.size:
            refs = [f"r{i}" for i in part]
            subs = [f"s{i // 2}" for i in part]
            g.append(
                face_records(refs, subs, emb[part], schema=schema, format=FMT, format_version=VER)
            )
    return g


def _brute(emb: np.ndarray, q: np.ndarray, k: int, alive: np.ndarray) -> list[int]:
    s = np.where(alive, emb @ q, -np.inf)
    order = np.lexsort((np.arange(len(s)), -s))
    return [int(i) for i in order[:k] if np.isfinite(s[i])]


@pytest.mark.parametrize("threads", [1, 2])
def test_topk_matches_brute_force(
    tmp_path: Path, threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matcher.search.params as sp

    monkeypatch.setattr(sp, "FACE_BLOCK_ROWS", 37)  # many blocks and shards
    monkeypatch.setattr(sp, "FACE_BATCH_BLOCK_ROWS", 29)
    rng = np.random.default_rng(1)
    emb = _unit(rng, 400)
    with _gallery(tmp_path, emb) as g:
        g.delete([f"r{i}" for i in range(0, 400, 7)])
        alive = np.array([i % 7 != 0 for i in range(400)])
        probes = _unit(rng, 5)
        batched = search_face(g, probes, format=FMT, format_version=VER, k=12, threads=threads)
        for j, q in enumerate(probes):
            want = [f"r{i}" for i in _brute(emb, q, 12, alive)]
            single = search_face(g, q[None], format=FMT, format_version=VER, k=12, threads=threads)[
                0
            ]
            assert [c.reference for c in single.candidates] == want
            assert [c.reference for c in batched[j].candidates] == want
            np.testing.assert_allclose(
                [c.score for c in single.candidates],
                np.sort(emb[[int(r[1:]) for r in want]] @ q)[::-1],
                rtol=1e-5,
            )


def test_int8_close_to_float(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    emb = _unit(rng, 300)
    probe = emb[17] + 0.05 * _unit(rng, 1)[0]
    probe /= np.linalg.norm(probe)
    with _gallery(tmp_path / "f", emb) as gf, _gallery(tmp_path / "q", emb, int8=True) as gq:
        rf = search_face(gf, probe[None], format=FMT, format_version=VER, k=5)[0]
        rq = search_face(gq, probe[None], format=FMT, format_version=VER, k=5)[0]
        assert rq.candidates[0].reference == rf.candidates[0].reference == "r17"
        assert abs(rq.candidates[0].score - rf.candidates[0].score) < 1e-2
        b = search_face(gq, np.stack([probe, probe]), format=FMT, format_version=VER, k=5)
        assert [c.reference for c in b[1].candidates] == [c.reference for c in rq.candidates]


def test_empty_gallery_and_k_larger_than_gallery(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    with Gallery.create(tmp_path / "e", face_schema(FMT, VER)) as g:
        r = search_face(g, _unit(rng, 1), format=FMT, format_version=VER, threshold=0.5)[0]
        assert r.candidates == () and r.hit is False
        assert search_face(g, _unit(rng, 3), format=FMT, format_version=VER)[2].candidates == ()
    with _gallery(tmp_path / "s", _unit(rng, 4), chunks=2) as g:
        g.delete(["r1"])
        for nq in (1, 3):
            res = search_face(g, _unit(rng, nq), format=FMT, format_version=VER, k=50)
            assert all(len(r.candidates) == 3 for r in res)


def test_threshold_decision(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    emb = _unit(rng, 50)
    with _gallery(tmp_path, emb) as g:
        hit = search_face(g, emb[3:4], format=FMT, format_version=VER, threshold=0.9)[0]
        assert hit.hit is True and [c.reference for c in hit.hits] == ["r3"]
        miss = search_face(g, _unit(rng, 1), format=FMT, format_version=VER, threshold=0.9)[0]
        assert miss.hit is False and miss.hits == ()
        assert search_face(g, emb[3:4], format=FMT, format_version=VER)[0].hit is None


def test_wrong_format_or_shape_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    with _gallery(tmp_path, _unit(rng, 10)) as g:
        with pytest.raises(TemplateFormatError) as err:
            search_face(g, _unit(rng, 1), format="other-model/hog", format_version=VER)
        assert err.value.reason == "incompatible_format"
        with pytest.raises(TemplateFormatError):
            search_face(g, _unit(rng, 1), format=FMT, format_version=VER + 1)
        with pytest.raises(TemplateFormatError):
            search_face(g, np.zeros((1, 64)), format=FMT, format_version=VER)
        with pytest.raises(TemplateFormatError):
            search_face(g, np.full((1, 128), np.nan), format=FMT, format_version=VER)
        with pytest.raises(TemplateFormatError, match="unit-norm"):  # cosine would exceed 1
            search_face(g, 1000 * _unit(rng, 1), format=FMT, format_version=VER)


@pytest.mark.parametrize("int8", [False, True])
def test_records_refuse_nan_or_non_unit_rows(int8: bool) -> None:
    rng = np.random.default_rng(8)
    schema = face_schema(FMT, VER, int8=int8)
    emb = _unit(rng, 3)
    for bad, message in ((np.nan, "NaN"), (2.0, "unit-norm")):
        rows = emb.copy()
        rows[1] = rows[1] * bad if bad == 2.0 else bad
        with pytest.raises(TemplateFormatError, match=message):
            face_records(
                ["a", "b", "c"], ["s"] * 3, rows, schema=schema, format=FMT, format_version=VER
            )


def test_topk_ignores_nan_scores() -> None:
    top = TopK(2)
    top.push(0, np.array([0.9, np.nan, np.nan, 0.5], dtype=np.float32))
    assert top.ids.tolist() == [0, 3]
    top.push(4, np.array([np.nan, 0.95], dtype=np.float32))
    assert top.ids.tolist() == [5, 0]


def test_templates_to_records(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    emb = _unit(rng, 2)
    schema = face_schema(FMT, VER)
    ts = [FaceTemplate(e, 80, FMT, VER) for e in emb]
    with Gallery.create(tmp_path, schema) as g:
        g.append(templates_to_records(["a", "b"], ["s", "s"], ts, schema))
        assert g.lookup("b").position == -1
        other = [FaceTemplate(emb[0], 80, "dlib-resnet-v1-flip/cnn", VER)]
        with pytest.raises(TemplateFormatError):
            g.append(templates_to_records(["c"], ["s"], other, schema))
        with pytest.raises(TemplateFormatError):
            templates_to_records(["c", "d"], ["s", "s"], [ts[0], other[0]], schema)
