from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from matcher.errors import GalleryError, TemplateFormatError
from matcher.gallery import (
    DuplicateReferenceError,
    FieldSpec,
    Gallery,
    GalleryCorruptError,
    GalleryLockedError,
    GallerySchema,
    IncompatibleFormatError,
    RecordBatch,
    UnknownReferenceError,
)
from tests.gallery.conftest import SCHEMA, make_batch


def test_append_lookup_reopen(tmp_path: Path) -> None:
    batch = make_batch("a", 20)
    with Gallery.create(tmp_path / "g", SCHEMA) as g:
        g.append(batch)
        rec = g.lookup("a-7")
        assert (rec.subject, rec.position) == ("s2", 7)
        np.testing.assert_array_equal(rec.arrays["xy"], batch.arrays["xy"][7])
    with Gallery.open(tmp_path / "g") as g:
        assert len(g) == 20 and g.generation == 1
        np.testing.assert_array_equal(g.lookup("a-7").arrays["xy"], batch.arrays["xy"][7])
        assert g.stats().records == 20


def test_delete_compact_and_ragged_padding(tmp_path: Path) -> None:
    with Gallery.create(tmp_path, SCHEMA) as g:
        g.append(make_batch("a", 10, width=3, seed=1))
        g.append(make_batch("b", 10, width=5, seed=2))
        g.delete(["a-1", "b-2"])
        assert len(g) == 18 and g.stats().deleted == 2
        with pytest.raises(UnknownReferenceError):
            g.lookup("a-1")
        before = g.lookup("a-3").arrays["xy"]
        g.compact()
        assert g.stats().segments == 1 and g.stats().deleted == 0 and len(g) == 18
        after = g.lookup("a-3").arrays["xy"]
        assert after.shape == (5, 2)
        np.testing.assert_array_equal(after[:3], before)
        np.testing.assert_array_equal(after[3:], 0)
        with pytest.raises(DuplicateReferenceError):
            g.append(make_batch("a", 2, seed=3))  # a-0 is live
        g.delete(["a-0"])
        g.append(make_batch("a", 2, seed=3))  # a deleted reference may come back
    names = {p.name for p in tmp_path.iterdir()}
    assert not any(n.startswith(".tmp-") for n in names)
    assert len([n for n in names if n.startswith("tomb-")]) == 1  # superseded ones are gone


def test_delete_unknown_or_twice_loses_nothing(tmp_path: Path) -> None:
    with Gallery.create(tmp_path, SCHEMA) as g:
        g.append(make_batch("a", 5))
        with pytest.raises(UnknownReferenceError):
            g.delete(["a-1", "nope"])
        with pytest.raises(DuplicateReferenceError):
            g.delete(["a-1", "a-1"])
        assert len(g) == 5 and g.generation == 1


def test_duplicate_references_refused(tmp_path: Path) -> None:
    with Gallery.create(tmp_path, SCHEMA) as g:
        g.append(make_batch("a", 5))
        with pytest.raises(DuplicateReferenceError) as err:
            g.append(make_batch("a", 1))
        assert err.value.reason == "duplicate_reference"
        assert len(g) == 5
    with pytest.raises(DuplicateReferenceError):
        RecordBatch.build(["x", "x"], ["s", "s"], [1, 1], {}, format="f", format_version=1)


