"""``bdx eval``: accuracy and speed of extraction and comparison on a labelled dataset."""

from __future__ import annotations

import typer

from node.cli.eval_face import face
from node.cli.eval_fingerprint import fingerprint

app = typer.Typer(help="Measure accuracy (EER, FNMR at FMR, rank-1) and speed on a dataset.")
app.command("face")(face)
app.command("fingerprint")(fingerprint)
