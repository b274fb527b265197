"""Batch extraction: input order, per-item errors, the process pool gives the same templates."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
import skimage.data

from matcher.face.batch import BatchItem, default_workers, extract_batch
from matcher.face.pipeline import ExtractOptions

from .conftest import encode


@pytest.fixture(scope="module")
def sources(astronaut: npt.NDArray[np.uint8]) -> list[object]:
    return [
        encode(astronaut),
        b"definitely not an image",
        encode(skimage.data.coffee(), "JPEG"),
        42,  # not bytes nor a path: an internal error confined to its item
        encode(astronaut[:, ::-1].copy()),
    ]


def check(items: list[BatchItem]) -> None:
    assert [i.index for i in items] == list(range(5))
    assert [i.ok for i in items] == [True, False, False, False, True]
    assert [i.reason for i in items] == [None, "not_an_image", "no_face", "internal_error", None]
    assert all(i.message for i in items if not i.ok)


def test_in_process(sources: list[object]) -> None:
    seen: list[int] = []
    items = extract_batch(sources, workers=1, progress=True, on_item=lambda i: seen.append(i.index))  # type: ignore[arg-type]
    check(items)
    assert seen == list(range(5))


def test_pool_matches_in_process(sources: list[object]) -> None:
    serial = extract_batch(sources, workers=1)  # type: ignore[arg-type]
    pooled = extract_batch(sources, ExtractOptions(), workers=2)  # type: ignore[arg-type]
    check(pooled)
    for a, b in zip(serial, pooled, strict=True):
        if a.extraction is not None:
            assert b.extraction is not None
            assert np.array_equal(a.extraction.template.embedding, b.extraction.template.embedding)


def test_empty_and_bad_worker_count() -> None:
    assert extract_batch([], workers=2) == []
    with pytest.raises(ValueError):
        extract_batch([b""], workers=-1)
    assert default_workers() >= 1