def test_wrong_format_version_or_fields_refused(tmp_path: Path) -> None:
    other = make_batch("a", 2)
    with Gallery.create(tmp_path, SCHEMA) as g:
        for fmt, ver in (("other", 1), ("test-format", 2)):
            bad = RecordBatch.build(
                ["x"],
                ["s"],
                [1],
                {k: v[:1] for k, v in other.arrays.items()},
                format=fmt,
                format_version=ver,
            )
            with pytest.raises(IncompatibleFormatError) as err:
                g.append(bad)
            assert err.value.reason == "incompatible_format"
        missing = RecordBatch.build(
            ["x"],
            ["s"],
            [1],
            {"xy": other.arrays["xy"][:1]},
            format="test-format",
            format_version=1,
        )
        with pytest.raises(TemplateFormatError, match="fields"):
            g.append(missing)
        wrong_shape = RecordBatch.build(
            ["x"],
            ["s"],
            [1],
            {"xy": np.zeros((1, 3, 3)), "count": [1]},
            format="test-format",
            format_version=1,
        )
        with pytest.raises(TemplateFormatError, match="shape"):
            g.append(wrong_shape)
        bad_pos = RecordBatch.build(
            ["x"],
            ["s"],
            [11],
            {k: v[:1] for k, v in other.arrays.items()},
            format="test-format",
            format_version=1,
        )
        with pytest.raises(TemplateFormatError, match="ISO"):
            g.append(bad_pos)
        assert len(g) == 0
    v2 = GallerySchema("fingerprint", "test-format", 2, SCHEMA.fields)
    with pytest.raises(IncompatibleFormatError):
        Gallery.open(tmp_path, schema=v2)
    Gallery.open(tmp_path, schema=SCHEMA).close()


def test_bad_references_refused() -> None:
    for refs in ([""], ["x" * 200], [b"x"]):
        with pytest.raises(TemplateFormatError) as err:
            RecordBatch.build(refs, ["s"], [1], {}, format="f", format_version=1)  # type: ignore[arg-type]
        assert err.value.reason == "bad_reference"


def test_face_positions(tmp_path: Path) -> None:
    face = GallerySchema("face", "emb", 1, {"e": FieldSpec("float32", (4,))})
    with Gallery.create(tmp_path, face) as g:
        ok = RecordBatch.build(
            ["x"], ["s"], [-1], {"e": np.ones((1, 4))}, format="emb", format_version=1
        )
        g.append(ok)
        bad = RecordBatch.build(
            ["y"], ["s"], [1], {"e": np.ones((1, 4))}, format="emb", format_version=1
        )
        with pytest.raises(TemplateFormatError, match="face"):
            g.append(bad)


def test_single_writer_lock_and_read_only(tmp_path: Path) -> None:
    with Gallery.create(tmp_path, SCHEMA) as g:
        with pytest.raises(GalleryLockedError):
            Gallery.open(tmp_path, writable=True)
        reader = Gallery.open(tmp_path)
        with pytest.raises(GalleryError) as err:
            reader.append(make_batch("a", 1))
        assert err.value.reason == "read_only"
        g.append(make_batch("a", 3))
        assert len(reader) == 0
        reader.refresh()
        assert len(reader) == 3
    Gallery.open(tmp_path, writable=True).close()  # the lock went with the first handle
    with pytest.raises(GalleryError) as exists:
        Gallery.create(tmp_path, SCHEMA)
    assert exists.value.reason == "gallery_exists"


def test_open_missing(tmp_path: Path) -> None:
    with pytest.raises(GalleryError) as err:
        Gallery.open(tmp_path / "none")
    assert err.value.reason == "no_gallery"


def test_a_gallery_without_its_manifest_is_damaged_not_absent(tmp_path: Path) -> None:
    """Its segment files were taken for no gallery: the node served no-hits, and the next
    write created a gallery there whose first commit deleted every old segment file."""
    with Gallery.create(tmp_path, SCHEMA) as g:
        g.append(make_batch("a", 5))
        g.delete(["a-1"])
    (tmp_path / "MANIFEST.json").unlink()
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for opening in (
        lambda: Gallery.open(tmp_path),
        lambda: Gallery.open(tmp_path, verify=False),
        lambda: Gallery.open(tmp_path, writable=True),
        lambda: Gallery.create(tmp_path, SCHEMA),
    ):
        with pytest.raises(GalleryCorruptError) as err:
            opening()
        assert err.value.reason == "missing_manifest" and err.value.exit_code == 7
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files


