"""The node's text log withholds a database error's message (it may quote stored values)."""

from __future__ import annotations

import io
import logging

from sqlalchemy.exc import IntegrityError

from node.logtext import WITHHELD, LogFormatter, format_exception

SECRET = "case-4711-secret"


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def _driver_error() -> Exception:
    return Exception(f"duplicate key\nDETAIL:  Key (sender, nonce)=(TH, {SECRET}) exists.")


def test_a_database_errors_message_is_withheld_in_the_node_log() -> None:
    """The unexpected-error handler and the housekeeping log with ``log.exception``: a
    PostgreSQL unique violation printed its DETAIL line, the stored value in it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LogFormatter("%(levelprefix)s %(message)s", use_colors=False))
    log = logging.getLogger("test.logtext")
    log.addHandler(handler)
    log.propagate = False
    try:
        try:
            try:
                raise _driver_error()
            except Exception as driver:
                raise IntegrityError("INSERT INTO exchange_nonces", {}, driver) from driver
        except IntegrityError:
            log.exception("unexpected error on %s %s", "POST", "/queries")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert SECRET not in text
    assert "ERROR:" in text and "unexpected error on POST /queries" in text
    assert "sqlalchemy.exc.IntegrityError: " + WITHHELD in text
    assert "test_logtext.py" in text  # the frames stay, for the diagnosis


def test_other_exceptions_keep_their_message() -> None:
    text = format_exception(_raised(ValueError("a message of our own")))
    assert "ValueError: a message of our own" in text and WITHHELD not in text


def test_a_database_error_in_the_context_is_withheld_too() -> None:
    """A failure while handling a database error: the database's text is in the chain."""
    try:
        try:
            raise IntegrityError("INSERT", {}, _driver_error())
        except IntegrityError:
            raise RuntimeError("cleanup failed") from None
    except RuntimeError as exc:
        plain = format_exception(exc)  # suppressed context: not shown at all
    assert SECRET not in plain and "RuntimeError: cleanup failed" in plain
    try:
        try:
            raise IntegrityError("INSERT", {}, _driver_error())
        except IntegrityError:
            raise RuntimeError("cleanup failed")  # noqa: B904 - the context is the point
    except RuntimeError as exc:
        chained = format_exception(exc)
    assert SECRET not in chained and "RuntimeError: cleanup failed" in chained
    assert "another exception occurred" in chained
