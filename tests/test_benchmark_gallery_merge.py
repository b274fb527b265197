"""benchmarks/gallery_merge.py: one round of each way on a real gallery set, with no idle sleep."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from matcher.fingerprint import match
from matcher.search.fingerprint import fingerprint_records
from matcher.synthetic.templates import synthetic_templates

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gallery_merge.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gallery_merge_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("held", [False, True])
def test_a_round_has_idle_searches_without_an_idle_sleep(
    script: ModuleType, held: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With IDLE_S = 0 no search finished before the append and the round crashed with
    "no median for empty data"; it now waits for MIN_IDLE_SEARCHES searches instead."""
    monkeypatch.setattr(script, "IDLE_S", 0.0)
    raw = synthetic_templates(8, 2, seed=7)
    base = fingerprint_records(
        [f"x{i}" for i in range(8)], [f"F{i}" for i in range(8)], [match.prepare(f[0]) for f in raw]
    )
    row = script.one_round(base, raw[0][1], 32, held)
    assert row["idle_search_ms"] > 0
    assert row["append_s"] > 0 and row["erase_s"] > 0
    assert row["longest_search_during_ms"] >= 0 and row["longest_search_during_erase_ms"] >= 0
