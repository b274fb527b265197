"""Hostile or damaged ANSI/NIST-ITL transactions (``nist_support``; cases found by fuzzing
``read_transaction``): each is one rejected file of a ``bdx gallery load``, never the end of the
load, and no rejection quotes what a record holds (Type-2 holds names and dates of birth)."""

from __future__ import annotations

import errno
import io
import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nist_support import png, tagged, transaction, type4, type14
from node_support import cli, load_json
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from matcher.synthetic import make_impression, make_master
from node.db.models import TemplateRecord
from node.formats.ansi_nist import GS, AnsiNistError, read_transaction
from node.settings import Settings

#: Personal data in a Type-2 record (and where a hostile file puts it into other records).
PERSONAL = b"DOE, JOHN 1980-01-31"


@pytest.fixture(scope="module")
def finger() -> np.ndarray:
    return make_impression(make_master(31), 0)


def _native_type4(pixels: np.ndarray) -> bytes:
    """A Type-4 record at the native resolution (ISR byte 1: Type-1 field 1.011)."""
    record = type4(pixels, 1)
    return record[:12] + b"\x01" + record[13:]


def _raw14(width: bytes, height: bytes, data: bytes = b"", ppi: bytes = b"500") -> bytes:
    fields = [(2, b"1"), (13, b"1"), (6, width), (7, height), (8, b"1"), (9, ppi)]
    return tagged(14, [*fields, (11, b"NONE"), (999, data)])


def _raw_tagged(rtype: int, body: bytes) -> bytes:
    """A tagged record of ``body`` as it is (fields the writer of ``nist_support`` would not
    write), with a right length field."""
    length = 0
    while True:
        record = b"%d.001:%d" % (rtype, length) + body + b"\x1c"
        if len(record) == length:
            return record
        length = len(record)


