"""The error tree: callers branch on what to do, not on where a problem came from."""

from __future__ import annotations

import errno
from collections.abc import Iterable
from pathlib import Path

from cleanup.exits import EXIT_ABORTED, EXIT_LOCKED, EXIT_OUTPUT, EXIT_USAGE
from cleanup.redact import redact


class CleanupError(Exception):
    """Base of every error the job raises on purpose; `exit_code` says how the CLI ends."""

    exit_code = EXIT_USAGE

    @property
    def problems(self) -> list[str]:
        """The error as the user reads it: one line per problem (a ConfigError has several)."""
        return [str(self)]


def problem_lines(exc: BaseException) -> list[str]:
    """Any exception as lines for the user, secrets masked: each problem of a CleanupError,
    or one line naming an unexpected error (a bug). The one place that words them."""
    if isinstance(exc, CleanupError):
        return [redact(problem) for problem in exc.problems]
    return [redact(f"internal error: {type(exc).__name__}: {exc}")]


class ConfigError(CleanupError):
    """Configuration is unusable. Holds every problem found, not only the first."""

    def __init__(self, problems: str | Iterable[str]) -> None:
        self._problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self._problems))

    @property
    def problems(self) -> list[str]:
        return list(self._problems)


class InputError(CleanupError):
    """The input file cannot be read as a whole (as opposed to one bad row)."""

    def __init__(
        self, file: str, message: str, *, row: int | None = None, column: str | None = None
    ) -> None:
        self.file, self.row, self.column = file, row, column
        where = [file]
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column}")
        super().__init__(f"{', '.join(where)}: {message}")


class ReportMismatchError(CleanupError):
    """--resume was given a report that belongs to another input."""


class LockedError(CleanupError):
    """Another run holds the lock for the same report."""

    exit_code = EXIT_LOCKED


class OutputError(CleanupError):
    """An output file (report, journal, summary, lock, state) could not be written: a full
    disk, a quota, a read-only or unwritable folder. The run stops; what was written is
    whole, and --resume continues once the file can be written."""

    exit_code = EXIT_OUTPUT
    code = "OUTPUT_NOT_WRITTEN"
    # Errors that go away once someone makes room; the others once the folder is writable.
    _NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)

    def __init__(self, path: Path | str, error: OSError) -> None:
        self.path = Path(path)
        self.errno = error.errno
        name = errno.errorcode.get(error.errno or 0, "")
        self.reason = f"{error.strerror or type(error).__name__}{f' ({name})' if name else ''}"
        when = (
            "once there is room"
            if error.errno in self._NO_ROOM
            else "once the folder can be written to"
        )
        super().__init__(
            f"could not write {self.path}: {self.reason}. The run stopped; nothing is lost:"
            f" every result so far is in the report and its journal. {when.capitalize()},"
            " run the same command with --resume to continue (run-job resumes it on its next"
            " run)"
        )


class FatalAPIError(CleanupError):
    """The portal refused the run as a whole (credentials, plan, blocked portal, unreachable)."""

    exit_code = EXIT_ABORTED

    def __init__(self, code: str, description: str, hint: str = "") -> None:
        self.code, self.description, self.hint = code, description, hint
        text = f"{code}: {description}" if description else code
        # A portal's text often ends with its own full stop: don't add a second one.
        stop = " " if text.endswith((".", "!", "?")) else ". "
        super().__init__(f"{text}{stop}{hint}" if hint else text)


class InsecureTransportError(FatalAPIError):
    """The portal redirected to plain http://: a configuration problem found mid-run."""

    exit_code = EXIT_USAGE


class StateFileError(CleanupError):
    """A job file's state file is damaged, or of a format this version does not read: move
    it away to start afresh, or run the version that wrote it."""


class AuthRefreshError(FatalAPIError):
    """The OAuth refresh failed; the user has to authorise the application again."""


# Signals between the transport and the engine: the engine turns them into rows' outcomes,
# so they never reach the user as errors (not CleanupErrors).


class Stopped(Exception):
    """The run is stopping (signal or abort): nothing more is sent."""


class WaitTooLong(Exception):
    """A request would wait out a pause (the operating-time limit, a Retry-After) longer
    than its rows may still wait (--max-wait): it is not sent, its rows are given up."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(f"would wait {seconds:.1f} s ({reason})")
        self.seconds = seconds
        self.reason = reason


class NetworkError(Exception):
    """No answer. `maybe_sent` is False only when the connection never opened."""

    def __init__(self, cause: str, detail: str, *, maybe_sent: bool) -> None:
        self.cause, self.maybe_sent = cause, maybe_sent
        super().__init__(f"{cause}: {redact(detail)}")
