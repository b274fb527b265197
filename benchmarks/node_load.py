"""Operators' bulk load speed: ``LoadService`` (what ``bdx gallery load`` runs) on synthetic
data, every core vs one core (the baseline, same process, same files, fresh node each run).

    .venv/bin/python benchmarks/node_load.py [--records 10000] [--images 24] [--json]

Templates: ``--records`` ISO/IEC 19794-2 files in FVC layout written from
``matcher.synthetic.synthetic_templates`` (2 impressions per finger), loaded into a fresh SQLite
node (decode, prepare for search, enrol in batches). Images: ``--images`` synthetic fingerprint
PNGs (``make_master``/``make_impression``), extracted and enrolled. Figures are files/s over
the whole load (discovery, hashing, reconcile, extraction, database and gallery writes).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from matcher.fingerprint.iso19794_2 import encode
from matcher.synthetic import make_impression, make_master, synthetic_templates
from node.db.engine import create_db_engine, session_factory
from node.db.migrate import upgrade
from node.formats.discover import discover
from node.services.galleries import GallerySet
from node.services.loading import LoadOptions, LoadService


def write_templates(root: Path, records: int) -> None:
    root.mkdir()
    for f, impressions in enumerate(synthetic_templates(records // 2, 2, seed=11)):
        for i, t in enumerate(impressions):
            (root / f"{f + 1}_{i + 1}.fmr").write_bytes(encode(t))


def write_images(root: Path, images: int) -> None:
    root.mkdir()
    for f in range(images // 2):
        master = make_master(100 + f)
        for i in range(2):
            out = io.BytesIO()
            Image.fromarray(make_impression(master, i)).save(out, format="PNG")
            (root / f"{f + 1}_{i + 1}.png").write_bytes(out.getvalue())


def timed_load(source: Path, work: Path, workers: int) -> tuple[float, int]:
    """Seconds to load ``source`` into a fresh node, and the records enrolled."""
    engine = create_db_engine(f"sqlite:///{work / 'node.sqlite3'}")
    upgrade(engine)
    with session_factory(engine)() as session, GallerySet.open(work / "galleries") as galleries:
        start = time.perf_counter()
        files = discover(source)
        report = LoadService(session, galleries).load(
            files, LoadOptions(workers=workers), actor="bench"
        )
        seconds = time.perf_counter() - start
    engine.dispose()
    if report.rejected:
        sys.exit(f"unexpected rejections: {report.rejected[:3]}")
    return seconds, report.enrolled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_templates(root / "iso", args.records)
        write_images(root / "png", args.images)
        for name, source in (("iso_templates", root / "iso"), ("png_images", root / "png")):
            rates = {}
            for workers in (cores, 1):
                work = root / f"{name}-{workers}"
                work.mkdir()
                seconds, enrolled = timed_load(source, work, workers)
                rates[workers] = enrolled / seconds
            rows.append(
                {
                    "data": name,
                    "files": enrolled,
                    "cores": cores,
                    "files_per_s": round(rates[cores], 1),
                    "files_per_s_one_core": round(rates[1], 1),
                    "speed_up": round(rates[cores] / rates[1], 2),
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        print(
            f"{r['data']:>14}: {r['files']} files, {r['files_per_s']}/s on {r['cores']} cores, "
            f"{r['files_per_s_one_core']}/s on one (x{r['speed_up']})"
        )


if __name__ == "__main__":
    main()
