"""Deterministic write workload shared by the crash writer and the crash test's checker.

Operation ``i`` is a pure function of ``i`` and the state before it, so the expected gallery
content after any number of committed operations can be replayed exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from matcher.gallery import FieldSpec, Gallery, GallerySchema, RecordBatch

SCHEMA = GallerySchema("fingerprint", "crash-test", 1, {"xy": FieldSpec("float32", (-1, 2))})


@dataclass(frozen=True)
class Op:
    kind: str  # "append", "delete" or "compact"
    batch: RecordBatch | None = None
    refs: tuple[str, ...] = ()


def make_op(i: int, live: list[str]) -> Op:
    if i % 7 == 6:
        return Op("compact")
    if i % 3 == 2 and live:
        rng = np.random.default_rng(10_000 + i)
        pick = rng.choice(len(live), size=min(3, len(live)), replace=False)
        return Op("delete", refs=tuple(sorted(live)[j] for j in pick))
    rng = np.random.default_rng(i)
    n, width = int(rng.integers(5, 20)), int(rng.integers(1, 6))
    batch = RecordBatch.build(
        [f"op{i}-{j}" for j in range(n)],
        [f"s{(i + j) % 4}" for j in range(n)],
        [(i + j) % 11 for j in range(n)],
        {"xy": rng.random((n, width, 2), dtype=np.float32)},
        format="crash-test",
        format_version=1,
    )
    return Op("append", batch=batch)


def expected(ops: int) -> dict[str, tuple[str, int, np.ndarray]]:
    """ref -> (subject, position, xy) after operations ``0 .. ops-1``."""
    state: dict[str, tuple[str, int, np.ndarray]] = {}
    for i in range(ops):
        op = make_op(i, list(state))
        if op.kind == "append" and op.batch is not None:
            b = op.batch
            for j, ref in enumerate(b.references):
                xy = b.arrays["xy"][j]
                state[ref.decode()] = (b.subjects[j].decode(), int(b.positions[j]), xy)
        elif op.kind == "delete":
            for ref in op.refs:
                del state[ref]
    return state


def apply(gallery: Gallery, i: int) -> None:
    op = make_op(i, gallery.references())
    user = {"ops": i + 1}
    if op.kind == "append" and op.batch is not None:
        gallery.append(op.batch, user=user)
    elif op.kind == "delete":
        gallery.delete(op.refs, user=user)
    else:
        gallery.compact(user=user)