HOSTILE: dict[str, Callable[[np.ndarray], bytes]] = {
    "nsr-1e10": lambda f: transaction([(4, _native_type4(f))], type1=[(11, b"1e10")]),
    "nsr-inf": lambda f: transaction([(4, _native_type4(f))], type1=[(11, b"inf")]),
    "nsr-1e308": lambda f: transaction([(4, _native_type4(f))], type1=[(11, b"1e308")]),
    "nsr-nan": lambda f: transaction([(4, _native_type4(f))], type1=[(11, b"nan")]),
    "nsr-negative": lambda f: transaction([(4, _native_type4(f))], type1=[(11, b"-5")]),
    "hps-2**32": lambda f: transaction([(14, type14(png(f), 1, size=f.shape[::-1], ppi=2**32))]),
    "hps-99999": lambda f: transaction([(14, type14(png(f), 1, size=f.shape[::-1], ppi=99999))]),
    "hps-1": lambda f: transaction([(14, type14(png(f), 1, size=f.shape[::-1], ppi=1))]),
    "raw-0x0": lambda f: transaction([(14, _raw14(b"0", b"0"))]),
    "raw-huge-x0": lambda f: transaction([(14, _raw14(b"99999999999", b"0"))]),
    "raw-20000x1": lambda f: transaction([(14, _raw14(b"20000", b"1", bytes(20000)))]),
    "raw-5000-digits": lambda f: transaction([(14, _raw14(b"9" * 5000, b"1"))]),
    "type4-0x0": lambda f: transaction([(4, type4(f[:0, :0], 1))]),
    "field-number-5000-digits": lambda f: transaction(
        [(14, _raw_tagged(14, GS + b"14." + b"9" * 5000 + b":1"))]
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_values_are_bad_records(finger: np.ndarray, name: str) -> None:
    """Each raised OverflowError or ValueError (PNG's 32-bit resolution field, an empty image,
    Python's limit on integer digits) instead of the reader's typed error."""
    with pytest.raises(AnsiNistError) as info:
        read_transaction(HOSTILE[name](finger))
    assert info.value.reason == "bad_record", info.value.message


@pytest.mark.parametrize(("nsr", "ppi"), [(b"19.69", 500), (b"39.37", 1000), (b"00.00", None)])
def test_plausible_native_resolutions_are_read(
    finger: np.ndarray, nsr: bytes, ppi: int | None
) -> None:
    """19.69 px/mm is 500 ppi; 00.00, written by transactions without images, is none."""
    (image,) = read_transaction(transaction([(4, _native_type4(finger))], type1=[(11, nsr)])).images
    dpi = Image.open(io.BytesIO(image.data)).info.get("dpi")
    assert (round(dpi[0]) if dpi else None) == ppi


def _bdx(*args: str) -> subprocess.CompletedProcess[str]:
    bdx = [sys.executable, "-c", "from node.cli import main; main()"]
    return subprocess.run([*bdx, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_hostile_transactions_are_rejected_files_of_a_load(
    node_env: Settings, tmp_path: Path, finger: np.ndarray, workers: str
) -> None:
    """Two good images and three hostile transactions: the load ended with OverflowError
    (exit 1) and loaded nothing; now each transaction is one rejected file (exit 3)."""
    root = tmp_path / "load"
    for subject, seed in (("alice", 32), ("bob", 33)):
        (root / subject).mkdir(parents=True)
        Image.fromarray(make_impression(make_master(seed), 0)).save(root / subject / "1.png")
    for subject, name in (("carol", "nsr-1e10"), ("dave", "raw-0x0"), ("erin", "hps-2**32")):
        (root / subject).mkdir()
        (root / subject / "card.an2").write_bytes(HOSTILE[name](finger))
    done = _bdx("gallery", "load", str(root), "--json", "--workers", workers)
    assert done.returncode == 3, done.stderr
    out = json.loads(done.stdout)
    assert (out["enrolled"], out["subjects"]) == (2, 2)
    assert sorted((f["file"], f["error"]) for f in out["failed"]) == [
        ("carol/card.an2", "bad_record"),
        ("dave/card.an2", "bad_record"),
        ("erin/card.an2", "bad_record"),
    ]
    assert "Traceback" not in done.stderr


def _leaky_files(root: Path, finger: np.ndarray) -> None:
    """case-1: a malformed Type-2 (skipped) and a good finger; case-2..4: personal data in a
    malformed field, a size field and a compression field of the Type-14."""
    t2 = _raw_tagged(2, GS + b"2.002:00" + GS + b"2.018 " + PERSONAL)
    good = type14(png(finger), 1)
    (root / "case-1.an2").write_bytes(transaction([(2, t2), (14, good)]))
    bad_field = _raw_tagged(14, GS + b"14.002:1" + GS + PERSONAL + GS + b"14.999:" + png(finger))
    (root / "case-2.an2").write_bytes(transaction([(14, bad_field)]))
    (root / "case-3.an2").write_bytes(transaction([(14, _raw14(PERSONAL, b"1"))]))
    (root / "case-4.an2").write_bytes(transaction([(14, type14(png(finger), 1, cga=PERSONAL))]))


def test_no_rejection_quotes_a_record(
    node_env: Settings,
    session: Session,
    tmp_path: Path,
    finger: np.ndarray,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A Type-2 field without its colon rejected the transaction (Type-2 is skipped) and the
    report quoted it: ``malformed field b'2.018 DOE, JOHN 1980'``; so did the other errors of a
    field's value. Now the Type-2 is passed over unread and errors name field numbers only."""
    root = tmp_path / "nist"
    root.mkdir()
    _leaky_files(root, finger)
    caplog.set_level(logging.DEBUG)
    code, out, err = cli(["gallery", "load", str(root), "--json", "--workers", "1"], capsys)
    assert code == 3, err
    report: dict[str, Any] = json.loads(out)
    assert report["enrolled"] == 1
    assert [(f["file"], f["error"]) for f in report["failed"]] == [
        ("case-2.an2", "bad_record"),
        ("case-3.an2", "bad_record"),
        ("case-4.an2", "unsupported_compression"),
    ]
    for text in (out, err, caplog.text):
        assert "DOE" not in text and "1980" not in text
    code, out, err = cli(["gallery", "load", str(root), "--workers", "1"], capsys)  # text report
    assert code == 3 and "DOE" not in out + err


def test_skipped_records_are_not_parsed(finger: np.ndarray) -> None:
    """Types 2, 13, 15 and 17 are passed over by their length field alone: fields without a
    tag or colon, as a damaged (or hostile) writer leaves them, reject nothing."""
    garbage = GS + PERSONAL + GS + b"\xff\x00:" + GS
    records = [(t, _raw_tagged(t, garbage)) for t in (2, 13, 15, 17)]
    found = read_transaction(transaction([*records, (14, type14(png(finger), 3))]))
    assert [(i.record_type, i.finger_position) for i in found.images] == [(14, 3)]


def test_a_reader_defect_rejects_one_file(
    node_env: Settings,
    session: Session,
    tmp_path: Path,
    finger: np.ndarray,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unexpected error of a reader (here Pillow's, on one image size) is that file's
    rejection, naming and logging the error's type, never its message; the load goes on. It
    ended the load with a traceback and nothing loaded."""
    root = tmp_path / "nist"
    root.mkdir()
    odd = np.zeros((37, 41), np.uint8)
    (root / "case-1.an2").write_bytes(transaction([(14, type14(png(finger), 1))]))
    (root / "case-2.an2").write_bytes(transaction([(14, _raw14(b"41", b"37", odd.tobytes()))]))
    fromarray = Image.fromarray

    def broken_on_odd_sizes(pixels: np.ndarray, *args: Any, **kwargs: Any) -> Image.Image:
        if pixels.shape == odd.shape:
            raise OverflowError(f"cannot convert {PERSONAL.decode()}")
        return fromarray(pixels, *args, **kwargs)

    monkeypatch.setattr(Image, "fromarray", broken_on_odd_sizes)
    caplog.set_level(logging.INFO)
    code, out = load_json(root, capsys)
    assert code == 3
    assert out["enrolled"] == 1
    (failed,) = out["failed"]
    assert (failed["file"], failed["error"]) == ("case-2.an2", "unreadable_file")
    assert "OverflowError" in failed["detail"] and "OverflowError" in caplog.text
    assert "DOE" not in json.dumps(out) + caplog.text


def test_storage_failures_still_stop_a_load_with_hostile_files(
    node_env: Settings,
    session: Session,
    tmp_path: Path,
    finger: np.ndarray,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The per-file rejection of reader errors keeps the node's own disk failing as the end of
    the load (exit 7, nothing half-enrolled)."""
    from node.services.galleries import GallerySet

    root = tmp_path / "nist"
    root.mkdir()
    (root / "case-1.an2").write_bytes(transaction([(14, type14(png(finger), 1))]))
    (root / "case-2.an2").write_bytes(HOSTILE["nsr-1e10"](finger))

    def disk_full(self: GallerySet, schema: object, batch: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(GallerySet, "append", disk_full)
    code, _, err = cli(["gallery", "load", str(root), "--json", "--workers", "1"], capsys)
    assert code == 7, err
    assert "[storage_error]" in err
    assert session.execute(select(TemplateRecord.id)).all() == []