def _folder_in_place(path: Path) -> None:
    path.unlink()
    path.mkdir()  # EISDIR on open, as root too (a mode-000 file is no refusal for root)


def _symlink_loop(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.name)  # ELOOP on stat and open


@pytest.mark.parametrize("pattern", ["seg-*.ref.npy", "seg-*.f_xy.npy", "tomb-*.npy"])
@pytest.mark.parametrize("damage", [_folder_in_place, _symlink_loop])
def test_a_gallery_file_that_cannot_be_read_is_a_typed_error(
    tmp_path: Path, pattern: str, damage: object
) -> None:
    """A segment or tombstone file the file system refused to read raised the raw OSError
    (IsADirectoryError, ELOOP, EACCES, EIO): a traceback, exit 1."""
    with Gallery.create(tmp_path, SCHEMA) as g:
        g.append(make_batch("a", 5))
        g.delete(["a-1"])
    (path,) = tmp_path.glob(pattern)
    damage(path)  # type: ignore[operator]
    openings = [lambda: Gallery.open(tmp_path, verify=False)]
    if damage is _symlink_loop:  # a folder's size differs: verified, it is bad_checksum
        openings += [lambda: Gallery.open(tmp_path), lambda: Gallery.open(tmp_path, writable=True)]
    for opening in openings:
        with pytest.raises(GalleryCorruptError) as err:
            opening()
        assert (err.value.reason, err.value.exit_code) == ("unreadable_gallery_file", 7)
        assert err.value.message.startswith(f"cannot read {path.name}: ")


def _zip_archive() -> bytes:
    import io

    out = io.BytesIO()
    np.savez(out, a=np.zeros(2))
    return out.getvalue()


def _huge_header() -> bytes:
    """A .npy header that claims 1.5 TiB of tombstones over 32 bytes of data."""
    import io

    out = io.BytesIO()
    header = {"descr": "<i8", "fortran_order": False, "shape": (10**11, 2)}
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue() + bytes(32)


GARBAGE = {
    "text": b"not an array at all\n",  # np.load took it for a pickle and refused: ValueError
    "empty": b"",  # EOFError
    "zip": _zip_archive(),  # np.load opened it as an .npz archive: no shape
    "header only": np.lib.format.magic(1, 0),  # EOF in the header
    "huge": _huge_header(),  # MemoryError: np.load allocated what the header claimed
}


@pytest.mark.parametrize("pattern", ["tomb-*.npy", "seg-*.ref.npy", "seg-*.f_xy.npy"])
@pytest.mark.parametrize("garbage", sorted(GARBAGE))
def test_a_gallery_file_of_garbage_is_a_typed_error(
    tmp_path: Path, pattern: str, garbage: str
) -> None:
    """A tombstone file holding no .npy array raised np.load's ValueError (or EOFError,
    AttributeError on an archive, MemoryError for a header claiming terabytes) where only its
    shape was checked: a traceback, exit 1, and 500 for the request that read it. Segments
    met the empty file and the archive alike."""
    with Gallery.create(tmp_path, SCHEMA) as g:
        g.append(make_batch("a", 5))
        g.delete(["a-1"])
    (path,) = tmp_path.glob(pattern)
    path.write_bytes(GARBAGE[garbage])
    with pytest.raises(GalleryCorruptError) as err:
        Gallery.open(tmp_path, verify=False)  # checksums unread, as stats, erase and readers do
    reason = "bad_tombstones" if pattern.startswith("tomb") else "bad_segment"
    assert (err.value.reason, err.value.exit_code) == (reason, 7)
    assert err.value.message.startswith(f"{path.name}: ") and "\n" not in err.value.message
    assert "pickle" not in err.value.message  # no advice to unpickle a damaged file


