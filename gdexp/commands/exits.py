"""The only place errors become printed lines and exit statuses, and messages reach the terminal.

Every layer below the commands raises a typed error (gdexp.core.errors,
gdexp.tracking.errors) and says what it has to say through Python's logging,
on the ``gdexp`` logger and its children, as Optuna and MLflow do. The
commands print those messages (``console``) and turn the errors into one line
and an exit status (``exit_for``); the Python API leaves the messages to the
caller's logging set-up (silent unless ``verbose=True``) and raises the errors.
"""
from __future__ import annotations

import argparse
import logging
import sys
from contextlib import contextmanager

from gdexp.core.errors import ConfigError

# The exit status of every gdexp command for input it refuses (a bad key or value, a grid
# that cannot be expanded, a store that cannot be used), before any MLflow run exists.
# argparse uses 2 too. A run or sweep that ran and failed exits 1.
EXIT_INVALID_INPUT = 2
EXIT_FAILED = 1

LOGGER = "gdexp"


class _Console(logging.Handler):
    """Messages as gdexp prints them: info to stdout, warnings and errors to stderr, the text alone.

    The streams are looked up at each message, so a caller that swaps sys.stdout
    (pytest's capture, a notebook) gets them.
    """

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stdout if record.levelno < logging.WARNING else sys.stderr
        try:
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # a closed stream must not turn a message into a failure
            self.handleError(record)


@contextmanager
def console(verbose: bool = True):
    """While inside: the ``gdexp`` logger's messages printed (verbose) or dropped (not verbose).

    Either way they do not also reach the root logger (Hydra points it at its own
    format and a job's log file), and nothing falls through to logging's
    last-resort handler, which would print warnings of a quiet API call.
    """
    logger = logging.getLogger(LOGGER)
    handler = _Console() if verbose else logging.NullHandler()
    saved = logger.propagate, logger.level
    logger.addHandler(handler)
    logger.propagate = not verbose and saved[0]
    if verbose and (logger.level == logging.NOTSET or logger.level > logging.INFO):
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate, _ = saved
        logger.setLevel(saved[1])


def say_invalid(error: Exception | str) -> int:
    """Print `error` as gdexp's one-line refusal; returns EXIT_INVALID_INPUT (for subcommands that return it)."""
    print(f"gdexp: error: {error}", file=sys.stderr)
    return EXIT_INVALID_INPUT


def exit_invalid(error: Exception | str) -> "NoReturn":  # noqa: F821
    """Print `error` as gdexp's one-line refusal and exit with EXIT_INVALID_INPUT."""
    say_invalid(error)
    raise SystemExit(EXIT_INVALID_INPUT)


def exit_for(error: BaseException) -> "NoReturn":  # noqa: F821
    """End the command for a typed error from below: its line, its status. Anything else re-raised."""
    from gdexp.tracking.errors import RunsFailed, SearchFailed, SweepInterrupted, Unrecorded

    if isinstance(error, ConfigError):
        exit_invalid(error)
    if isinstance(error, SweepInterrupted):
        print(str(error), file=sys.stderr)
        raise SystemExit(error.status)
    if isinstance(error, (Unrecorded, RunsFailed, SearchFailed)):
        print(str(error), file=sys.stderr)
        raise SystemExit(EXIT_FAILED)
    raise error


class Parser(argparse.ArgumentParser):
    """argparse's parser for gdexp's subcommands, whose refusals are one line as every other
    (argparse prints its usage block first): ``gdexp compare: error: REASON (see gdexp compare --help)``,
    exit status EXIT_INVALID_INPUT."""

    def error(self, message: str) -> "NoReturn":  # noqa: F821
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_INVALID_INPUT)
