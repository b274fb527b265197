from __future__ import annotations

import numpy as np
import pytest

from matcher.gallery import FieldSpec, GallerySchema, RecordBatch

SCHEMA = GallerySchema(
    "fingerprint",
    "test-format",
    1,
    {"xy": FieldSpec("float32", (-1, 2)), "count": FieldSpec("int32")},
)


def make_batch(prefix: str, n: int, width: int = 3, seed: int = 0) -> RecordBatch:
    """n records ``<prefix>-<i>`` of subject ``s<i % 5>``, deterministic arrays."""
    rng = np.random.default_rng(seed)
    return RecordBatch.build(
        [f"{prefix}-{i}" for i in range(n)],
        [f"s{i % 5}" for i in range(n)],
        [i % 11 for i in range(n)],
        {
            "xy": rng.random((n, width, 2), dtype=np.float32),
            "count": np.full(n, width, dtype=np.int32),
        },
        format="test-format",
        format_version=1,
    )


@pytest.fixture
def schema() -> GallerySchema:
    return SCHEMA