def test_a_gallery_is_created_in_an_empty_folder_only(tmp_path: Path) -> None:
    folder = tmp_path / "g"
    folder.mkdir()
    (folder / "LOCK").touch()  # what an interrupted create leaves
    (folder / ".tmp-0123-MANIFEST.json").write_bytes(b"half")
    Gallery.create(folder, SCHEMA).close()
    other = tmp_path / "other"
    other.mkdir()
    (other / "operator-notes.txt").write_text("keep me")
    with pytest.raises(GalleryCorruptError) as err:
        Gallery.create(other, SCHEMA)
    assert err.value.reason == "not_empty"
    assert sorted(p.name for p in other.iterdir()) == ["LOCK", "operator-notes.txt"]


def test_corrupt_manifest(tmp_path: Path) -> None:
    with Gallery.create(tmp_path, SCHEMA) as g:
        g.append(make_batch("a", 3))
    path = tmp_path / "MANIFEST.json"
    doc = json.loads(path.read_bytes())
    doc["body"]["segments"][0]["count"] = 2
    path.write_text(json.dumps(doc))
    with pytest.raises(GalleryCorruptError) as err:
        Gallery.open(tmp_path)
    assert err.value.reason == "corrupt_manifest"
    path.write_bytes(b"{not json")
    with pytest.raises(GalleryCorruptError):
        Gallery.open(tmp_path)
    path.write_bytes(b"[" * 100_000 + b"]" * 100_000)  # past the JSON parser's stack
    with pytest.raises(GalleryCorruptError):
        Gallery.open(tmp_path)


def test_corrupt_segment_bad_checksum(tmp_path: Path) -> None:
    with Gallery.create(tmp_path, SCHEMA) as g:
        g.append(make_batch("a", 30))
        g.delete(["a-3"])
    seg = next(tmp_path.glob("seg-*.f_xy.npy"))
    data = bytearray(seg.read_bytes())
    data[-5] ^= 0xFF
    seg.write_bytes(bytes(data))
    with pytest.raises(GalleryCorruptError) as err:
        Gallery.open(tmp_path)
    assert err.value.reason == "bad_checksum"
    Gallery.open(tmp_path, verify=False).close()  # same size: only the checksum can tell
    seg.write_bytes(bytes(data[:-8]))
    with pytest.raises(GalleryCorruptError) as trunc:
        Gallery.open(tmp_path, verify=False)
    assert trunc.value.reason == "bad_segment"


def test_blocks_and_resolve(tmp_path: Path) -> None:
    with Gallery.create(tmp_path, SCHEMA) as g:
        assert g.blocks(4) == [] and len(g) == 0
        g.append(make_batch("a", 10))
        g.append(make_batch("b", 3))
        g.delete(["a-0"])
        blocks = g.blocks(4)
        assert [len(b) for b in blocks] == [4, 4, 2, 3]
        assert sum(int(b.alive.sum()) for b in blocks) == 12
        ids = g.locate(["b-2", "a-0", "a-9"])
        assert ids[1] == -1
        refs, subs, pos = g.resolve(ids[[0, 2]])
        assert refs == ["b-2", "a-9"] and subs == ["s2", "s4"] and pos.tolist() == [2, 9]
        codes, names = g.subject_codes()
        assert codes.shape == (13,) and names.tolist() == [b"s0", b"s1", b"s2", b"s3", b"s4"]


