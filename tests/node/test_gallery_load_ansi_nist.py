"""ANSI/NIST-ITL transactions (traditional encoding) written by hand here: the reader and
``bdx gallery load`` of their Type-4/14 fingerprint and Type-10 face images."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from matcher.synthetic import make_impression, make_master
from node.cli import main
from node.db.models import Modality, TemplateRecord
from node.formats.ansi_nist import FS, GS, RS, US, AnsiNistError, read_images
from node.settings import Settings


def tagged(rtype: int, fields: list[tuple[int, bytes]]) -> bytes:
    """A tagged record; its length field (T.001) counts itself."""
    body = b"".join(GS + b"%d.%03d:" % (rtype, n) + v for n, v in fields) + FS
    length = 0
    while True:  # the length's own digits change the length
        record = b"%d.001:%d" % (rtype, length) + body
        if len(record) == length:
            return record
        length = len(record)


def type4(pixels: np.ndarray, position: int, compression: int = 0) -> bytes:
    h, w = pixels.shape
    fgp = bytes([position, 255, 255, 255, 255, 255])
    header = struct.pack(">IBB6sBHHB", 18 + w * h, 1, 0, fgp, 1, w, h, compression)
    return header + pixels.tobytes()


def transaction(records: list[tuple[int, bytes]]) -> bytes:
    cnt = RS.join([b"1" + US + b"%d" % len(records)] + [b"%d" % t + US + b"0" for t, _ in records])
    head = tagged(1, [(2, b"0500"), (3, cnt), (4, b"CAR")])
    return head + b"".join(r for _, r in records)


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


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
        read_images(transaction([(4, type4(fingers[0], 1, compression=1))]))
    assert info.value.reason == "unsupported_compression"
    with pytest.raises(AnsiNistError) as info:
        read_images(transaction([(2, tagged(2, [(2, b"0")]))]))
    assert info.value.reason == "no_images"
    with pytest.raises(AnsiNistError) as info:
        read_images(transaction([(99, b"")]))
    assert info.value.reason == "bad_record"


def test_load_transactions(
    settings: Settings,
    engine: Engine,
    session: Session,
    tmp_path: Path,
    fingers: list[np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BDX_DATABASE_URL", settings.db_url)
    monkeypatch.setenv("BDX_DATA_DIR", str(settings.data_dir))
    root = tmp_path / "nist"
    root.mkdir()
    t14 = tagged(14, [(2, b"1"), (13, b"2"), (999, png(fingers[0]))])
    t10 = tagged(10, [(2, b"2"), (999, png(skdata.astronaut()))])
    (root / "case-1.an2").write_bytes(
        transaction([(14, t14), (4, type4(fingers[1], 3)), (10, t10)])
    )
    (root / "case-2.eft").write_bytes(b"1.001:99")
    with pytest.raises(SystemExit) as info:
        main(["gallery", "load", str(root), "--workers", "1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert info.value.code == 3
    assert (out["enrolled"], out["subjects"]) == (3, 1)
    assert [(f["file"], f["error"]) for f in out["failed"]] == [("case-2.eft", "truncated")]
    rows = session.execute(select(TemplateRecord.modality, TemplateRecord.finger_position)).all()
    assert sorted((m.value, p or 0) for m, p in rows) == [
        (Modality.FACE.value, 0),
        (Modality.FINGERPRINT.value, 2),
        (Modality.FINGERPRINT.value, 3),
    ]
