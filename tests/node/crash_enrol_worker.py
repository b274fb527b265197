"""Enrols and deletes in a loop until killed (driven by test_node_crash.py).

Usage: python crash_enrol_worker.py DATABASE_URL GALLERY_DIR SEED
Prints "ready" once the first batch is enrolled.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np

from matcher.gallery import FieldSpec, GallerySchema
from node.db.engine import create_db_engine, session_factory
from node.db.models import Modality
from node.errors import NotFoundError
from node.services.galleries import GallerySet, gallery_writer
from node.services.records import NewRecord, RecordService

SCHEMA = GallerySchema("face", "crash-embedding", 1, {"embedding": FieldSpec("float32", (4,))})
BATCH = 5


def main() -> None:
    url, gallery_dir, seed = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(seed)
    sessions = session_factory(create_db_engine(url))
    with GallerySet.open(gallery_dir) as galleries, sessions() as session:
        service = RecordService(session, galleries)
        for step in range(10**9):
            subject = f"w{seed}-{step}"
            new = [
                NewRecord(subject, Modality.FACE, SCHEMA.format, SCHEMA.format_version)
                for _ in range(BATCH)
            ]
            emb = rng.standard_normal((BATCH, 4)).astype(np.float32)
            service.enrol(new, gallery_writer(galleries, SCHEMA, {"embedding": emb}), actor="w")
            if step % 3 == 2:
                with contextlib.suppress(NotFoundError):
                    service.delete_subject(f"w{seed}-{step - 1}", actor="w")
            if step == 0:
                print("ready", flush=True)


if __name__ == "__main__":
    main()
