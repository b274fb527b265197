"""ANSI/NIST-ITL transactions (traditional encoding) written by hand (``nist_support``): the
reader and ``bdx gallery load`` of their Type-4/14 fingerprint images (uncompressed, WSQ,
JPEG 2000, PNG) and Type-10 face images. Type-9 minutiae: ``test_ansi_nist_type9.py``."""

from __future__ import annotations

import io
import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from nist_support import png, tagged, transaction, type4, type14, wsq
from node_support import load_json
from PIL import Image
from skimage import data as skdata
from sqlalchemy import select
from sqlalchemy.orm import Session

from matcher.synthetic import make_impression, make_master
from node.db.models import Modality, TemplateRecord
from node.formats.ansi_nist import AnsiNistError, read_images, read_transaction
from node.formats.ansi_nist_images import wsq_refusal
from node.settings import Settings


@pytest.fixture(scope="module")
def fingers() -> list[np.ndarray]:
    return [make_impression(make_master(seed), 0) for seed in (21, 22)]


def test_read_images(fingers: list[np.ndarray]) -> None:
    t14 = tagged(14, [(2, b"1"), (13, b"7"), (999, png(fingers[0]))])
    t10 = tagged(10, [(2, b"2"), (999, b"\xff\xd8face\x1c\x1d")])  # separators in binary
    t2 = tagged(2, [(2, b"0"), (18, b"SMITH")])
    found = read_images(transaction([(2, t2), (14, t14), (4, type4(fingers[1], 3)), (10, t10)]))
    assert [(i.record_type, i.finger_position) for i in found] == [(14, 7), (4, 3), (10, None)]
    assert found[0].data == png(fingers[0])
    assert found[2].data == b"\xff\xd8face\x1c\x1d"
    decoded = np.asarray(Image.open(io.BytesIO(found[1].data)))
    assert np.array_equal(decoded, fingers[1])


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b[:-10], "truncated"),
        (lambda b: b"garbage" + b, "bad_record"),
    ],
)
def test_read_errors(fingers: list[np.ndarray], mutate: object, reason: str) -> None:
    data = transaction([(14, tagged(14, [(2, b"1"), (999, png(fingers[0]))]))])
    with pytest.raises(AnsiNistError) as info:
        read_images(mutate(data))  # type: ignore[operator]
    assert info.value.reason == reason


def test_read_refuses_compressed_type4_and_empty_transactions(fingers: list[np.ndarray]) -> None:
    with pytest.raises(AnsiNistError) as info:
        read_images(transaction([(4, type4(fingers[0], 1, compression=2))]))
    assert info.value.reason == "unsupported_compression"
    with pytest.raises(AnsiNistError) as info:
        read_images(transaction([(2, tagged(2, [(2, b"0")]))]))
    assert info.value.reason == "no_images"
    with pytest.raises(AnsiNistError) as info:
        read_images(transaction([(99, b"")]))
    assert info.value.reason == "bad_record"


