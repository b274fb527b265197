"""What the node's text log may say of an exception: a database's message withheld.

A database error's text quotes what it refused or could not store: PostgreSQL's ``DETAIL:
Key (sender, nonce)=(TH, ...) already exists`` names the stored value, a subject id, a hit
reference or a token hash. The engines hide statement parameters (``hide_parameters``), but
the driver's own message travels in the exception, and ``log.exception`` printed it with the
traceback (the API's unexpected-error handler, the housekeeping's rounds). :class:`LogFormatter`
prints such an exception's frames and type, never its message; other exceptions as ever.
"""

from __future__ import annotations

import sqlite3
import traceback
from types import TracebackType

from sqlalchemy.exc import DBAPIError
from uvicorn.logging import DefaultFormatter

#: Exceptions whose text comes from a database and may quote stored values.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (DBAPIError, sqlite3.Error)
try:
    import psycopg

    DATABASE_ERRORS += (psycopg.Error,)
except ImportError:  # the PostgreSQL driver is optional
    pass

WITHHELD = "(the database's message withheld: it may quote stored values)"

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or during, the first cause first."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return seen[::-1]


def format_exception(exc: BaseException) -> str:
    """The traceback of ``exc`` and its chain, each database error's message withheld."""
    chain = _chain(exc)
    # a driver's error (the ``orig`` of SQLAlchemy's) whatever its class: a driver not named
    drivers = [e.orig for e in chain if isinstance(e, DBAPIError)]
    withheld = [e for e in chain if isinstance(e, DATABASE_ERRORS) or any(e is d for d in drivers)]
    if not withheld:
        return "".join(traceback.format_exception(exc)).rstrip("\n")
    lines: list[str] = []
    for i, e in enumerate(chain):
        if i:
            lines.append("\nDuring the handling of the above, another exception occurred:\n\n")
        lines.append("Traceback (most recent call last):\n")
        lines.extend(traceback.format_tb(e.__traceback__))
        name = f"{type(e).__module__}.{type(e).__qualname__}"
        if any(e is w for w in withheld):
            lines.append(f"{name}: {WITHHELD}\n")
        else:
            lines.extend(traceback.format_exception_only(e))
    return "".join(lines).rstrip("\n")


class LogFormatter(DefaultFormatter):
    """uvicorn's formatter (level prefix), exceptions by :func:`format_exception`."""

    def formatException(self, ei: ExcInfo) -> str:  # type: ignore[override]
        return format_exception(ei[1])
