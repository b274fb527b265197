"""Type-9 minutiae of ANSI/NIST-ITL transactions: the INCITS 378 block (9.126-9.137) and the
legacy NIST block (9.005-9.012) read back to the templates written (``nist_support`` writes
them from the standard and NBIS ``fmr2an2k``), every malformation refused with ``bad_record``,
vendor blocks passed over with a note, and ``bdx gallery load`` of minutiae-only transactions
enrolling templates a search then finds."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nist_support import (
    Fields,
    legacy_fields,
    legacy_tolerance,
    m1_expected,
    m1_fields,
    png,
    tagged,
    transaction,
    type4,
    type14,
)
from node_support import load_json
from sqlalchemy import select
from sqlalchemy.orm import Session

from matcher.fingerprint.template import BIFURCATION, ENDING, OTHER, FingerprintTemplate
from matcher.search.fingerprint import fingerprint_schema
from matcher.synthetic import make_impression, make_master, synthetic_templates
from node.db.models import Subject, TemplateRecord
from node.formats.ansi_nist import US, AnsiNistError, read_transaction
from node.services.galleries import GallerySet, subject_key
from node.services.search import fingerprint_candidates
from node.settings import Settings


@pytest.fixture(scope="module")
def templates() -> list[list[FingerprintTemplate]]:
    return synthetic_templates(3, 2, seed=11)


def read_one(fields: Fields, *others: tuple[int, bytes]) -> FingerprintTemplate:
    (found,) = read_transaction(transaction([*others, (9, tagged(9, fields))])).minutiae
    return found.template


def assert_close(
    found: FingerprintTemplate, expected: FingerprintTemplate, position: float, angle: float
) -> None:
    scalars = ("width", "height", "resolution_ppi", "finger_position")
    assert [getattr(found, s) for s in scalars] == [getattr(expected, s) for s in scalars]
    assert_minutiae(found, expected.x, expected.y, expected, position, angle)


def assert_minutiae(
    found: FingerprintTemplate,
    x: np.ndarray,
    y: np.ndarray,
    expected: FingerprintTemplate,
    position: float,
    angle: float,
) -> None:
    assert np.array_equal(found.kind, expected.kind)
    assert np.abs(found.x - x).max() <= position
    assert np.abs(found.y - y).max() <= position
    turn = np.angle(np.exp(1j * (found.angle.astype(np.float64) - expected.angle)))
    assert np.abs(turn).max() <= angle


def test_m1_block_reads_back(templates: list[list[FingerprintTemplate]]) -> None:
    t = dataclasses.replace(templates[0][0], finger_position=7, image_quality=64)
    assert read_one(m1_fields(t, idc=3)) == m1_expected(t)
    at_1000 = dataclasses.replace(t, resolution_ppi=1000)  # 394 px/cm -> round(394 * 2.54)
    found = read_one(m1_fields(at_1000, ppcm=True))
    assert (found.resolution_ppi, found.image_quality) == (1001, 64)


def test_legacy_block_reads_back_on_its_image_grid(
    templates: list[list[FingerprintTemplate]],
) -> None:
    t = dataclasses.replace(templates[1][0], finger_position=2)
    pixels = np.full((t.height, t.width), 200, np.uint8)
    found = read_one(legacy_fields(t, idc=4), (4, type4(pixels, 2, idc=4)))
    assert_close(found, t, *legacy_tolerance(500))
    assert not found.quality.any() and found.image_quality == 0  # NIST 1: "no quality"


def test_legacy_block_without_image_is_a_translation(
    templates: list[list[FingerprintTemplate]],
) -> None:
    t = templates[2][0]
    found = read_one(legacy_fields(t, quality=2))
    position, angle = legacy_tolerance(500)
    assert found.resolution_ppi == 500 and found.quality.tolist() == [100] * t.count
    assert found.width == math.floor(found.x.max()) + 1 and found.y.min() <= 1
    shift = found.y - t.y
    assert np.ptp(shift) <= 2 * position  # the same minutiae, moved up or down as one
    assert_minutiae(found, t.x, t.y + np.median(shift), t, 2 * position, angle)


def test_angle_conventions_by_hand() -> None:
    """One ridge ending at (100, 50) on a 200x100 image at 500 ppi pointing left (180°, ISO):
    M1 writes 90 (units of 2°); NIST writes 0° (away from the ridge) at (508, 249) in 0.01 mm
    from the lower-left corner (100 px = 5.08 mm; 99 - 50 = 49 px up = 2.49 mm)."""
    m1 = [(2, b"1"), (128, b"200"), (129, b"100"), (130, b"1"), (131, b"500"), (136, b"1")]
    found = read_one([*m1, (137, US.join([b"1", b"100", b"50", b"90", b"1", b"77"]))])
    assert (found.x[0], found.y[0], found.kind[0], found.quality[0]) == (100, 50, ENDING, 77)
    assert found.angle[0] == pytest.approx(math.pi)
    image = (4, type4(np.zeros((100, 200), np.uint8), 0, idc=1))
    legacy = [(2, b"1"), (10, b"1"), (12, US.join([b"1", b"05080249000", b"0", b"A"]))]
    found = read_one(legacy, image)
    assert (found.x[0], found.y[0]) == pytest.approx((100.0, 99 - 249 / 5.08))
    assert found.angle[0] == pytest.approx(math.pi)


def test_legacy_types_and_qualities() -> None:
    rows = [
        [b"1", b"01000100000", b"2", b"A"],
        [b"2", b"02000200090", b"63", b"B"],
        [b"3", b"03000300180", b"0", b"C"],
        [b"4", b"04000400270", b"33", b"D", b"1,4", b"2,0"],
    ]
    fields = [(2, b"1"), (6, b"13"), (10, b"4"), (12, b"\x1e".join(US.join(r) for r in rows))]
    found = read_one(fields)
    assert found.kind.tolist() == [ENDING, BIFURCATION, OTHER, OTHER]
    assert found.quality.tolist() == [100, 1, 0, 1 + round(30 * 99 / 61)]
    assert found.finger_position == 0  # 13: plain right four fingers, not one ISO finger


def _minutiae(count: int) -> st.SearchStrategy[FingerprintTemplate]:
    width, height = 400, 500
    return st.builds(
        lambda xs, ys, angles, kinds, qualities: FingerprintTemplate(
            x=xs, y=ys, angle=angles, kind=kinds, quality=qualities, width=width, height=height
        ),
        st.lists(st.floats(0, width - 1), min_size=count, max_size=count),
        st.lists(st.floats(0, height - 1), min_size=count, max_size=count),
        st.lists(st.floats(0, 6.28), min_size=count, max_size=count),
        st.lists(st.sampled_from([OTHER, ENDING, BIFURCATION]), min_size=count, max_size=count),
        st.lists(st.integers(0, 100), min_size=count, max_size=count),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 60).flatmap(_minutiae))
def test_both_blocks_agree_with_the_template(t: FingerprintTemplate) -> None:
    """Whatever the minutiae, both encodings read back to them (within their quantisation)."""
    assert read_one(m1_fields(t)) == m1_expected(t)
    image = (4, type4(np.zeros((t.height, t.width), np.uint8), 0))
    found = read_one(legacy_fields(t), image)
    assert_close(found, t, *legacy_tolerance(500))


Edit = Callable[[Fields], Fields]


def _set(number: int, value: bytes) -> Edit:
    return lambda fields: [(n, value if n == number else v) for n, v in fields]


def _drop(number: int) -> Edit:
    return lambda fields: [(n, v) for n, v in fields if n != number]


def _first_row(value: bytes) -> Edit:
    def edit(fields: Fields) -> Fields:
        out = []
        for n, v in fields:
            if n in (12, 137):
                rest = v.split(b"\x1e", 1)[1]
                v = value + b"\x1e" + rest
            out.append((n, v))
        return out

    return edit


M1_ERRORS: list[tuple[str, Edit, str]] = [
    ("count", _set(136, b"7"), "9.136 says 7 minutiae"),
    ("count-text", _set(136, b"seven"), "9.136"),
    ("items", _first_row(US.join([b"1", b"10", b"10", b"0", b"1"])), "has 5 items"),
    ("x-text", _first_row(US.join([b"1", b"1O", b"10", b"0", b"1", b"50"])), "not a non-negative"),
    ("x-out", _first_row(US.join([b"1", b"400", b"10", b"0", b"1", b"50"])), "outside"),
    ("y-out", _first_row(US.join([b"1", b"10", b"500", b"0", b"1", b"50"])), "outside"),
    ("negative", _first_row(US.join([b"1", b"-1", b"10", b"0", b"1", b"50"])), "non-negative"),
    ("angle", _first_row(US.join([b"1", b"10", b"10", b"180", b"1", b"50"])), "angle above"),
    ("type", _first_row(US.join([b"1", b"10", b"10", b"0", b"3", b"50"])), "type not 0, 1"),
    ("quality", _first_row(US.join([b"1", b"10", b"10", b"0", b"1", b"101"])), "quality above"),
    ("huge", _first_row(US.join([b"1", b"99999999", b"10", b"0", b"1", b"50"])), "item above"),
    ("units", _set(130, b"0"), "resolution"),
    ("width", _drop(128), "9.128 HLL"),
    ("idc", _set(2, b"x"), "9.002 IDC"),
]
LEGACY_ERRORS: list[tuple[str, Edit, str]] = [
    ("count", _set(10, b"70"), "9.010 says 70 minutiae"),
    ("items", _first_row(US.join([b"001", b"01000100000", b"2"])), "has 3 items"),
    ("xyt-digits", _first_row(US.join([b"001", b"0100010000", b"2", b"A"])), "XXXXYYYYTTT"),
    ("xyt-text", _first_row(US.join([b"001", b"0100O100000", b"2", b"A"])), "XXXXYYYYTTT"),
    ("angle", _first_row(US.join([b"001", b"01000100360", b"2", b"A"])), "below 360"),
    ("quality", _first_row(US.join([b"001", b"01000100000", b"64", b"A"])), "above 63"),
    ("type", _first_row(US.join([b"001", b"01000100000", b"2", b"E"])), "not A, B, C or D"),
    ("ridges", _first_row(US.join([b"001", b"01000100000", b"2", b"A", b"5;3"])), "ridge count"),
    ("y-out", _first_row(US.join([b"001", b"01009999000", b"2", b"A"])), "outside"),
    ("x-out", _first_row(US.join([b"001", b"99990100000", b"2", b"A"])), "outside"),
]


@pytest.mark.parametrize(
    ("edit", "message"), [(e, m) for _, e, m in M1_ERRORS], ids=[i for i, _, _ in M1_ERRORS]
)
def test_m1_errors(templates: list[list[FingerprintTemplate]], edit: Edit, message: str) -> None:
    t = dataclasses.replace(templates[0][0], width=400, height=500)
    with pytest.raises(AnsiNistError) as info:
        read_one(edit(m1_fields(t)))
    assert info.value.reason == "bad_record"
    assert message in info.value.message


@pytest.mark.parametrize(
    ("edit", "message"),
    [(e, m) for _, e, m in LEGACY_ERRORS],
    ids=[i for i, _, _ in LEGACY_ERRORS],
)
def test_legacy_errors(
    templates: list[list[FingerprintTemplate]], edit: Edit, message: str
) -> None:
    t = templates[0][0]
    image = (4, type4(np.zeros((t.height, t.width), np.uint8), 0))
    with pytest.raises(AnsiNistError) as info:
        read_one(edit(legacy_fields(t)), image)
    assert info.value.reason == "bad_record"
    assert message in info.value.message
    assert "0100O1" not in info.value.message and "'E'" not in info.value.message  # no data


def test_vendor_blocks_and_duplicates_are_passed_over(
    templates: list[list[FingerprintTemplate]],
) -> None:
    t = templates[0][0]
    morpho = tagged(9, [(2, b"1"), (3, b"0"), (4, b"U"), (71, b"opaque"), (99, b"x")])
    with pytest.raises(AnsiNistError) as info:
        read_transaction(transaction([(9, morpho)]))
    assert info.value.reason == "no_images" and "MorphoTrak" in info.value.message

    both = tagged(9, [*m1_fields(t, idc=2), *legacy_fields(t, idc=2)[3:]])
    empty = tagged(9, [(2, b"3"), (4, b"S"), (10, b"0")])
    found = read_transaction(transaction([(9, morpho), (9, both), (9, empty)]))
    assert [(m.idc, m.template) for m in found.minutiae] == [(2, m1_expected(t))]
    assert [n.split(";")[0].split(" (")[0] for n in found.notes] == [
        "type-9 IDC 1 holds no standard minutiae",
        "type-9 IDC 2: a second encoding of its minutiae",
        "type-9 IDC 3 lists no minutiae",
    ]


def test_load_minutiae_only_transactions_then_search(
    node_env: Settings,
    session: Session,
    tmp_path: Path,
    templates: list[list[FingerprintTemplate]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / "nist"
    root.mkdir()
    for i, name in enumerate(("alice", "bob")):
        t = dataclasses.replace(templates[i][0], finger_position=i + 1)
        (root / f"{name}.an2").write_bytes(transaction([(9, tagged(9, m1_fields(t)))]))
    carol = dataclasses.replace(templates[2][0], finger_position=3)
    (root / "carol.eft").write_bytes(transaction([(9, tagged(9, legacy_fields(carol)))]))
    code, out = load_json(root, capsys)
    assert (code, out["enrolled"], out["subjects"], out["failed"]) == (0, 3, 3, [])
    positions = session.execute(select(TemplateRecord.finger_position)).scalars().all()
    assert sorted(positions) == [1, 2, 3]
    code, again = load_json(root, capsys)
    assert (code, again["enrolled"], again["skipped"]) == (0, 0, 3)

    with (
        GallerySet.open(node_env.gallery_path) as galleries,
        galleries.reading(fingerprint_schema()) as gallery,
    ):
        assert gallery is not None
        names = {subject_key(s.id): s.external_id for s in session.scalars(select(Subject))}
        for i, subject in enumerate(("alice", "bob", "carol")):
            probe = dataclasses.replace(templates[i][1], finger_position=0)
            best = fingerprint_candidates(gallery, [probe], k=3)[0]
            assert names[best.subject] == subject


def test_load_prefers_the_image_and_falls_back_to_minutiae(
    node_env: Settings,
    session: Session,
    tmp_path: Path,
    templates: list[list[FingerprintTemplate]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    finger = make_impression(make_master(31), 0)
    h, w = finger.shape
    blank = np.full((h, w), 255, np.uint8)  # no ridges: extraction fails
    t = dataclasses.replace(templates[0][0], width=w, height=h, finger_position=2)
    twin = dataclasses.replace(t, finger_position=4)
    records = [
        (14, type14(png(finger), 2, idc=1)),
        (9, tagged(9, m1_fields(t, idc=1))),  # the image's own minutiae: not enrolled
        (14, type14(png(blank), 4, idc=2)),
        (9, tagged(9, legacy_fields(twin, idc=2))),  # enrolled: its image gives nothing
        (9, tagged(9, [(2, b"3"), (4, b"U"), (40, b"cogent")])),
    ]
    (tmp_path / "dave.an2").write_bytes(transaction(records))
    code, out = load_json(tmp_path / "dave.an2", capsys)
    assert (code, out["enrolled"], out["failed"]) == (0, 2, [])
    assert [(n["file"], n["reason"]) for n in out["notes"]] == [
        ("dave.an2", "not_read"),
        ("dave.an2", "minutiae_used"),
    ]
    assert "Cogent" in out["notes"][0]["detail"] and "IDC 2" in out["notes"][1]["detail"]
    rows = session.execute(select(TemplateRecord.finger_position, TemplateRecord.quality)).all()
    assert sorted(p for p, _ in rows) == [2, 4]
