"""Hostile or damaged ANSI/NIST-ITL transactions (``nist_support``; cases found by fuzzing
``read_transaction``): each is one rejected file of a ``bdx gallery load``, never the end of the
load, and no rejection quotes what a record holds (Type-2 holds names and dates of birth)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from nist_support import png, tagged, transaction, type4, type14
from PIL import Image

from matcher.synthetic import make_impression, make_master
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
