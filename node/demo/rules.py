"""Write the demo region's rules files: ``python -m node.demo.rules DIR`` → ``DIR/<cc>.toml``.

Used by ``docker-compose.yml`` (one-shot service) so that the containers get the same rules as
``bdx demo``: MY answers asylum queries only; TH and ID answer border control and asylum.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from node.cli._common import writable_folder
from node.demo.region import COUNTRIES, rules_text

app = typer.Typer(
    add_completion=False,
    help="Write the demo region's rules files.",
    context_settings={"help_option_names": ["-h", "--help"]},  # as bdx
)


def write_rules(directory: Path) -> list[Path]:
    """One rules file per demo country in ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for cc in COUNTRIES:
        path = directory / f"{cc.lower()}.toml"
        path.write_text(rules_text(cc))
        paths.append(path)
    return paths


@app.command()
def write(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="folder for the files (made if missing)")
    ],
) -> None:
    """Write one rules file per demo country, DIR/<cc>.toml, and print their paths."""
    # A usage error (no DIR, two, an unknown option, DIR a file) is exit 2 and writes
    # nothing; `--help` is help (sys.argv read by hand made a folder named `--help`).
    for written in write_rules(writable_folder(directory, "DIR")):
        typer.echo(written)


if __name__ == "__main__":
    app()