def test_load_transactions(
    node_env: Settings,
    session: Session,
    tmp_path: Path,
    fingers: list[np.ndarray],
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / "nist"
    root.mkdir()
    t14 = tagged(14, [(2, b"1"), (13, b"2"), (999, png(fingers[0]))])
    t10 = tagged(10, [(2, b"2"), (999, png(skdata.astronaut()))])
    (root / "case-1.an2").write_bytes(
        transaction([(14, t14), (4, type4(fingers[1], 3)), (10, t10)])
    )
    (root / "case-2.eft").write_bytes(b"1.001:99")
    code, out = load_json(root, capsys)
    assert code == 3
    assert (out["enrolled"], out["subjects"]) == (3, 1)
    assert [(f["file"], f["error"]) for f in out["failed"]] == [("case-2.eft", "truncated")]
    rows = session.execute(select(TemplateRecord.modality, TemplateRecord.finger_position)).all()
    assert sorted((m.value, p or 0) for m, p in rows) == [
        (Modality.FACE.value, 0),
        (Modality.FINGERPRINT.value, 2),
        (Modality.FINGERPRINT.value, 3),
    ]


def test_a_transaction_is_loaded_whole_or_not_at_all(
    node_env: Settings,
    session: Session,
    tmp_path: Path,
    fingers: list[np.ndarray],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A transaction with a finger and a face: when the face's gallery append fails after the
    finger's, nothing of the file stays, and the next run loads both (the finger's records
    used to be committed on their own, so the re-run skipped the file and the face was lost)."""
    from node.services.galleries import GallerySet

    root = tmp_path / "nist"
    root.mkdir()
    t14 = tagged(14, [(2, b"1"), (13, b"2"), (999, png(fingers[0]))])
    t10 = tagged(10, [(2, b"2"), (999, png(skdata.astronaut()))])
    (root / "case-1.an2").write_bytes(transaction([(14, t14), (10, t10)]))
    append = GallerySet.append

    def face_fails(self: GallerySet, schema: object, batch: object) -> None:
        if getattr(schema, "modality", None) == "face":
            raise OSError("disk full")
        append(self, schema, batch)  # type: ignore[arg-type]

    monkeypatch.setattr(GallerySet, "append", face_fails)
    with pytest.raises(OSError):
        load_json(root, capsys)
    assert session.execute(select(TemplateRecord.id)).all() == []
    monkeypatch.setattr(GallerySet, "append", append)
    code, out = load_json(root, capsys)
    assert code == 0 and (out["enrolled"], out["skipped"]) == (2, 0)


def _decoded(data: bytes) -> tuple[np.ndarray, object]:
    image = Image.open(io.BytesIO(data))
    return np.asarray(image), image.info.get("dpi")


def test_wsq_raw_and_jpeg2000_images(fingers: list[np.ndarray]) -> None:
    finger = fingers[0]
    h, w = finger.shape
    jp2 = io.BytesIO()
    Image.fromarray(finger).save(jp2, format="JPEG2000", irreversible=False)
    records = [
        (4, type4(finger, 3, compression=1, idc=1)),
        (14, type14(wsq(finger), 4, idc=2, cga=b"WSQ20", size=(w, h))),
        (14, type14(wsq(finger), 5, idc=3, cga=b"WSQ")),  # no size: the WSQ frame's
        (14, type14(finger.tobytes(), 6, idc=4, cga=b"NONE", size=(w, h))),
        (14, type14(jp2.getvalue(), 7, idc=5, cga=b"JP2L")),
    ]
    found = read_transaction(transaction(records)).images
    assert [(i.record_type, i.finger_position, i.idc) for i in found] == [
        (4, 3, 1),
        (14, 4, 2),
        (14, 5, 3),
        (14, 6, 4),
        (14, 7, 5),
    ]
    for image in found[:3]:  # WSQ is lossy: close, at the stated 500 ppi
        pixels, dpi = _decoded(image.data)
        assert pixels.shape == finger.shape
        assert np.abs(pixels.astype(int) - finger).mean() < 12
        assert dpi is None or round(dpi[0]) == 500  # type: ignore[index]
    assert found[0].frame is not None and found[0].frame.ppi == 500
    assert np.array_equal(_decoded(found[3].data)[0], finger)
    assert np.array_equal(_decoded(found[4].data)[0], finger)  # lossless JPEG 2000


def test_record_resolution_reaches_the_extractor(fingers: list[np.ndarray]) -> None:
    """A file without resolution metadata in a 1000 ppi record is rewritten to state it; one
    that already states the record's resolution is handed on untouched."""
    h, w = fingers[0].shape
    stated = io.BytesIO()
    Image.fromarray(fingers[0]).save(stated, format="PNG", dpi=(1000, 1000))
    records = [
        (14, type14(png(fingers[0]), 1, idc=1, size=(w, h), ppi=1000)),
        (14, type14(stated.getvalue(), 2, idc=2, size=(w, h), ppi=1000)),
        (14, type14(png(fingers[0]), 3, idc=3, size=(w, h), ppi=500)),
    ]
    rewritten, kept, default = read_transaction(transaction(records)).images
    pixels, dpi = _decoded(rewritten.data)
    assert np.array_equal(pixels, fingers[0]) and round(dpi[0]) == 1000  # type: ignore[index]
    assert kept.data == stated.getvalue() and default.data == png(fingers[0])
    assert rewritten.frame is not None and rewritten.frame.ppi == 1000


def _wsq_header(width: int, height: int) -> bytes:
    """SOI and a frame header (length, black, white, height, width, ...) and nothing else."""
    frame = struct.pack(">HBBHHHBHB", 17, 0, 255, height, width, 0, 0, 0, 0)
    return b"\xff\xa0\xff\xa2" + frame + b"\0" * 8


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (lambda f: type4(f, 1, compression=2), "unsupported_compression"),
        (lambda f: type14(png(f), 1, cga=b"JPEGL"), "unsupported_compression"),
        (lambda f: type14(png(f), 1, cga=b"LZW"), "unsupported_compression"),
        (lambda f: type14(wsq(f)[:200], 1, cga=b"WSQ20"), "truncated"),
        (lambda f: type14(wsq(f)[:3000], 1, cga=b"WSQ20"), "bad_image"),
        (lambda f: type14(b"\xff\xa0" + bytes(300), 1, cga=b"WSQ20"), "bad_image"),
        (lambda f: type14(png(f), 1, cga=b"WSQ20"), "bad_image"),
        (lambda f: type14(_wsq_header(16000, 16000), 1, cga=b"WSQ20"), "bad_image"),
        (lambda f: type14(wsq(f), 1, cga=b"WSQ20", size=(10, 10)), "bad_record"),
        (lambda f: type14(f.tobytes()[:-1], 1, cga=b"NONE", size=f.shape[::-1]), "truncated"),
        (lambda f: type14(f.tobytes(), 1, cga=b"NONE"), "bad_record"),
    ],
    ids=[
        "type4-jpeg",
        "jpeg-lossless",
        "unknown",
        "wsq-no-frame",
        "wsq-truncated",
        "wsq-garbage",
        "wsq-not-wsq",
        "wsq-bomb",
        "wsq-size",
        "raw-short",
        "raw-no-size",
    ],
)
def test_image_errors(fingers: list[np.ndarray], record: object, reason: str) -> None:
    data = record(fingers[0])  # type: ignore[operator]
    rtype = 14 if data.startswith(b"14.") else 4
    with pytest.raises(AnsiNistError) as info:
        read_transaction(transaction([(rtype, data)]))
    assert info.value.reason == reason, info.value.message


