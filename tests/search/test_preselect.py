"""Pre-selection for two-stage fingerprint search (matcher.search.preselect) and ``"auto"``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matcher.fingerprint import match
from matcher.fingerprint.match.types import descriptor_length
from matcher.fingerprint.template import FingerprintTemplate
from matcher.gallery import Gallery
from matcher.search import params, preselect
from matcher.search.fingerprint import fingerprint_records, fingerprint_schema, search_fingerprint
from matcher.synthetic.templates import synthetic_templates


@pytest.fixture(scope="module")
def fingers() -> list[list[FingerprintTemplate]]:
    return synthetic_templates(60, 2, seed=11)


def test_reduced_cylinders_are_quantised_unit_vectors() -> None:
    d = descriptor_length()
    rng = np.random.default_rng(0)
    desc = rng.integers(0, 16, (5, d)).astype(np.float32)
    desc[2] = 0.0  # an invalid cylinder
    red = preselect.reduce_cylinders(desc)
    assert red.shape == (5, preselect.reduced_length(d)) and red.dtype == np.uint8
    assert not red[2].any()
    norms = np.linalg.norm(red.astype(np.float64), axis=1)
    np.testing.assert_allclose(norms[[0, 1, 3, 4]], preselect.QUANT, rtol=0.01)
    # The two groups sum the sections running with and against the minutia: a cylinder whose
    # every neighbour runs with it has nothing in the "against" half.
    cells = desc.reshape(5, -1, 4).copy()
    cells[..., [0, 3]] = 0.0  # sections centred at ±135°
    only_with = preselect.reduce_cylinders(cells.reshape(5, d)).reshape(5, -1, 2)
    assert not only_with[..., 1].any() and only_with[0, :, 0].any()


def test_score_of_a_template_does_not_depend_on_its_block(
    fingers: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared = [match.prepare(f[0]) for f in fingers[:12]]
    probe = match.prepare(fingers[3][1])
    cols = preselect.probe_matrix(probe)
    assert cols.shape[1] == min(params.PRESELECT_PROBE_ROWS, int((probe.inv_norm > 0).sum()))
    block = np.stack([preselect.gallery_rows(t) for t in prepared])
    assert block.shape == (12, params.PRESELECT_GALLERY_ROWS, cols.shape[0])
    together = preselect.preselect_scores(block, cols)
    for i in range(12):
        alone = preselect.preselect_scores(block[i : i + 1], cols)
        assert alone[0] == together[i]  # exact: integer GEMM
    # Chunks and a row subset change nothing either.
    pick = np.array([11, 0, 3, 7, 5])
    assert np.array_equal(preselect.preselect_scores(block, cols, pick), together[pick])
    monkeypatch.setattr(params, "PRESELECT_CHUNK_RECORDS", 5)
    assert np.array_equal(preselect.preselect_scores(block, cols), together)
    assert np.array_equal(preselect.preselect_scores(block, cols, pick), together[pick])
    # The mate gets the best pre-selection score; scores lie in [0, PRESELECT_PAIRS].
    assert int(np.argmax(together)) == 3
    assert together.min() >= 0.0 and together.max() <= params.PRESELECT_PAIRS + 1e-3


def test_central_rows_are_the_valid_cylinders_nearest_the_centroid(fingers: list) -> None:
    t = match.prepare(fingers[0][0])
    valid = np.flatnonzero(t.inv_norm > 0)
    rows = preselect.central_rows(t, 5)
    assert rows.size == 5 and set(rows) <= set(valid)
    centre = t.geometry[valid, :2].mean(axis=0)
    dist = np.hypot(*(t.geometry[:, :2] - centre).T)
    assert (
        dist[rows].max()
        <= np.delete(dist, rows)[np.isin(np.delete(np.arange(t.count), rows), valid)].min()
    )
    assert np.array_equal(
        preselect.central_rows(t, 10_000), valid[np.argsort(dist[valid], kind="stable")]
    )
    few = preselect.gallery_rows(
        match.SearchTemplate(t.descriptors[:3], t.inv_norm[:3], t.geometry[:3])
    )
    assert not few[3:].any()  # zero rows past the template's cylinders


@settings(max_examples=25, deadline=None)
@given(pad=st.integers(0, 20), seed=st.integers(0, 2**16))
def test_padding_rows_change_nothing(pad: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    r = preselect.reduced_length(descriptor_length())
    rows = rng.integers(0, 256, (3, 10, r)).astype(np.uint8)
    cols = rng.integers(0, 256, (r, 7)).astype(np.float32)
    padded = np.concatenate([rows, np.zeros((3, pad, r), np.uint8)], axis=1)
    assert np.array_equal(
        preselect.preselect_scores(rows, cols), preselect.preselect_scores(padded, cols)
    )


def test_empty_probe_or_block_scores_zero() -> None:
    r = preselect.reduced_length(descriptor_length())
    assert preselect.preselect_scores(np.zeros((0, 4, r), np.uint8), np.ones((r, 3))).shape == (0,)
    out = preselect.preselect_scores(np.ones((2, 4, r), np.uint8), np.zeros((r, 0), np.float32))
    assert np.array_equal(out, np.zeros(2, np.float32))


def test_two_stage_finds_mates_at_low_penetration(tmp_path: Path, fingers: list) -> None:
    refs = [f"f{i:02d}" for i in range(len(fingers))]
    with Gallery.create(tmp_path, fingerprint_schema()) as g:
        g.append(fingerprint_records(refs, refs, [f[0] for f in fingers]))
        found = [
            search_fingerprint(g, f[1], k=1, penetration=0.1).candidates[0].reference
            for f in fingers[:20]
        ]
        exhaustive = [
            search_fingerprint(g, f[1], k=1, penetration=None).candidates[0].reference
            for f in fingers[:20]
        ]
    # 10% of 60 is 6 records scored exactly, yet 19 of the 20 mates are found (the one missed
    # scores at impostor level, 0.008, even in exhaustive search).
    assert sum(r == refs[i] for i, r in enumerate(exhaustive)) == 20
    assert sum(r == refs[i] for i, r in enumerate(found)) >= 19


def test_auto_switches_to_two_stage_on_large_galleries(
    tmp_path: Path, fingers: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    refs = [f"f{i:02d}" for i in range(len(fingers))]
    probe = fingers[16][1]  # a weak mate that pre-selection at 5% (3 of 60) misses
    with Gallery.create(tmp_path, fingerprint_schema()) as g:
        g.append(fingerprint_records(refs, refs, [f[0] for f in fingers]))
        assert search_fingerprint(g, probe, k=1).candidates[0].reference == "f16"  # exhaustive
        monkeypatch.setattr(params, "AUTO_TWO_STAGE_RECORDS", 50)
        monkeypatch.setattr(params, "AUTO_PENETRATION", 0.05)
        auto = search_fingerprint(g, probe, k=1)
        assert auto.candidates[0].reference != "f16"
        assert auto.candidates == search_fingerprint(g, probe, k=1, penetration=0.05).candidates
        assert search_fingerprint(g, probe, k=1, penetration=None).candidates[0].reference == "f16"


def test_gallery_built_without_preselect_field_is_refused(tmp_path: Path, fingers: list) -> None:
    from matcher.gallery import FieldSpec, GallerySchema
    from matcher.gallery.errors import IncompatibleFormatError

    current = fingerprint_schema()
    fields = {k: v for k, v in current.fields.items() if k != "preselect"}
    fields["pooled"] = FieldSpec("float32", (descriptor_length(),))  # the layout before it
    old = GallerySchema(current.modality, current.format, current.format_version, fields)
    with Gallery.create(tmp_path, old) as g, pytest.raises(IncompatibleFormatError) as err:
        search_fingerprint(g, fingers[0][1])
    assert err.value.reason == "schema_mismatch"


@settings(max_examples=60, deadline=None)
@given(
    nb=st.integers(1, 6),
    m=st.integers(1, 30),
    mp=st.integers(1, 24),
    pairs=st.integers(1, 10),
    seed=st.integers(0, 2**16),
)
def test_best_pairs_equals_the_plain_formula(
    nb: int, m: int, mp: int, pairs: int, seed: int
) -> None:
    """The compiled step: per template, the best of its M rows for each probe column, then the
    sum of the ``pairs`` largest (all when fewer columns). Integer values with many ties, as
    the GEMM of quantised rows gives."""
    prod = np.random.default_rng(seed).integers(0, 6, (nb * m, mp)).astype(np.float32)
    best = prod.reshape(nb, m, mp).max(axis=1)
    expected = -np.sort(-best, axis=1)[:, :pairs].sum(axis=1)
    assert np.array_equal(preselect._best_pairs(prod, m, pairs), expected.astype(np.float32))


def _old_layout_gallery(path: Path, fingers: list) -> None:
    """A gallery at ``path`` with the field layout before ``preselect`` (30 records)."""
    from matcher.gallery import FieldSpec, GallerySchema, RecordBatch

    refs = [f"f{i:02d}" for i in range(len(fingers))]
    current = fingerprint_records(refs, refs, [f[0] for f in fingers])
    schema = fingerprint_schema()
    fields = {k: v for k, v in schema.fields.items() if k != "preselect"}
    fields["pooled"] = FieldSpec("float32", (descriptor_length(),))
    arrays = {k: v for k, v in current.arrays.items() if k != "preselect"}
    arrays["pooled"] = np.zeros((len(refs), descriptor_length()), np.float32)
    old = GallerySchema(schema.modality, schema.format, schema.format_version, fields)
    with Gallery.create(path, old) as g:
        g.append(
            RecordBatch.build(
                refs,
                refs,
                current.positions,
                arrays,
                format=schema.format,
                format_version=schema.format_version,
            )
        )


def test_an_interrupted_upgrade_is_recovered(tmp_path: Path, fingers: list) -> None:
    """Each point a crash can stop `bdx gallery upgrade` at leaves a folder that the next
    opening puts back: never a gallery missing (silent no-hits) or a half copy opened."""
    import shutil

    from matcher.errors import GalleryError
    from matcher.search.upgrade import galleries_in, upgrade_fingerprint_gallery

    root = tmp_path / "galleries"
    root.mkdir()
    x, fresh, retired = root / "fingerprint", root / "fingerprint.upgrade", root / "fingerprint.old"
    _old_layout_gallery(tmp_path / "old", fingers)
    shutil.copytree(tmp_path / "old", x)
    upgrade_fingerprint_gallery(x)
    shutil.copytree(x, tmp_path / "new")

    def layout(path: Path) -> set[str]:
        with Gallery.open(path) as g:
            return set(g.schema.fields)

    new_fields = layout(tmp_path / "new")
    # between the two renames: the complete rebuild takes the gallery's place
    x.rename(fresh)
    shutil.copytree(tmp_path / "old", retired)
    assert galleries_in(root) == [x] and layout(x) == new_fields
    assert sorted(p.name for p in root.iterdir()) == ["fingerprint"]
    # during the rebuild: the partial copy goes, the gallery stays as it was
    shutil.rmtree(x)
    shutil.copytree(tmp_path / "old", x)
    fresh.mkdir()
    (fresh / "segment-partial").write_bytes(b"half")
    assert galleries_in(root) == [x] and "pooled" in layout(x)
    assert not fresh.exists()
    # before the clean-up (the rebuilt gallery in place): the retired gallery goes
    shutil.rmtree(x)
    shutil.copytree(tmp_path / "new", x)
    shutil.copytree(tmp_path / "old", retired)
    assert galleries_in(root) == [x] and not retired.exists() and layout(x) == new_fields
    # a clean-up cut short: the retired copy is half-deleted (its manifest or files gone)
    shutil.copytree(tmp_path / "old", retired)
    for name in sorted(p.name for p in retired.iterdir())[:3]:
        (retired / name).unlink()
    assert galleries_in(root) == [x] and not retired.exists()
    # an upgrade still running (it holds the lock) is left alone
    shutil.copytree(tmp_path / "old", retired)
    with Gallery.open(retired, writable=True), pytest.raises(GalleryError):
        galleries_in(root)
    assert retired.exists()


def test_upgrade_recovery_never_deletes_the_only_whole_copy(tmp_path: Path, fingers: list) -> None:
    """Recovery removed `X.old` whenever `X` existed and put `X.upgrade` in place whenever
    `X` did not, whole or not: a damaged `X` (or rebuild) cost the last whole copy of the
    gallery, and an operator's same-layout copy named `X.old` was deleted as a leftover."""
    import shutil

    from matcher.gallery.errors import GalleryCorruptError
    from matcher.gallery.manifest import MANIFEST_NAME
    from matcher.search.upgrade import galleries_in, upgrade_fingerprint_gallery

    root = tmp_path / "galleries"
    root.mkdir()
    x, fresh, retired = root / "fingerprint", root / "fingerprint.upgrade", root / "fingerprint.old"
    _old_layout_gallery(tmp_path / "old", fingers)
    shutil.copytree(tmp_path / "old", tmp_path / "new")
    upgrade_fingerprint_gallery(tmp_path / "new")

    def files(path: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in path.iterdir()}

    def refused() -> None:
        held = {p.name: files(p) for p in root.iterdir()}
        with pytest.raises(GalleryCorruptError) as err:
            galleries_in(root)
        assert (err.value.reason, err.value.exit_code) == ("interrupted_upgrade", 7)
        assert "\n" not in err.value.message
        assert {p.name: files(p) for p in root.iterdir()} == held  # nothing changed

    # between the two renames, the rebuild damaged: the old gallery comes back, the rebuild goes
    shutil.copytree(tmp_path / "new", fresh)
    (fresh / MANIFEST_NAME).unlink()
    shutil.copytree(tmp_path / "old", retired)
    assert galleries_in(root) == [x] and files(x) == files(tmp_path / "old")
    assert sorted(p.name for p in root.iterdir()) == ["fingerprint"]
    # before the clean-up, the new gallery damaged: the old one is the only whole copy
    shutil.rmtree(x)
    shutil.copytree(tmp_path / "new", x)
    (x / MANIFEST_NAME).unlink()
    shutil.copytree(tmp_path / "old", retired)
    refused()
    # neither is whole
    next(retired.glob("seg-*.npy")).unlink()
    refused()
    # both whole and of one layout: no upgrade left them (an operator's copy)
    shutil.rmtree(x)
    shutil.rmtree(retired)
    shutil.copytree(tmp_path / "old", x)
    shutil.copytree(tmp_path / "old", retired)
    refused()
    # the upgrade itself never deletes a gallery in its way
    shutil.rmtree(retired)
    shutil.copytree(tmp_path / "new", retired)
    with pytest.raises(GalleryCorruptError) as err:
        upgrade_fingerprint_gallery(x)
    assert err.value.reason == "interrupted_upgrade"
    assert files(retired) == files(tmp_path / "new") and files(x) == files(tmp_path / "old")


