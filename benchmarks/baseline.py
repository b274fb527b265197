"""A baseline for same-process A/B timing: the fingerprint kernel of an earlier git revision.

The revision's ``kernel.py`` is loaded as a separate module, and so is its compiled stage
``consolidation.py`` where the revision has one (the kernel calls it): the baseline is then that
revision's whole kernel, not its ``kernel.py`` driving today's compiled stage (whose signature
may differ). ``params.py`` is today's; the baseline reads only the tunables it knows.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

_PACKAGE = "matcher/fingerprint/match"


def _source(root: Path, rev: str, name: str) -> str | None:
    """``name`` of the matcher package at ``rev``, or None where the revision lacks it."""
    done = subprocess.run(
        ["git", "show", f"{rev}:{_PACKAGE}/{name}"],
        cwd=root,
        check=False,
        capture_output=True,
        text=True,
    )
    return done.stdout if done.returncode == 0 else None


def _load(directory: Path, module_name: str, source: str) -> ModuleType:
    path = directory / f"{module_name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def baseline_kernel(rev: str) -> Callable[..., np.ndarray]:
    """``score_many`` of the kernel at git revision ``rev``, loaded as separate modules (and, for a
    compiled kernel, compiled here, so that the first timed call does not pay for it)."""
    root = Path(__file__).resolve().parents[1]
    kernel = _source(root, rev, "kernel.py")
    if kernel is None:
        raise SystemExit(f"{rev}: no {_PACKAGE}/kernel.py at that revision")
    directory = Path(tempfile.mkdtemp())
    module = _load(directory, "baseline_kernel", kernel)
    compiled = _source(root, rev, "consolidation.py")
    if compiled is not None and hasattr(module, "consolidation"):
        # The kernel looks its compiled stage up as a module global at call time.
        module.consolidation = _load(directory, "baseline_consolidation", compiled)
    if hasattr(module, "warm_up"):
        module.warm_up()
    return module.score_many  # type: ignore[no-any-return]