def test_a_refused_wsq_stream_is_said_by_nbis_error_code_only(fingers: list[np.ndarray]) -> None:
    """The refusal passed on the last line of the decoder child's stderr. NBIS refuses with
    ``WSQ Error: <code>``, which is kept; but an exception with no message (a MemoryError)
    leaves NBIS's own ERROR lines last, which print values read from the stream."""
    truncated = type14(wsq(fingers[0])[:3000], 1, cga=b"WSQ20")
    with pytest.raises(AnsiNistError) as info:
        read_transaction(transaction([(14, truncated)]))
    said = info.value.message
    assert re.search(r"(^|: )WSQ data cannot be decoded \(NBIS error -[0-9]+\)$", said), said
    nbis_last = b"ERROR : getc_huffman_table : \nhuffman table 77 not defined\n\n"
    assert wsq_refusal(nbis_last) == "WSQ data cannot be decoded"
    assert wsq_refusal(b"ERROR : getc_byte : premature End Of Buffer\n\nWSQ Error: -39") == (
        "WSQ data cannot be decoded (NBIS error -39)"
    )
    assert wsq_refusal(b"") == "WSQ data cannot be decoded"


def test_load_wsq_transaction(
    node_env: Settings,
    session: Session,
    tmp_path: Path,
    fingers: list[np.ndarray],
    capsys: pytest.CaptureFixture[str],
) -> None:
    h, w = fingers[1].shape
    records = [
        (4, type4(fingers[0], 2, compression=1, idc=1)),
        (14, type14(wsq(fingers[1]), 7, idc=2, cga=b"WSQ20", size=(w, h))),
    ]
    (tmp_path / "case-9.eft").write_bytes(transaction(records))
    code, out = load_json(tmp_path / "case-9.eft", capsys)
    assert (code, out["enrolled"], out["failed"], out["notes"]) == (0, 2, [], [])
    positions = session.scalars(select(TemplateRecord.finger_position)).all()
    assert sorted(positions) == [2, 7]


def test_a_rejection_never_quotes_an_images_contents(
    node_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Type-10 image that is a plain PGM of text pixels: the decoder's message quoted 11
    bytes of the record (``Token too long found in data: DOE,JOHN_19``) in the report."""
    pgm = b"P2\n2 2\n255\n1 2 3 DOE,JOHN_1980-01-31\n"
    (tmp_path / "quote.an2").write_bytes(transaction([(10, tagged(10, [(2, b"1"), (999, pgm)]))]))
    code, out = load_json(tmp_path / "quote.an2", capsys)
    (failed,) = out["failed"]
    assert code == 3 and failed["error"] == "truncated"
    assert "DOE" not in failed["detail"] and "(ValueError)" in failed["detail"]


def _crashing_wsq_transaction() -> bytes:
    """A Type-4 WSQ record on which NBIS's decoder frees memory twice (found by fuzzing: a
    transaction of random 64x64 pixels with four bytes changed and seven inserted)."""
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64)).astype(np.uint8)
    data = bytearray(transaction([(4, type4(pixels, 3, 1))]))
    data[1128] = 0xDE
    data[1068:1068] = bytes.fromhex("b2a1bb43ffa48a")
    data[688] = 0xF2
    data[421] = 0x2E
    return bytes(data)


def test_a_wsq_stream_that_crashes_the_decoder_is_one_rejected_file(
    node_env: Settings, tmp_path: Path, fingers: list[np.ndarray]
) -> None:
    """The decoder runs in a child process, so only this file is refused and the load goes on
    (it aborted, exit 134 with one worker, and nothing was loaded). In a subprocess: a
    regression aborts that process, not the test run."""
    root = tmp_path / "load"
    root.mkdir()
    t14 = tagged(14, [(2, b"1"), (13, b"2"), (999, png(fingers[0]))])
    (root / "case-1.an2").write_bytes(transaction([(14, t14)]))
    (root / "case-2.an2").write_bytes(_crashing_wsq_transaction())
    bdx = [sys.executable, "-c", "from node.cli import main; main()"]
    args = ["gallery", "load", str(root), "--json", "--workers", "1"]
    done = subprocess.run([*bdx, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stderr
    out = json.loads(done.stdout)
    assert out["enrolled"] == 1
    assert [(f["file"], f["error"]) for f in out["failed"]] == [("case-2.an2", "bad_image")]
    assert "crashed the decoder" in out["failed"][0]["detail"]
    assert "ERROR :" not in done.stderr  # NBIS's own messages stay in the child