def test_blocks_know_their_segment_and_derived_arrays_follow_unchanged_segments(
    tmp_path: Path,
) -> None:
    import shutil

    with Gallery.create(tmp_path / "g", SCHEMA) as g:
        g.append(make_batch("a", 10))
        blocks = g.blocks(4)
        assert [(b.segment.id, b.row) for b in blocks] == [(1, 0), (1, 4), (1, 8)]
        blocks[0].segment.derived["layout"] = "of a"
        g.append(make_batch("b", 3))
        g.delete(["a-0"])  # a new generation; segment 1's files are unchanged
        assert [s.derived.get("layout") for s in g._segments] == ["of a", None]
        reader = Gallery.open(tmp_path / "g")
        reader._segments[1].derived["layout"] = "of b"
        g.compact()  # one new segment: nothing derived from the old ones applies to it
        reader.refresh()
        assert [s.derived for s in reader._segments] == [{}]
    reader.close()
    # Another gallery in the same place, whose segment 1 holds other records: not handed on.
    with Gallery.create(tmp_path / "h", SCHEMA) as g:
        g.append(make_batch("a", 10))
    reader = Gallery.open(tmp_path / "h")
    reader._segments[0].derived["layout"] = "of a"
    shutil.rmtree(tmp_path / "h")
    with Gallery.create(tmp_path / "h", SCHEMA) as other:
        other.append(make_batch("c", 5, seed=9))
    reader.refresh()
    assert reader._segments[0].id == 1 and reader._segments[0].derived == {}
    reader.close()


def test_user_metadata_must_be_json(tmp_path: Path) -> None:
    with Gallery.create(tmp_path, SCHEMA) as g:
        g.append(make_batch("a", 1), user={"op": 1})
        assert g.user == {"op": 1}
        with pytest.raises(TypeError):
            g.append(make_batch("b", 1), user={"op": object()})
        assert len(g) == 1


def test_references_lists_live_records(tmp_path: Path) -> None:
    with Gallery.create(tmp_path, SCHEMA) as g:
        g.append(make_batch("a", 3))
        g.delete(["a-1"])
        assert g.references() == ["a-0", "a-2"]


def test_reader_snapshot_survives_compaction(tmp_path: Path) -> None:
    with Gallery.create(tmp_path, SCHEMA) as g:
        g.append(make_batch("a", 10, seed=4))
        reader = Gallery.open(tmp_path)
        want = reader.lookup("a-5").arrays["xy"]
        g.delete(["a-5"])
        g.compact()  # the reader's segment files are unlinked now
        np.testing.assert_array_equal(reader.lookup("a-5").arrays["xy"], want)
        reader.refresh()
        with pytest.raises(UnknownReferenceError):
            reader.lookup("a-5")


def test_schema_errors() -> None:
    with pytest.raises(TemplateFormatError) as err:
        FieldSpec("float32", (0,))
    assert err.value.reason == "bad_schema"
    with pytest.raises(TypeError):
        FieldSpec("no-such-dtype")
    with pytest.raises(TemplateFormatError):
        GallerySchema("iris", "f", 1, {})
    with pytest.raises(TemplateFormatError):
        GallerySchema("face", "f", 1, {"not valid": FieldSpec("int8")})


def test_batch_shape_errors(tmp_path: Path) -> None:
    with pytest.raises(TemplateFormatError, match="length"):
        RecordBatch.build(["a", "b"], ["s"], [1, 1], {}, format="f", format_version=1)
    with pytest.raises(TemplateFormatError, match="rows"):
        RecordBatch.build(["a"], ["s"], [1], {"count": [1, 2]}, format="f", format_version=1)
    bad_dtype = RecordBatch.build(
        ["a"],
        ["s"],
        [1],
        {"xy": np.zeros((1, 2, 2)), "count": [1.5]},
        format="test-format",
        format_version=1,
    )
    with Gallery.create(tmp_path, SCHEMA) as g, pytest.raises(TemplateFormatError, match="dtype"):
        g.append(bad_dtype)


def test_schema_mismatch_and_read_only_ops(tmp_path: Path) -> None:
    Gallery.create(tmp_path, SCHEMA).close()
    other = GallerySchema("fingerprint", "test-format", 1, {"xy": FieldSpec("float32", (-1, 2))})
    with pytest.raises(GalleryError) as err:
        Gallery.open(tmp_path, schema=other)
    assert err.value.reason == "schema_mismatch"
    with Gallery.open(tmp_path) as reader:
        for op in (lambda: reader.delete([]), reader.compact):
            with pytest.raises(GalleryError) as ro:
                op()
            assert ro.value.reason == "read_only"


