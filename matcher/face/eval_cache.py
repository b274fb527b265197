"""Per-image outcomes of a face dataset run, saved to and loaded from one ``.npz`` file.

With the outcomes cached, the accuracy figures and failure diagnoses recompute in seconds
instead of re-running detection and embedding (~0.25 CPU-s per LFW image). Arrays, n images in
dataset order: ``files`` and ``identities`` str (n,); ``reasons`` str (n,) (the failure-to-enrol
reason, "" when enrolled); ``embeddings`` float32 (n, d) (zeros when not enrolled); ``boxes``
int32 (n, 4) [left, top, right, bottom] (-1 when not enrolled); ``faces_found`` int32 (n,);
``whole_image`` bool (n,); ``notes`` str (n,) (the extraction notes joined by "; "). ``meta``
is a JSON string (options, timing medians). Saved without pickling (plain dtypes only).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from matcher.face.errors import DatasetError

CACHE_VERSION = 1


@dataclass(frozen=True)
class EvalRecords:
    """Outcome of every image of a dataset run (see the module docstring for shapes)."""

    files: npt.NDArray[np.str_]
    identities: npt.NDArray[np.str_]
    reasons: npt.NDArray[np.str_]
    embeddings: npt.NDArray[np.float32]
    boxes: npt.NDArray[np.int32]
    faces_found: npt.NDArray[np.int32]
    whole_image: npt.NDArray[np.bool_]
    notes: npt.NDArray[np.str_]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def enrolled(self) -> npt.NDArray[np.bool_]:
        return np.asarray(self.reasons == "", dtype=bool)


_ARRAYS = ("files", "identities", "reasons", "embeddings", "boxes", "faces_found", "whole_image")


def save(path: str | os.PathLike[str], records: EvalRecords) -> None:
    """Write ``records`` to ``path`` (an ``.npz``; the folder is created)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    arrays = {name: getattr(records, name) for name in _ARRAYS}
    with target.open("wb") as fh:
        np.savez_compressed(
            fh,
            version=np.int32(CACHE_VERSION),
            notes=records.notes,
            meta=np.str_(json.dumps(records.meta, sort_keys=True)),
            **arrays,
        )


def load(path: str | os.PathLike[str]) -> EvalRecords:
    """Read records written by :func:`save`; a bad or foreign file raises ``DatasetError``."""
    try:
        with np.load(Path(path), allow_pickle=False) as z:
            if int(z["version"]) != CACHE_VERSION:
                raise DatasetError(
                    f"{path}: cache version {int(z['version'])}, expected {CACHE_VERSION}",
                    reason="bad_cache",
                )
            got = {name: z[name] for name in (*_ARRAYS, "notes")}
            meta = json.loads(str(z["meta"]))
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(
            f"{path}: not a face evaluation cache ({exc})", reason="bad_cache"
        ) from exc
    n = got["files"].shape[0]
    if any(a.shape[0] != n for a in got.values()):
        raise DatasetError(f"{path}: arrays of different lengths", reason="bad_cache")
    return EvalRecords(meta=meta, **got)
