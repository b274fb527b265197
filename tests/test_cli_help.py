"""Every ``bdx`` command answers ``--help``; group listings show whole one-line summaries."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from node.cli import app, main

runner = CliRunner()
WIDE = 400  # columns: wide enough that rich never wraps a summary, so a break comes from the text
ROOT: Any = typer.main.get_command(app)


def _walk(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = [(path, command)]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found += _walk(sub, (*path, name))
    return found


ALL = _walk(ROOT)
GROUPS = [(path, command) for path, command in ALL if hasattr(command, "commands")]


def _label(path: tuple[str, ...]) -> str:
    return " ".join(path) or "bdx"


def test_the_tree_is_found() -> None:
    paths = [path for path, _ in ALL]
    assert ("gallery", "stats") in paths and ("serve",) in paths and len(paths) > 30


@pytest.mark.parametrize("path", [path for path, _ in ALL], ids=_label)
def test_help_exits_zero(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": str(WIDE)})
    assert result.exit_code == 0, result.output
    assert "Usage: bdx" in result.output


@pytest.mark.parametrize(("path", "group"), GROUPS, ids=[_label(p) for p, _ in GROUPS])
def test_group_lists_each_summary_on_one_line(path: tuple[str, ...], group: Any) -> None:
    output = runner.invoke(app, [*path, "--help"], env={"COLUMNS": str(WIDE)}).output
    for name, command in group.commands.items():
        summary = command.get_short_help_str(limit=10_000)
        assert summary, f"{name} has no summary"
        line = next(line for line in output.splitlines() if f"│ {name} " in line)
        assert summary.rstrip(".")[:150] in line, (name, line)


@pytest.mark.parametrize("path", [path for path, _ in ALL], ids=_label)
def test_help_has_no_docstring_markup(path: tuple[str, ...]) -> None:
    output = runner.invoke(app, [*path, "--help"], env={"COLUMNS": str(WIDE)}).output
    for markup in ("``", ":func:", ":class:", ":meth:"):
        assert markup not in output, (markup, output)


@pytest.mark.parametrize(("path", "command"), ALL[1:], ids=[_label(p) for p, _ in ALL[1:]])
def test_help_paragraphs_wrap_to_the_terminal(path: tuple[str, ...], command: Any) -> None:
    """Each prose paragraph of a command's help is one line on a wide terminal: no break
    where the docstring's source line ended."""
    output = runner.invoke(app, [*path, "--help"], env={"COLUMNS": str(WIDE)}).output
    lines = [line.strip(" │") for line in output.splitlines()]
    doc = inspect.getdoc(command.callback) or ""
    for paragraph in doc.split("\n\n"):
        rows = paragraph.splitlines()
        if any(r[:1].isspace() or r.lstrip().startswith(("- ", "* ")) for r in rows):
            continue  # a list or indented lines: kept as written
        start = " ".join(r.strip() for r in rows)[:150]
        assert any(start in line for line in lines), (path, start)


@pytest.mark.parametrize("path", [path for path, _ in ALL], ids=_label)
def test_flags_show_no_value(path: tuple[str, ...]) -> None:
    """Every flag's help showed a ``<bool>`` value it does not take (``--json <bool>``,
    ``--help -h <bool>``); an option that takes one still shows its type."""
    output = runner.invoke(app, [*path, "--help"], env={"COLUMNS": str(WIDE)}).output
    assert "<bool>" not in output, output
    help_line = next(line for line in output.splitlines() if "--help" in line and "-h" in line)
    assert help_line.split() == [
        "│",
        "--help",
        "-h",
        "Show",
        "this",
        "message",
        "and",
        "exit.",
        "│",
    ]
    if path == ("users", "list"):
        assert any(
            line.split()[1:4] == ["--config", "-c", "<file>"] for line in output.splitlines()
        )


@pytest.mark.parametrize(
    ("path", "says", "not_says"),
    [
        (("db", "upgrade"), "up to --revision (default: head", "up to REVISION"),
        (("eval", "face"), "K of CSLS", "K fixed in"),
        (("audit", "list"), "most entries to show, at most 1000", None),
    ],
    ids=["db upgrade", "eval face", "audit list"],
)
def test_help_says_what_options_do(path: tuple[str, ...], says: str, not_says: str | None) -> None:
    """`db upgrade` spoke of a REVISION argument it does not take (the option is --revision),
    `eval face --csls-k` said K was fixed while the option sets it, `audit list --limit` gave
    no maximum."""
    output = runner.invoke(app, [*path, "--help"], env={"COLUMNS": str(WIDE)}).output
    text = " ".join(line.strip(" │") for line in output.splitlines())
    assert says in " ".join(text.split()), output
    assert not_says is None or not_says not in text


def test_version_is_the_installed_distributions() -> None:
    from importlib import metadata

    done = runner.invoke(app, ["--version"])
    assert (done.exit_code, done.stdout) == (0, f"bdx {metadata.version('bdx')}\n")


@pytest.mark.parametrize(
    ("argv", "fragment", "command"),
    [
        (["gallery", "stats", "--bogus"], "No such option: --bogus", "bdx gallery stats"),
        (["eval", "fingerprint", "--synthetic", "1:1"], "--synthetic", "bdx eval fingerprint"),
        (
            ["pki", "request", "--country", "ZZ"],
            "Missing option '--kind'. Choose from: tls, ",
            "bdx pki request",
        ),
        (["no-such-command"], "No such command 'no-such-command'", "bdx"),
    ],
)
def test_a_usage_error_is_one_line(
    argv: list[str], fragment: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Click's usage block was four lines (``Usage:``, ``Try ...``, a blank, ``Error: ...``)
    where every other error is one: a script reading the last line, or a log, cut it apart."""
    with pytest.raises(SystemExit) as done:
        main(argv)
    out, err = capsys.readouterr()
    assert done.value.code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("bdx: error: "), err
    assert fragment in err and err.endswith(f" (see '{command} -h') [usage]\n"), err


def test_a_group_without_its_command_prints_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["gallery"])
    out, err = capsys.readouterr()
    assert done.value.code == 2 and "Usage: bdx gallery" in out + err and "[usage]" not in err
