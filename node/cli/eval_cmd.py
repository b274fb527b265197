"""``bdx eval``: accuracy and speed of extraction and comparison on a labelled dataset."""

from __future__ import annotations

import typer

app = typer.Typer(help="Measure accuracy (EER, FNMR at FMR, rank-1) and speed on a dataset.")
