"""Options and helpers shared by the node's command groups.

To add a command group: write ``node/cli/<name>_cmd.py`` with ``app = typer.Typer(help=...)``
and commands taking ``config: ConfigOption = None`` (and ``json: JsonOption = False`` where a
script reads the output); open the database with ``session_for(settings_from(config))``; raise
typed errors (``main`` prints them as one line with their exit code); then add one
``app.add_typer(<name>_cmd.app, name="<name>")`` line in ``node/cli/__init__.py:_register``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.orm import Session

from node.db.setup import open_database
from node.settings import Settings, load_settings

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="settings file (TOML or dotenv); default $BDX_CONFIG, then BDX_* variables",
        dir_okay=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output on stdout")]


@contextmanager
def session_for(settings: Settings) -> Iterator[Session]:
    """A session on the node database (schema checked; see ``open_database``).

    When the node has an exchange log (``pki_dir`` set), the actions this session records
    (user and token management, loads, deletions) are also appended to that tamper-evident
    log on commit, as the running service does (:mod:`node.audit.actions`).
    """
    engine, sessions = open_database(settings)
    stop = None
    try:
        if settings.pki_dir is not None:
            from node.audit.actions import mirror_actions
            from node.exchange.setup import open_transparency_log

            log = open_transparency_log(settings, engine, record=False)
            stop = mirror_actions(sessions, log, settings.country)
        with sessions() as session:
            yield session
    finally:
        if stop is not None:
            stop()
        engine.dispose()


def settings_from(config: Path | None) -> Settings:
    return load_settings(config)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True, default=str))