def test_unsupported_layout_and_bad_tombstones(tmp_path: Path) -> None:
    import hashlib

    from matcher.gallery import manifest as mf

    with Gallery.create(tmp_path, SCHEMA) as g:
        g.append(make_batch("a", 4))
        g.delete(["a-1"])
    path = tmp_path / "MANIFEST.json"
    original = path.read_bytes()

    def rewrite(change: object) -> None:
        doc = json.loads(original)
        change(doc["body"])  # type: ignore[operator]
        doc["sha256"] = hashlib.sha256(mf._canonical(doc["body"])).hexdigest()
        path.write_text(json.dumps(doc))

    rewrite(lambda b: b.update(layout_version=99))
    with pytest.raises(GalleryError) as err:
        Gallery.open(tmp_path)
    assert err.value.reason == "unsupported_layout"
    rewrite(lambda b: b.update(tombstone_count=7))
    with pytest.raises(GalleryCorruptError) as tomb:
        Gallery.open(tmp_path, verify=False)
    assert tomb.value.reason == "bad_tombstones"
    rewrite(lambda b: b["segments"][0].update(id=42))
    with pytest.raises(GalleryCorruptError) as orphan:
        Gallery.open(tmp_path, verify=False)
    assert orphan.value.reason == "bad_tombstones"
    rewrite(lambda b: b["segments"][0]["files"].pop("ref"))
    with pytest.raises(GalleryCorruptError) as files:
        Gallery.open(tmp_path, verify=False)
    assert files.value.reason == "bad_segment"


def test_missing_segment_file(tmp_path: Path) -> None:
    with Gallery.create(tmp_path, SCHEMA) as g:
        g.append(make_batch("a", 3))
    next(tmp_path.glob("seg-*.subject.npy")).unlink()
    for verify in (True, False):
        with pytest.raises(GalleryCorruptError) as err:
            Gallery.open(tmp_path, verify=verify)
        assert err.value.reason == "missing_file"
    with pytest.raises(GalleryCorruptError):
        Gallery.open(tmp_path, writable=True)


def test_a_write_that_fails_after_its_commit_does_not_corrupt_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest was replaced, then its directory fsync failed (EIO): the handle stayed a
    generation behind and the next append wrote its segment under the committed segment's
    name, so the gallery failed its checksums and the committed records were lost."""
    with Gallery.create(tmp_path / "g", SCHEMA) as g:
        g.append(make_batch("a", 5))
        _append_failing_after_commit(g, make_batch("b", 5), monkeypatch)
        g.append(make_batch("c", 5))
        g.delete(["a-1"])
    with Gallery.open(tmp_path / "g") as g:  # checksums verified
        assert sorted(g.references()) == sorted(
            [f"a-{i}" for i in (0, 2, 3, 4)]
            + [f"b-{i}" for i in range(5)]
            + [f"c-{i}" for i in range(5)]
        )


def test_tidy_keeps_the_segments_few_and_the_records_intact(tmp_path: Path) -> None:
    """One-record appends (enrolments over HTTP) merge in size tiers: the segment count stays
    logarithmic, deletions survive the merges, and every live record reads back."""
    from matcher.gallery import params

    with Gallery.create(tmp_path / "g", SCHEMA) as g:
        for i in range(200):
            g.append(make_batch(f"r{i:03d}", 1, seed=i))
            if i % 17 == 5:
                g.delete([f"r{i - 3:03d}-0"])
            g.tidy()
        segments = len(g._manifest.segments)
        live = sorted(g.references())
    fan = params.MERGE_FANIN
    assert segments < fan * 4  # 200 records: tiers 1, 8, 64 (a handful of each at most)
    deleted = {f"r{i - 3:03d}-0" for i in range(200) if i % 17 == 5}
    assert live == sorted({f"r{i:03d}-0" for i in range(200)} - deleted)
    with Gallery.open(tmp_path / "g") as g:
        assert sorted(g.references()) == live
        assert g.lookup("r150-0").subject == "s0"


def test_tidy_with_mixed_append_sizes(tmp_path: Path) -> None:
    """Enrolments of 2 and 10 records alternating (and a random mix): the segments stay few.
    (Merging only equal-tier tails left one segment per enrolment once a smaller tier sat
    before a larger one.)"""
    rng = np.random.default_rng(3)
    sizes = [2, 10] * 100 + [int(s) for s in rng.choice([1, 2, 4, 10], size=200)]
    with Gallery.create(tmp_path / "g", SCHEMA) as g:
        for i, n in enumerate(sizes):
            g.append(make_batch(f"e{i:03d}", n, seed=i))
            g.tidy()
            assert len(g._manifest.segments) < 4 * 8, i  # a few tiers, under MERGE_FANIN each
        assert len(g) == sum(sizes)


def test_a_removal_after_a_write_failed_past_its_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The enrolment's undo removes the references its failed append did commit (the stale
    snapshot did not know them, so they stayed live without rows)."""
    with Gallery.create(tmp_path / "g", SCHEMA) as g:
        g.append(make_batch("a", 3))
        _append_failing_after_commit(g, make_batch("b", 3), monkeypatch)
        g.catch_up()  # what GallerySet.remove does first
        g.delete(["b-0", "b-1", "b-2"])
        assert sorted(g.references()) == ["a-0", "a-1", "a-2"]