def test_upgrade_rebuilds_an_old_layout_gallery(tmp_path: Path, fingers: list) -> None:
    from matcher.gallery import FieldSpec, GallerySchema, RecordBatch
    from matcher.search.upgrade import upgrade_fingerprint_gallery

    refs = [f"f{i:02d}" for i in range(len(fingers))]
    current = fingerprint_records(refs, refs, [f[0] for f in fingers])
    schema = fingerprint_schema()
    fields = {k: v for k, v in schema.fields.items() if k != "preselect"}
    fields["pooled"] = FieldSpec("float32", (descriptor_length(),))  # the layout before it
    old_arrays = {k: v for k, v in current.arrays.items() if k != "preselect"}
    old_arrays["pooled"] = np.zeros((len(refs), descriptor_length()), np.float32)
    old_schema = GallerySchema(schema.modality, schema.format, schema.format_version, fields)
    path = tmp_path / "fingerprint"
    with Gallery.create(path, old_schema) as g:
        for lo, hi in ((0, 25), (25, len(refs))):  # two segments
            part = {k: v[lo:hi] for k, v in old_arrays.items()}
            g.append(
                RecordBatch.build(
                    refs[lo:hi],
                    refs[lo:hi],
                    current.positions[lo:hi],
                    part,
                    format=schema.format,
                    format_version=schema.format_version,
                ),
                user={"loaded": hi},
            )
        g.delete(["f03"])
    seen: list[tuple[int, int]] = []
    assert upgrade_fingerprint_gallery(path, lambda d, t: seen.append((d, t))) == len(refs) - 1
    assert seen == [(1, 2), (2, 2)]
    assert not path.with_name("fingerprint.old").exists()
    with Gallery.open(path) as g, Gallery.create(tmp_path / "fresh", schema) as fresh:
        assert dict(g.schema.fields) == dict(schema.fields) and g.user == {"loaded": len(refs)}
        assert g.locate(["f03"])[0] == -1 and len(g) == len(refs) - 1
        fresh.append(current)
        fresh.delete(["f03"])
        for f in fingers[:10]:
            for pen in (None, 0.1):
                got = search_fingerprint(g, f[1], k=5, penetration=pen).candidates
                assert got == search_fingerprint(fresh, f[1], k=5, penetration=pen).candidates
    assert upgrade_fingerprint_gallery(path) == 0  # already current: left alone


