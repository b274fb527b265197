"""The ``bdx`` console script's entry point: Ctrl-C while the command line loads is one line.

Loading :mod:`node.cli` imports every command group (numpy, numba, SQLAlchemy, dlib...), a
second or two in which a Ctrl-C printed Python's traceback; :func:`node.cli.main` handles the
rest.
"""

from __future__ import annotations

import sys

#: Exit status of an interrupted command (as :mod:`node.cli` reports it).
EXIT_INTERRUPTED = 130


def main() -> None:
    try:
        from node.cli import main as run
    except KeyboardInterrupt:
        print("bdx: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    run()
