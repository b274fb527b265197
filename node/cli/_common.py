"""Options and helpers shared by the node's command groups.

To add a command group: write ``node/cli/<name>_cmd.py`` with ``app = typer.Typer(help=...)``
and commands taking ``config: ConfigOption = None`` (and ``json: JsonOption = False`` where a
script reads the output); open the database with ``session_for(settings_from(config))``; raise
typed errors (``main`` prints them as one line with their exit code); then add one
``app.add_typer(<name>_cmd.app, name="<name>")`` line in ``node/cli/__init__.py:_register``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress
from sqlalchemy.orm import Session

from matcher.readfile import FileTooLargeError, read_bounded
from node.db.setup import open_database
from node.errors import ConfigError, NotFoundError
from node.service_errors import InvalidRequestError, PayloadTooLargeError
from node.settings import Settings, load_settings


def printable(text: object) -> str:
    """``text`` for a terminal: every character Unicode calls "other" or "separator" (controls
    and escape sequences, newlines that forge lines, bidi overrides, zero-width marks; the
    space excepted) shown as a ``\\x1b``/``\\u202e`` escape. The names and labels printed come
    from others: file names, ids, peers' words."""
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in str(text)
    )


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
    log on commit, as the running service does (:mod:`node.audit.actions`). A stale trust
    list or CRL, or an expired or revoked certificate of the node's, is a warning on stderr
    (:func:`warn`): the peer exchange refuses, local administration goes on.
    """
    engine, sessions = open_database(settings)
    stop = None
    try:
        if settings.pki_dir is not None:
            from node.audit.actions import mirror_actions
            from node.exchange.setup import open_transparency_log

            log = open_transparency_log(settings, engine, record=False, warn=warn)
            stop = mirror_actions(sessions, log, settings.country)
        with sessions() as session:
            yield session
    finally:
        if stop is not None:
            stop()
        engine.dispose()


def warn(sentence: str) -> None:
    """One warning line on stderr: ``bdx: warning: <sentence>``."""
    typer.echo(f"bdx: warning: {printable(sentence)}", err=True)


def settings_from(config: Path | None) -> Settings:
    return load_settings(config)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


#: Largest file :func:`read_input` reads where its caller names no bound: a key, a
#: certificate, a token are a few KB.
MAX_INPUT_BYTES = 1024 * 1024


def read_input(path: Path, what: str, *, max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a file the user named: exit 4 when it does not exist, 3 when it cannot be
    read (a folder, no permission) or is over ``max_bytes``; the message names ``what``.
    A device or pipe states no size (0: ``/dev/zero`` was read without end): at most
    ``max_bytes`` + 1 bytes are read, one too many is too large (:func:`read_bounded`; a pipe
    the user named is read, as ``cat`` reads it)."""
    try:
        return read_bounded(path, max_bytes, regular_only=False)
    except FileTooLargeError as exc:
        raise PayloadTooLargeError(
            f"{what} {path} is {exc.said}; at most {max_bytes} are read",
            reason="file_too_large",
        ) from None
    except FileNotFoundError:
        raise NotFoundError(f"no {what} {path}") from None
    except OSError as exc:
        raise InvalidRequestError(
            f"cannot read {what} {path}: {exc.strerror}", reason="unreadable_file"
        ) from None


def writable_output(out: Path, option: str = "--out") -> Path:
    """``out``, its folder made if needed, checked before any work or state change (exit 2
    as a bad option otherwise): a file that cannot be written must not leave an issued
    certificate, a used sequence number or a half-done export behind."""
    if out.is_dir():
        raise typer.BadParameter(f"{out} is a folder; give a file name", param_hint=option)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot make {out.parent}: {exc.strerror}", param_hint=option
        ) from None
    if not os.access(out.parent, os.W_OK):
        raise typer.BadParameter(f"cannot write in {out.parent}", param_hint=option)
    return out


def writable_folder(out: Path, option: str = "--out", *, mode: int = 0o777) -> Path:
    """``out`` as an output folder: made if needed (with ``mode``), checked before any work or
    state change as :func:`writable_output` checks a file (exit 2 as a bad option otherwise):
    a file in its place or on its way was a FileExistsError or NotADirectoryError traceback
    after a key had been made."""
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} is a file; give a folder", param_hint=option)
    try:
        out.mkdir(parents=True, exist_ok=True, mode=mode)
    except OSError as exc:
        raise typer.BadParameter(f"cannot make {out}: {exc.strerror}", param_hint=option) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"cannot write in {out}", param_hint=option)
    return out


#: Mode of files ``write_output`` makes: an exchange-log export holds what the node's database
#: holds (subject ids of enrolments, case references, officers' names), and the node keeps its
#: database readable by its own user only (an export was 0644 under the usual umask).
OUTPUT_FILE_MODE = 0o600


def write_output(out: Path, data: bytes) -> None:
    """Write ``data`` to ``out``, readable by this user only (:data:`OUTPUT_FILE_MODE`),
    through a temporary file renamed into place (a failure leaves no half-written file); a
    failure (disk full, removed folder) is exit 2, one line."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OUTPUT_FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(
            f"cannot write {out}: {exc.strerror}", reason="unwritable_output"
        ) from None


def progress_console() -> Console:
    """Where progress bars are drawn: standard error (standard output is the report's)."""
    return Console(stderr=True)


def count_progress(quiet: bool) -> Progress:
    """A transient bar of done / total on :func:`progress_console`, drawn unless
    :func:`no_progress` (``quiet``: ``--json``)."""
    console = progress_console()
    return Progress(
        *Progress.get_default_columns(),
        MofNCompleteColumn(),
        transient=True,
        disable=no_progress(console, quiet),
        console=console,
    )


def no_progress(console: Console, quiet: bool) -> bool:
    """Whether to draw no bars: asked for (``--json``), or standard error is no terminal
    (a script or a log file: rich still writes a blank line there, which turned a one-line
    error into two)."""
    return quiet or not console.is_terminal