def _append_failing_after_commit(
    g: Gallery, batch: RecordBatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Append ``batch`` with the directory fsync after its manifest swap failing (EIO): the
    manifest on disk is committed, the append raises and the handle stays behind."""
    from matcher.gallery import manifest as mf

    real = mf.fsync_dir
    calls = {"n": 0}

    def failing_once(directory: Path) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(5, "simulated EIO")
        real(directory)

    monkeypatch.setattr(mf, "fsync_dir", failing_once)
    with pytest.raises(OSError):
        g.append(batch)
    monkeypatch.setattr(mf, "fsync_dir", real)


def test_tidy_writes_the_merged_segment_outside_its_swap(tmp_path: Path) -> None:
    """Only the commits run inside ``swap`` (the caller's exclusive lock): when a merge's swap
    is entered, its segment is already on disk, under a name no manifest holds yet."""
    from contextlib import contextmanager

    from matcher.gallery import manifest as mf
    from matcher.gallery import params

    seen: list[tuple[int, set[str]]] = []
    with Gallery.create(tmp_path / "g", SCHEMA) as g:

        @contextmanager
        def swap() -> Iterator[None]:
            named = set(mf.read(g.directory).file_names())
            on_disk = {p.name for p in g.directory.glob("seg-*.npy")}
            seen.append((g.generation, on_disk - named))
            yield

        for i in range(params.MERGE_FANIN):
            g.append(make_batch(f"r{i}", 1, seed=i))
        assert g.tidy(swap=swap) == 1
        assert len(g._manifest.segments) == 1 and len(g) == params.MERGE_FANIN
    # First the catch-up check (nothing new on disk), then the merge's commit (its files new).
    assert [gen for gen, _ in seen] == [params.MERGE_FANIN] * 2
    assert seen[0][1] == set() and seen[1][1]
    with Gallery.open(tmp_path / "g") as g:
        assert sorted(g.references()) == sorted(f"r{i}-0" for i in range(params.MERGE_FANIN))


def test_erase_leaves_no_deleted_template_in_any_file(tmp_path: Path) -> None:
    """A deletion only tombstones; erase rewrites each segment holding deleted records, so
    that their templates (and references) are in no file of the gallery afterwards."""
    batches = [make_batch(p, 6, seed=i) for i, p in enumerate(("a", "b", "c"))]
    gone = {"a-1": batches[0], "b-4": batches[1], "c-0": batches[2]}
    with Gallery.create(tmp_path / "g", SCHEMA) as g:
        for batch in batches:
            g.append(batch)
        g.append(make_batch("d", 2, seed=9))
        g.delete([*gone, "d-0", "d-1"])  # d's segment loses every record

        def files() -> bytes:
            return b"".join(p.read_bytes() for p in sorted((tmp_path / "g").iterdir()))

        secrets = [b.arrays["xy"][int(r[2:])].tobytes() for r, b in gone.items()]
        assert all(s in files() for s in secrets)  # tombstoned, still on disk
        assert g.erase() == 4 and g.erase() == 0
        assert g.stats().deleted == 0 and g.stats().segments == 3 and len(g) == 15
        assert not any(s in files() for s in secrets)
        assert not any(r.encode() in files() for r in ("d-0", "d-1"))
        np.testing.assert_array_equal(g.lookup("b-5").arrays["xy"], batches[1].arrays["xy"][5])
    with Gallery.open(tmp_path / "g") as g:  # checksums verified
        assert len(g) == 15 and not set(gone) & set(g.references())


@pytest.mark.parametrize("rewrite", ["erase", "compact", "tidy"])
def test_a_rewrite_never_launders_a_damaged_segment(tmp_path: Path, rewrite: str) -> None:
    """Merges, compaction and erasure copy records into a new segment with a new checksum:
    from a damaged file they would make damage that verification can no longer see."""
    with Gallery.create(tmp_path, SCHEMA) as g:
        for p in "abcdefg":  # one short of a merge of MERGE_FANIN (8) equal segments
            g.append(make_batch(p, 30))
        g.delete(["a-3"])
    seg = sorted(tmp_path.glob("seg-*.f_xy.npy"))[0]  # the first segment: a's
    data = bytearray(seg.read_bytes())
    data[-5] ^= 0xFF
    seg.write_bytes(bytes(data))
    before = sorted(p.name for p in tmp_path.iterdir())
    with Gallery.open(tmp_path, verify=False, writable=True) as g:
        with pytest.raises(GalleryCorruptError) as err:
            if rewrite == "tidy":
                g.append(make_batch("h", 30))  # the eighth: tidy merges all of them
                g.tidy()
            else:
                getattr(g, rewrite)()
        assert err.value.reason == "bad_checksum"
    if rewrite != "tidy":  # (tidy's own append added a segment)
        assert sorted(p.name for p in tmp_path.iterdir()) == before
    with pytest.raises(GalleryCorruptError):
        Gallery.open(tmp_path)  # still reported


def test_erase_removes_files_a_failed_clean_up_left(tmp_path: Path) -> None:
    """A rewrite whose clean-up failed past its commit (or a crash) leaves old segment files
    no manifest names, deleted templates in them: the next erase removes them, even with
    nothing left to rewrite."""
    with Gallery.create(tmp_path / "g", SCHEMA) as g:
        g.append(make_batch("a", 3))
        stray = tmp_path / "g" / "seg-0000000099.xy.npy"
        stray.write_bytes(b"an old segment's column")
        assert g.erase() == 0 and not stray.exists()
        assert sorted(g.references()) == ["a-0", "a-1", "a-2"]


def test_erase_stops_between_segments_when_asked(tmp_path: Path) -> None:
    with Gallery.create(tmp_path / "g", SCHEMA) as g:
        for p in ("a", "b", "c"):
            g.append(make_batch(p, 3))
        g.delete(["a-0", "b-0", "c-0"])
        asked: list[int] = []

        def stop() -> bool:
            asked.append(1)
            return len(asked) > 1  # after the first segment

        assert g.erase(stop=stop) == 1 and g.stats().deleted == 2
        assert g.erase() == 2 and g.stats().deleted == 0
