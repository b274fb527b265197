"""A baseline for same-process A/B timing: the fingerprint kernel of an earlier git revision."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


def baseline_kernel(rev: str) -> Callable[..., np.ndarray]:
    """``score_many`` of kernel.py at git revision ``rev``, loaded as a separate module."""
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(
        ["git", "show", f"{rev}:matcher/fingerprint/match/kernel.py"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_kernel.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_kernel", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_kernel"] = module
    spec.loader.exec_module(module)
    return module.score_many  # type: ignore[no-any-return]
