"""The compiled row gather of two-stage search against plain numpy indexing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matcher.fingerprint.match.types import FIELD_PAD
from matcher.search.gather import _read_only, gather_rows


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 12),
    big_m=st.integers(1, 10),
    cut=st.integers(0, 9),
    h=st.integers(1, 4),
    w=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_gather_rows_copies_what_numpy_indexing_gives(
    n: int, big_m: int, cut: int, h: int, w: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    d, m = 8, max(1, big_m - cut)
    desc = _read_only(rng.integers(0, 256, (n, big_m, d), dtype=np.uint8))
    inv = _read_only(rng.random((n, big_m), dtype=np.float32))
    geo = _read_only(rng.random((n, big_m, 4), dtype=np.float32))
    counts = _read_only(rng.integers(0, 99, n, dtype=np.int32))
    field = _read_only(rng.integers(0, 256, (n, h, w), dtype=np.uint8))
    rows = np.sort(rng.choice(n, rng.integers(1, n + 1), replace=False)).astype(np.int64)
    at, total, start = 2, rows.size + 3, 1000
    ids = np.full(total, -1, np.int64)
    out_desc = np.zeros((total, m, d), np.uint8)
    out_inv = np.zeros((total, m), np.float32)
    out_geo = np.zeros((total, m, 4), np.float32)
    out_counts = np.zeros(total, np.int32)
    out_field = np.full((total, h + 1, w + 2), FIELD_PAD, np.uint8)
    gather_rows(
        rows, start, desc, inv, geo, counts, field,
        at, ids, out_desc, out_inv, out_geo, out_counts, out_field,
    )  # fmt: skip
    sel = slice(at, at + rows.size)
    assert np.array_equal(ids[sel], rows + start)
    assert np.array_equal(out_desc[sel], desc[rows, :m])
    assert np.array_equal(out_inv[sel], inv[rows, :m])
    assert np.array_equal(out_geo[sel], geo[rows, :m])
    assert np.array_equal(out_counts[sel], counts[rows])
    assert np.array_equal(out_field[sel, :h, :w], field[rows])
    assert (out_field[sel, h:] == FIELD_PAD).all() and (out_field[sel, :, w:] == FIELD_PAD).all()
    untouched = np.r_[0:at, at + rows.size : total]
    assert (ids[untouched] == -1).all() and not out_desc[untouched].any()


def test_gather_rows_refuses_what_would_read_or_write_outside() -> None:
    desc = np.zeros((3, 4, 8), np.uint8)
    inv, geo = np.zeros((3, 4), np.float32), np.zeros((3, 4, 4), np.float32)
    counts, field = np.zeros(3, np.int32), np.zeros((3, 2, 2), np.uint8)

    def call(rows: list[int], m: int = 4, at: int = 0, out_field: tuple[int, int] = (2, 2)) -> None:
        n = 3
        gather_rows(
            np.array(rows, np.int64), 0, desc, inv, geo, counts, field, at,
            np.zeros(n, np.int64), np.zeros((n, m, 8), np.uint8), np.zeros((n, m), np.float32),
            np.zeros((n, m, 4), np.float32), np.zeros(n, np.int32),
            np.zeros((n, *out_field), np.uint8),
        )  # fmt: skip

    call([0, 2])  # fits
    with pytest.raises(ValueError):
        call([0], m=5)  # rows longer than the segment's
    with pytest.raises(ValueError):
        call([0], out_field=(1, 2))  # the segment's fields do not fit
    with pytest.raises(ValueError):
        call([0, 1], at=2)  # past the output's end
    with pytest.raises(IndexError):
        call([3])  # not a row of the segment
