"""Peak memory of decoding small files that declare huge images (decompression-style inputs).

Each case is a 7,999 x 7,999 image (64 MP, within the reader's pixel limit) whose file is a few
hundred KiB: a float32 TIFF, an RGBA PNG, a 16-bit PNG and a baseline JPEG. For every case and
reader (``load_grayscale``, ``load_rgb``, the fingerprint path ``extract_file``, and the face
path's decode ``face_decode``: ``load_rgb`` with the face extractor's ``reduce_to``, which
decodes a large JPEG at a reduced scale), a fresh child
process reads the file, resets the kernel's peak-RSS mark (``/proc/self/clear_refs``), decodes,
and reports ``VmHWM - VmRSS`` before the call: the memory the decode itself needed. Errors are
expected (``too_large`` on the fingerprint path); the figure is what was spent before them.

    .venv/bin/python benchmarks/image_memory.py [--json]

Linux only (``/proc``). The files are made once in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 7999
READERS = ("load_grayscale", "load_rgb", "extract_file", "face_decode")

CHILD = """
import sys
from pathlib import Path

def status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])  # kB
    raise KeyError(key)

reader, path = sys.argv[1], sys.argv[2]
from matcher import imageio
from matcher.face import params as face_params
from matcher.fingerprint.extract import extract_file
def face_decode(data):
    return imageio.load_rgb(data, reduce_to=face_params.DECODE_MIN_SIDE)
call = {"load_grayscale": imageio.load_grayscale, "load_rgb": imageio.load_rgb,
        "extract_file": extract_file, "face_decode": face_decode}[reader]
data = Path(path).read_bytes()
Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
before = status("VmRSS")
try:
    call(data)
    outcome = "decoded"
except Exception as exc:
    outcome = getattr(exc, "reason", type(exc).__name__)
print(outcome, (status("VmHWM") - before) / 1024)
"""


def make_files(folder: Path) -> dict[str, Path]:
    """The four cases, each a constant image (so the files stay small)."""
    out = {"float32 TIFF": folder / "f32.tif", "RGBA PNG": folder / "rgba.png"}
    f32 = Image.fromarray(np.zeros((SIDE, SIDE), np.float32), "F")
    f32.save(out["float32 TIFF"], compression="tiff_adobe_deflate")
    Image.new("RGBA", (SIDE, SIDE), (10, 20, 30, 128)).save(out["RGBA PNG"])
    out["16-bit PNG"] = folder / "u16.png"
    Image.fromarray(np.full((SIDE, SIDE), 1000, np.uint16)).save(out["16-bit PNG"])
    out["RGB JPEG"] = folder / "rgb.jpg"
    Image.new("RGB", (SIDE, SIDE), (120, 100, 90)).save(out["RGB JPEG"], quality=90)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case, path in make_files(Path(tmp)).items():
            for reader in READERS:
                done = subprocess.run(
                    [sys.executable, "-c", CHILD, reader, str(path)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                outcome, mib = done.stdout.split()
                rows.append(
                    {
                        "case": case,
                        "file_kib": round(path.stat().st_size / 1024),
                        "reader": reader,
                        "outcome": outcome,
                        "peak_mib": round(float(mib)),
                    }
                )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        print(
            f"{r['case']:13} {r['file_kib']:5} KiB  {r['reader']:15} {r['outcome']:10} "
            f"+{r['peak_mib']} MiB"
        )


if __name__ == "__main__":
    main()
