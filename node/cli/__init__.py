"""The ``bdx`` command line.

Each command group lives in its own module and is registered here. :func:`main` turns every
:class:`~matcher.errors.BdxError` into one line on stderr and the error's exit code (no
traceback for user errors); see README, "Exit codes".
"""

from __future__ import annotations

import errno
import inspect
import sys
from importlib import metadata
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from typer._click.core import Context
from typer._click.exceptions import BadParameter, NoArgsIsHelpError, UsageError
from typer._click.utils import PacifyFlushWrapper  # what typer puts on stdout after EPIPE
from typer.core import TyperOption
from typer.exceptions import TyperException

from matcher.errors import BdxError
from node.cli._common import printable
from node.cli._output import GuardedStdout, OutputError, discard_stdout
from node.console import EXIT_INTERRUPTED  # typer turns Ctrl-C into this code too

app = typer.Typer(
    name="bdx",
    help="bdx: a node for regional biometric hit/no-hit data exchange.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    """``bdx --version``: the installed distribution's version, then exit 0."""
    if value:
        typer.echo(f"bdx {metadata.version('bdx')}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_version, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """bdx: a node for regional biometric hit/no-hit data exchange."""


def _register() -> None:
    from node.cli import eval_cmd, policy_cmd

    app.add_typer(eval_cmd.app, name="eval")
    app.add_typer(policy_cmd.app, name="policy")
    from node.cli import db_cmd, gallery_cmd, serve, users_cmd

    app.add_typer(db_cmd.app, name="db")
    app.add_typer(users_cmd.app, name="users")
    app.add_typer(gallery_cmd.app, name="gallery")
    from node.cli import subjects_cmd

    app.add_typer(subjects_cmd.app, name="subjects")
    app.command("serve")(serve.serve)
    from node.cli import query_cmd

    app.command("query")(query_cmd.query)
    app.add_typer(query_cmd.history_app, name="queries")
    from node.cli import peers_cmd

    app.add_typer(peers_cmd.app, name="peers")
    from node.cli import pki_cmd

    app.add_typer(pki_cmd.app, name="pki")
    from node.cli import audit_cmd

    app.add_typer(audit_cmd.app, name="audit")
    from node.cli import demo

    app.command("demo")(demo.demo)


def _reflowed_help(group: typer.Typer) -> None:
    """Help texts that wrap to the terminal, not where the docstring's source lines end.

    In rich mode typer keeps a docstring's single line breaks, so help broke mid-sentence
    wherever the source wrapped. Each paragraph is joined into one line (rich wraps it), except
    one holding a list or indented lines, which keeps its lines; every command also gets its
    first paragraph as the one-line summary of its group's command list.
    """
    for info in group.registered_commands:
        doc = info.help or inspect.getdoc(info.callback) or ""
        if not doc:
            continue
        paragraphs = [_joined(p) for p in doc.split("\n\n")]
        info.help = "\n\n".join(paragraphs)
        if info.short_help is None:
            info.short_help = paragraphs[0]
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _reflowed_help(sub.typer_instance)


def _joined(paragraph: str) -> str:
    lines = paragraph.strip("\n").splitlines()
    if any(line[:1].isspace() or line.lstrip().startswith(("- ", "* ")) for line in lines):
        return "\n".join(lines)
    return " ".join(line.strip() for line in lines)


def _flags_show_no_value() -> None:
    """Help shows no value after a flag (``--json``, ``--help -h``, ``--yes``): typer's rich
    help gave each a ``<bool>``, as if it took one (``--json <bool>``); its plain help, as
    click's, shows none. Every typer command of this process is drawn so (``python -m
    node.demo.rules`` too)."""
    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Context) -> str | None:
        if self.is_flag and self.metavar is None:
            return None
        return shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_show_no_value()
_register()
_reflowed_help(app)


#: Exit status when the node's storage failed: its database or gallery is locked by another
#: process, damaged, full or unwritable (README, "Exit codes").
EXIT_STORAGE = 7
#: OS errors that are the machine's storage failing, not a bug: reported in one line. A
#: permission refused (EACCES, EPERM) reaching here is on the node's own files (data_dir, its
#: gallery and database): files the user names are read and written where they are given
#: (exit 2, 3 or 4).
STORAGE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES, errno.EPERM}
)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``bdx`` console script."""
    _escape_unencodable()
    stdout = sys.stdout
    if stdout is not None:  # None when started with it closed (>&-)
        sys.stdout = GuardedStdout(stdout)
    try:
        _run(argv)
    finally:
        if isinstance(sys.stdout, GuardedStdout):  # typer may have wrapped it: keep that
            sys.stdout = stdout


def _run(argv: list[str] | None) -> None:
    try:
        code = app(args=argv, prog_name="bdx", standalone_mode=False)
    except NoArgsIsHelpError as exc:  # a bare group: its help was the answer
        exc.show()
        sys.exit(exc.exit_code)
    except UsageError as exc:
        if isinstance(exc, BadParameter):
            _said_plainly(exc)
        print(_usage_line(exc), file=sys.stderr)
        sys.exit(exc.exit_code)
    except TyperException as exc:
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            print(f"bdx: error: {exc.format_message()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("bdx: aborted", file=sys.stderr)
        sys.exit(130)
    except BdxError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except OSError as exc:
        if exc.errno not in STORAGE_ERRNOS:
            _exit_if_path_mistake(exc)
            raise
        where = f": {exc.filename}" if exc.filename else ""
        print(f"bdx: error: {exc.strerror}{where} [storage_error]", file=sys.stderr)
        sys.exit(EXIT_STORAGE)
    except OperationalError as exc:  # the database: locked, full, gone (not the input)
        why = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        print(f"bdx: error: the database failed: {why} [database_unavailable]", file=sys.stderr)
        sys.exit(EXIT_STORAGE)
    except SystemExit as exc:
        if exc.code == 1 and _reader_gone(exc):
            sys.exit(EXIT_READER_GONE)
        raise
    if code == EXIT_INTERRUPTED:
        print("bdx: interrupted", file=sys.stderr)
    try:
        _flush_for_a_reader_gone()
    except OutputError as exc:
        _fail(exc)
    sys.exit(code if isinstance(code, int) else 0)


def _usage_line(exc: UsageError) -> str:
    """A usage error in the one line every other error has, with where to read the usage:
    click's block (``Usage: ...``, ``Try ... for help.``, a blank line, ``Error: ...``) was
    four lines, which a script reading the last line, or a log, cut apart."""
    message = printable(" ".join(exc.format_message().split()))
    command = exc.ctx.command_path if exc.ctx is not None else "bdx"
    return f"bdx: error: {message} (see '{command} -h') [usage]"


def _said_plainly(exc: BadParameter) -> None:
    """Word a usage error as a person would, where typer words it as Python would: an option
    read from one of several variables was ``(env var: '['BDX_POLICY_FILE', 'BDX_POLICY']')``
    (a list's repr), a value typer's pydantic refused began ``Value error, ``."""
    param = exc.param
    envvar = getattr(param, "envvar", None)
    if (
        exc.param_hint is None
        and param is not None
        and getattr(param, "show_envvar", False)
        and isinstance(envvar, list | tuple)
    ):
        names = " / ".join(f"'{opt}'" for opt in param.opts)
        exc.param_hint = f"{names} (env var: {' or '.join(f'{v!r}' for v in envvar)})"
    if isinstance(exc.__cause__, ValidationError):  # typer's coercion through pydantic
        errors = exc.__cause__.errors()
        why = errors[0].get("ctx", {}).get("error") if errors else None
        if isinstance(why, ValueError):  # a validator's own words, without pydantic's prefix
            exc.message = printable(why)


def _fail(exc: BdxError) -> NoReturn:
    if isinstance(exc, OutputError):
        discard_stdout()  # what stays buffered must not fail again at the last flush
    print(f"bdx: error: {exc.message} [{exc.reason}]", file=sys.stderr)
    sys.exit(exc.exit_code)


def _reader_gone(exc: SystemExit) -> bool:
    """Whether exit 1 is the answer to a departed reader: typer's (it wraps stdout in a
    PacifyFlushWrapper) or rich's (help, tables: SystemExit raised handling BrokenPipeError)."""
    return isinstance(sys.stdout, PacifyFlushWrapper) or isinstance(
        exc.__context__, BrokenPipeError
    )


#: OS errors on a path the user named (an output folder under a file, a data_dir that cannot be
#: made) that no command turned into a typed error: one line, exit 4 for a missing file, else 2
#: (a bad option or setting; README, "Exit codes"). Their reasons are stable.
PATH_MISTAKES: dict[type[OSError], tuple[int, str]] = {
    FileNotFoundError: (4, "file_not_found"),
    FileExistsError: (2, "file_exists"),
    NotADirectoryError: (2, "not_a_directory"),
    PermissionError: (2, "permission_denied"),
}


def _exit_if_path_mistake(exc: OSError) -> None:
    """Print ``exc`` as one line and exit with its code, when it is one of
    :data:`PATH_MISTAKES` and names its file; else return (the caller re-raises: a bug)."""
    for kind, (code, reason) in PATH_MISTAKES.items():
        if isinstance(exc, kind) and exc.filename is not None:
            print(
                f"bdx: error: {exc.strerror}: {printable(exc.filename)} [{reason}]", file=sys.stderr
            )
            sys.exit(code)


def _escape_unencodable() -> None:
    """Print what the terminal's encoding cannot show as ``\\u0e2a`` escapes: a subject id in
    Thai on an ISO-8859-1 terminal raised UnicodeEncodeError (a traceback, exit 1) after the
    command had done its work."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)  # None when closed (>&-)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


#: Exit status when the reader of stdout went away (`bdx users list | head -1`): what it read
#: is what it wanted, as with a whole output. typer exited 1 silently, the code of a bug.
EXIT_READER_GONE = 0


def _flush_for_a_reader_gone() -> None:
    """Flush stdout now; if its reader has gone, point it at /dev/null, so that the
    interpreter's own last flush does not print a BrokenPipeError (and exit 120)."""
    if sys.stdout is None:
        return
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        discard_stdout()