def test_upgrade_gives_records_of_a_gallery_without_fields_none(
    tmp_path: Path, fingers: list
) -> None:
    """A gallery written before the ``orientation`` field: upgraded, its records have no field
    (the orientation term is 0), i.e. they score as templates without one."""
    from matcher.gallery import GallerySchema, RecordBatch
    from matcher.search.upgrade import needs_upgrade, upgrade_fingerprint_gallery

    def fielded(t: FingerprintTemplate, seed: int) -> FingerprintTemplate:
        codes = np.random.default_rng(seed).integers(0, 180, (t.height // 16, t.width // 16))
        return FingerprintTemplate(
            x=t.x,
            y=t.y,
            angle=t.angle,
            kind=t.kind,
            quality=t.quality,
            width=t.width,
            height=t.height,
            orientation=codes.astype(np.uint8),
        )

    refs = [f"f{i:02d}" for i in range(len(fingers))]
    with_fields = fingerprint_records(refs, refs, [fielded(f[0], i) for i, f in enumerate(fingers)])
    schema = fingerprint_schema()
    fields = {k: v for k, v in schema.fields.items() if k != "orientation"}
    old_schema = GallerySchema(schema.modality, schema.format, schema.format_version, fields)
    old_arrays = {k: v for k, v in with_fields.arrays.items() if k != "orientation"}
    path = tmp_path / "fingerprint"
    with Gallery.create(path, old_schema) as g:
        g.append(
            RecordBatch.build(
                refs,
                refs,
                with_fields.positions,
                old_arrays,
                format=schema.format,
                format_version=schema.format_version,
            )
        )
        assert needs_upgrade(g)
    assert upgrade_fingerprint_gallery(path) == len(refs)
    probe = fielded(fingers[4][1], 999)
    with Gallery.open(path) as g:
        assert dict(g.schema.fields) == dict(schema.fields)
        assert np.all(np.asarray(g.blocks(len(g))[0].arrays["orientation"]) == 255)
        got = search_fingerprint(g, probe, k=5, penetration=None).candidates
    want = np.array([match.score(probe, f[0]) for f in fingers], np.float32)  # no fields
    order = np.lexsort((np.arange(len(want)), -want))[:5]
    assert [c.reference for c in got] == [refs[i] for i in order]
    assert [c.score for c in got] == [float(want[i]) for i in order]


def test_a_stage_of_leading_rows_scores_their_contiguous_copy(fingers: list) -> None:
    block = np.stack([preselect.gallery_rows(match.prepare(f[0])) for f in fingers[:20]])
    cols = preselect.probe_matrix(match.prepare(fingers[4][1]))
    stage = preselect.Stage(5, 3, 2)
    narrow = preselect.preselect_scores(
        np.ascontiguousarray(block[:, :5]), np.ascontiguousarray(cols[:, :3]), pairs=2
    )
    assert np.array_equal(stage.scores(block, stage.columns(cols)), narrow)
    pick = np.array([7, 2, 19])
    assert np.array_equal(stage.scores(block, stage.columns(cols), pick), narrow[pick])
    assert narrow.max() <= 2 + 1e-3  # at most `pairs` local similarities of 1
    # The probe's leading columns are its most central cylinders, as a narrower matrix has them.
    assert np.array_equal(
        stage.columns(cols), preselect.probe_matrix(match.prepare(fingers[4][1]), 3)
    )
