"""What every command shares: the error boundary, Ctrl-C/SIGTERM, run ids, summary events."""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import threading
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click

from cleanup.errors import CleanupError, ConfigError, OutputError, problem_lines
from cleanup.exits import EXIT_INTERNAL, EXIT_INTERRUPTED, STOP_SIGNALS, signal_name
from cleanup.redact import redact
from cleanup.run.runner import StopSignal

# A full disk or a read-only folder met where no writer named its file: still not a bug.
_UNWRITABLE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def new_run_id() -> str:
    """On every log line and in the summary: ties a scheduler's log to the report."""
    return uuid.uuid4().hex[:12]


@contextmanager
def cli_errors(verbose: bool) -> Iterator[None]:
    """One boundary turns errors into one masked line and an exit code."""
    try:
        yield
    except CleanupError as exc:
        click.echo(f"reaction-cleanup: error: {redact(exc)}", err=True)
        if verbose:
            click.echo(redact("".join(traceback.format_exc())), err=True)
        sys.exit(exc.exit_code)
    except (SystemExit, click.ClickException, click.Abort, click.exceptions.Exit):
        raise
    except KeyboardInterrupt:
        click.echo("reaction-cleanup: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except OSError as exc:
        if exc.errno not in _UNWRITABLE:
            _internal_error(exc, verbose)
        unwritable = OutputError(exc.filename or "an output file", exc)
        click.echo(f"reaction-cleanup: error: {redact(unwritable)}", err=True)
        sys.exit(unwritable.exit_code)
    except Exception as exc:
        _internal_error(exc, verbose)


def _internal_error(exc: Exception, verbose: bool) -> NoReturn:
    """A bug: one masked line, exit 70 (called while `exc` is being handled)."""
    click.echo(f"reaction-cleanup: {problem_lines(exc)[0]}", err=True)
    if verbose:
        click.echo(redact("".join(traceback.format_exc())), err=True)
    else:
        click.echo("(run with --verbose for the traceback)", err=True)
    sys.exit(EXIT_INTERNAL)


@contextmanager
def problems_one_per_line(fmt: str = "text") -> Iterator[None]:
    """A job file can have several problems: one line each reads better than a long one.
    Under --log-format json each is a JSON event, so a log collector parses every line."""
    try:
        yield
    except CleanupError as exc:
        problems = problem_lines(exc)
        if fmt == "json":
            for problem in problems:
                logging.getLogger("cleanup").error(
                    "%s", problem, extra={"fields": {"event": "error", "exit_code": exc.exit_code}}
                )
        elif isinstance(exc, ConfigError):
            for problem in problems:
                click.echo(f"reaction-cleanup: error: {problem}", err=True)
        else:
            raise
        sys.exit(exc.exit_code)


@contextmanager
def stop_on_signals(stop: StopSignal) -> Iterator[None]:
    """SIGINT/SIGTERM stop the run after the requests in flight; a second one quits at once
    (even while an abort winds down): the journal lets --resume finish the work."""
    previous: dict[signal.Signals, Any] = {}
    received: list[str] = []

    def handler(signum: int, _frame: Any) -> None:
        name = signal_name(signum)
        if received:
            os.write(2, b"\nreaction-cleanup: quitting now; finish later with --resume\n")
            os._exit(STOP_SIGNALS[name])
        received.append(name)
        stop.stop(name)
        click.echo(
            f"\nreaction-cleanup: {name}: finishing requests in flight, then stopping "
            "(send it again to quit at once)",
            err=True,
        )

    if threading.current_thread() is threading.main_thread():
        for name in STOP_SIGNALS:
            sig = signal.Signals[name]
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def summary_event(message: str, exit_code: int, fields: dict[str, Any]) -> None:
    """A summary as one log event: a JSON object under --log-format json, like every line."""
    level = logging.WARNING if exit_code else logging.INFO
    logging.getLogger("cleanup").log(level, "%s", message, extra={"fields": fields})
