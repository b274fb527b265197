"""``python -m matcher.synthetic DIR``: write a synthetic FVC-layout fingerprint database."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from matcher.errors import BdxError
from matcher.synthetic.dataset import FORMATS, write_dataset
from matcher.synthetic.impression import PROFILES

app = typer.Typer(
    add_completion=False,
    help="Write a synthetic FVC-layout fingerprint database.",
    context_settings={"help_option_names": ["-h", "--help"]},  # as bdx
)


@app.command()
def write(
    directory: Path = typer.Argument(..., help="Output folder (created if missing)."),
    fingers: int = typer.Option(10, "--fingers", "-f", help="Number of fingers (numbered from 1)."),
    impressions: int = typer.Option(8, "--impressions", "-i", help="Impressions per finger."),
    seed: int = typer.Option(0, "--seed", help="Dataset seed; same seed, same bytes."),
    profile: str = typer.Option(
        "typical", "--profile", help=f"Capture difficulty: {', '.join(PROFILES)}."
    ),
    fmt: str = typer.Option("png", "--format", help=f"Image format: {', '.join(FORMATS)}."),
    as_json: bool = typer.Option(False, "--json", help="Print the written paths as JSON."),
) -> None:
    """Write FINGERS × IMPRESSIONS synthetic images named <finger>_<impression>.<format>."""
    try:
        if as_json:
            paths = write_dataset(directory, fingers, impressions, seed, fmt=fmt, profile=profile)
        else:
            bars = Progress(
                TextColumn("generating"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            with bars:
                task = bars.add_task("fingers", total=fingers)
                paths = write_dataset(
                    directory,
                    fingers,
                    impressions,
                    seed,
                    fmt=fmt,
                    profile=profile,
                    progress=lambda done, _total: bars.update(task, completed=done),
                )
    except BdxError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(exc.exit_code) from None
    if as_json:
        typer.echo(json.dumps({"paths": [str(p) for p in paths]}))
    else:
        typer.echo(f"wrote {len(paths)} images to {directory}")


if __name__ == "__main__":
    sys.exit(app())
