"""``bdx db``: create and migrate the node database."""

from __future__ import annotations

from typing import Annotated

import typer

from node.cli._common import ConfigOption, JsonOption, print_json, settings_from
from node.db import migrate
from node.db.engine import create_db_engine, reachable

app = typer.Typer(help="Create, migrate and inspect the node database.", no_args_is_help=True)


@app.command()
def upgrade(
    config: ConfigOption = None,
    revision: Annotated[str, typer.Option(help="target revision")] = "head",
    json: JsonOption = False,
) -> None:
    """Apply the migrations up to --revision (default: head, the latest). Safe to repeat.

    With --json: {"previous", "current", "head"}: the revision before (null for an empty
    database), after, and the latest one this bdx ships.
    """
    settings = settings_from(config)
    engine = create_db_engine(settings.db_url)
    try:
        with reachable(engine):
            previous = migrate.upgrade(engine, revision)
            now, head = migrate.current_revision(engine), migrate.head_revision(engine)
    finally:
        engine.dispose()
    if json:
        print_json({"previous": previous, "current": now, "head": head})
    else:
        typer.echo(f"database at revision {now}")


@app.command()
def current(config: ConfigOption = None, json: JsonOption = False) -> None:
    """Show the database's schema revision and the latest one this bdx ships."""
    settings = settings_from(config)
    engine = create_db_engine(settings.db_url)
    try:
        with reachable(engine):
            now, head = migrate.current_revision(engine), migrate.head_revision(engine)
            newer = now is not None and not migrate.known_revision(engine, now)
    finally:
        engine.dispose()
    if json:
        print_json({"current": now, "head": head, "up_to_date": now == head, "newer": newer})
    else:
        state = (
            "up to date"
            if now == head
            else "newer than this bdx: run the bdx that upgraded it"
            if newer
            else "needs `bdx db upgrade`"
        )
        typer.echo(f"current {now or '(empty)'}, head {head}: {state}")
