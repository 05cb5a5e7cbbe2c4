"""The error tree: callers branch on what to do, not on where a problem came from."""

from __future__ import annotations

from collections.abc import Iterable

from cleanup.exits import EXIT_ABORTED, EXIT_LOCKED, EXIT_USAGE


class CleanupError(Exception):
    """Base of every error the job raises on purpose; `exit_code` says how the CLI ends."""

    exit_code = EXIT_USAGE


class ConfigError(CleanupError):
    """Configuration is unusable. Holds every problem found, not only the first."""

    def __init__(self, problems: str | Iterable[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


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


class FatalAPIError(CleanupError):
    """The portal refused the run as a whole (credentials, plan, blocked portal, unreachable)."""

    exit_code = EXIT_ABORTED

    def __init__(self, code: str, description: str, hint: str = "") -> None:
        self.code, self.description, self.hint = code, description, hint
        text = f"{code}: {description}" if description else code
        # A portal's text often ends with its own full stop: don't add a second one.
        stop = " " if text.endswith((".", "!", "?")) else ". "
        super().__init__(f"{text}{stop}{hint}" if hint else text)


class AuthRefreshError(FatalAPIError):
    """The OAuth refresh failed; the user has to authorise the application again."""
