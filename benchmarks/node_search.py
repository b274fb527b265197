"""Local 1:N fingerprint search through the node's HTTP API against the same search called
directly: the service overhead of ``POST /search/fingerprint``.

    .venv/bin/python benchmarks/node_search.py [--records 100000] [--distinct 2000]
        [--repeat 20] [--no-image] [--json]

The node: SQLite file database, ``create_app`` under a real uvicorn server on a loopback port
(server thread and keep-alive httpx client in one process), an officer's bearer token. Its
fingerprint gallery holds ``--records`` synthetic templates (``--distinct`` fingers from
``matcher.synthetic.synthetic_templates``, prepared once and tiled as ``benchmarks/search.py``
does), each an ACTIVE record of its own subject in the database, so every candidate resolves to
a subject. Database and gallery are built once under ``benchmarks/cache/`` (git-ignored), keyed
by the sizes and the gallery schema; each run works on a copy of the database (tokens and audit
events do not pile up in the cache) and opens the cached gallery without re-verifying it.

Timed round-robin (medians over ``--repeat``), each pair on the same probe:

* template probe: one finger as an ISO/IEC 19794-2:2005 record (second impression of finger 0,
  mates in the gallery), so extraction is not in the figure; baseline in the same process:
  ``search_fingerprint(gallery, probe, k=10)`` on the same open gallery (the service's default
  ``penetration="auto"``), the probe decoded from the same record beforehand;
* image probe (unless ``--no-image``): a PNG of a synthetic finger enrolled nowhere; baseline:
  ``extract_file`` of the same bytes, then the same direct search.

Overhead = HTTP median - direct median: the request and reply (JSON, base64, token check),
decoding the record, resolving candidates to subjects and the audit row's commit.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import uvicorn
from PIL import Image
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node_api import free_port, interleaved  # this folder's node benchmark helpers

from matcher.fingerprint import iso19794_2, match
from matcher.fingerprint.extract import extract_file
from matcher.fingerprint.template import FingerprintTemplate
from matcher.gallery import RecordBatch
from matcher.search import params as search_params
from matcher.search.fingerprint import fingerprint_records, fingerprint_schema, search_fingerprint
from matcher.synthetic import make_impression, make_master, synthetic_templates
from node.api.app import create_app
from node.db.engine import create_db_engine, session_factory
from node.db.migrate import upgrade
from node.db.models import Modality, RecordState, Role, Subject, TemplateRecord
from node.services.galleries import GallerySet, subject_key
from node.services.users import UserService
from node.settings import Settings

CACHE = Path(__file__).resolve().parent / "cache"
SEED = 0
#: A synthetic finger enrolled nowhere (the image probe).
STRANGER = 9_999
K = 10
#: Rows per database insert statement batch.
CHUNK = 10_000


def cache_dir(n: int, d: int) -> Path:
    """Where the node of ``n`` records tiled from ``d`` fingers is cached; a new matcher
    version or gallery schema builds anew."""
    schema = fingerprint_schema()
    fields = repr(sorted((k, v.dtype, v.shape) for k, v in schema.fields.items()))
    tag = hashlib.sha256(fields.encode()).hexdigest()[:8]
    return CACHE / f"node-search-{n}-d{d}-{schema.format}-v{schema.format_version}-f{tag}"


def build(path: Path, n: int, d: int) -> None:
    """The database (``node.sqlite3``) and gallery (``galleries/``) of ``n`` records, each of
    its own subject; ``COMPLETE`` marks a finished build."""
    if (path / "COMPLETE").exists():
        return
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    print(f"building a node of {n} records from {d} fingers in {path}", file=sys.stderr)
    prepared = [match.prepare(f[0]) for f in synthetic_templates(d, 1, seed=SEED)]
    base = fingerprint_records([f"x{i}" for i in range(d)], ["x"] * d, prepared)
    schema = fingerprint_schema()
    engine = create_db_engine(f"sqlite:///{path / 'node.sqlite3'}")
    upgrade(engine)
    with GallerySet.open(path / "galleries") as galleries, session_factory(engine)() as s:
        for lo in range(0, n, CHUNK):
            ids = range(lo + 1, min(n, lo + CHUNK) + 1)
            s.execute(insert(Subject), [{"id": i, "external_id": f"p-{i}"} for i in ids])
            s.execute(
                insert(TemplateRecord),
                [
                    {
                        "reference": f"r{i}",
                        "subject_id": i,
                        "modality": Modality.FINGERPRINT,
                        "format": schema.format,
                        "format_version": schema.format_version,
                        "finger_position": 0,
                        "restrictions": {},
                        "state": RecordState.ACTIVE,
                    }
                    for i in ids
                ],
            )
        s.commit()
        for lo in range(0, n, d):  # the gallery's record lo + j is finger j, subject lo + j + 1
            m = min(d, n - lo)
            batch = RecordBatch.build(
                [f"r{lo + j + 1}" for j in range(m)],
                [subject_key(lo + j + 1) for j in range(m)],
                base.positions[:m],
                {k: v[:m] for k, v in base.arrays.items()},
                format=base.format,
                format_version=base.format_version,
            )
            galleries.append(schema, batch)
    engine.dispose()
    (path / "COMPLETE").write_text(f"{n} records, {d} fingers\n")


def png_of_stranger() -> bytes:
    out = io.BytesIO()
    Image.fromarray(make_impression(make_master(STRANGER), 1)).save(out, format="PNG")
    return out.getvalue()


def run(n: int, d: int, repeat: int, with_image: bool) -> list[dict[str, object]]:
    path = cache_dir(n, d)
    build(path, n, d)
    record = iso19794_2.encode(synthetic_templates(1, 2, seed=SEED)[0][1])  # mate of finger 0
    probe = iso19794_2.decode(record)
    image = png_of_stranger() if with_image else b""
    schema = fingerprint_schema()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "node.sqlite3"
        shutil.copyfile(path / "node.sqlite3", db)
        url = f"sqlite:///{db}"
        engine = create_db_engine(url)
        with session_factory(engine)() as s:
            users = UserService(s)
            users.add_user("bench-officer", Role.OFFICER, actor="bench")
            token = users.issue_token("bench-officer", expires_days=1, actor="bench").token
        settings = Settings(data_dir=Path(tmp), database_url=url, country="XA")
        with GallerySet.open(path / "galleries", verify=False) as galleries:
            app = create_app(settings, engine=engine, gallery=galleries)
            config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
            server = uvicorn.Server(config)
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            while not server.started:  # start-up reconciles the database with the gallery
                time.sleep(0.01)
            headers = {"Authorization": f"Bearer {token}"}

            def body(finger: dict[str, object]) -> dict[str, object]:
                return {"fingers": [finger], "k": K}

            as_template = body({"template": base64.b64encode(record).decode()})
            as_image = body({"image": base64.b64encode(image).decode()})

            def direct(template: FingerprintTemplate) -> object:
                with galleries.reading(schema) as gallery:
                    assert gallery is not None
                    return search_fingerprint(gallery, template, k=K)

            with httpx.Client(base_url=f"http://127.0.0.1:{config.port}", timeout=600) as http:

                def post(payload: dict[str, object]) -> dict[str, object]:
                    r = http.post("/search/fingerprint", headers=headers, json=payload)
                    r.raise_for_status()
                    out: dict[str, object] = r.json()
                    return out

                first = post(as_template)  # warm-up: touches the gallery's pages
                direct(probe)
                ops: dict[str, Callable[[], object]] = {
                    "http template": lambda: post(as_template),
                    "direct template": lambda: direct(probe),
                }
                if with_image:
                    ops["http image"] = lambda: post(as_image)
                    ops["direct image"] = lambda: direct(extract_file(image))
                    post(as_image)
                times = interleaved(ops, repeat)
            server.should_exit = True
            thread.join()
        engine.dispose()
    size = int(str(first["gallery_size"]))
    two_stage = size >= search_params.AUTO_TWO_STAGE_RECORDS
    search = f"two-stage {search_params.AUTO_PENETRATION:.0%}" if two_stage else "exhaustive"
    rows: list[dict[str, object]] = []
    for kind in ("template", "image") if with_image else ("template",):
        http_ms, direct_ms = times[f"http {kind}"], times[f"direct {kind}"]
        rows.append(
            {
                "probe": kind,
                "gallery": size,
                "distinct": d,
                "search": search,
                "http_ms": http_ms,
                "direct_ms": direct_ms,
                "overhead_ms": http_ms - direct_ms,
                "ratio": http_ms / direct_ms,
                "repeat": repeat,
            }
        )
    rows[0]["hit"] = first["hit"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--distinct", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-image", action="store_true", help="time the template probe only")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.distinct <= args.records:
        parser.error("--distinct must lie in 1..--records")
    rows = run(args.records, args.distinct, args.repeat, not args.no_image)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return
    print("| probe | gallery (search) | HTTP median | direct median | overhead | ratio |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['probe']} | {r['gallery']:,} ({r['search']}) | {r['http_ms']:.1f} ms "
            f"| {r['direct_ms']:.1f} ms | {r['overhead_ms']:.1f} ms | {r['ratio']:.2f}x |"
        )


if __name__ == "__main__":
    main()
