"""Exit codes, the signals that stop a run, and how an outcome maps to a code.

The codes are part of the CLI contract (docs/reference/exit-codes.md, generated from this
file's names and comments); every other module names them from here. Nothing here imports the rest of the package, so anything may import it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable

EXIT_OK = 0  # every row done (removed or duplicate; an undo: restored), or nothing to do
EXIT_ROWS_FAILED = 1  # the run finished; some rows are failed, invalid or skipped
EXIT_USAGE = 2  # bad usage, input or configuration
EXIT_ABORTED = 3  # the portal refused the run as a whole
EXIT_LOCKED = 4  # another run holds the lock
EXIT_OUTPUT = 5  # could not write an output file (disk full, read-only folder); --resume continues
EXIT_INTERNAL = 70  # a bug (EX_SOFTWARE); the message is masked like everything else
# Paused by a time bound (--max-duration, a job file's window): the rows not reached are
# skipped and the next run (or --resume) continues. 75 is sysexits' EX_TEMPFAIL ("try again
# later"), which cron wrappers, systemd (SuccessExitStatus=75) and Kubernetes
# (podFailurePolicy onExitCodes) can each tell from a failure.
EXIT_PAUSED = 75
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT (128 + 2)
EXIT_TERMINATED = 143  # SIGTERM, as shells report it (128 + 15)

# The signals that stop a run gracefully, by name, and the code each ends it with.
STOP_SIGNALS: dict[str, int] = {"SIGINT": EXIT_INTERRUPTED, "SIGTERM": EXIT_TERMINATED}
# The stop reason of a run whose time bound was reached (not a signal: it pauses the run).
TIME_UP = "time"

# One word per code, for the one-line SUMMARY (`status=...`).
_STATES = {
    EXIT_OK: "ok",
    EXIT_ROWS_FAILED: "failed",
    EXIT_USAGE: "error",
    EXIT_ABORTED: "aborted",
    EXIT_LOCKED: "locked",
    EXIT_OUTPUT: "unwritable",
    EXIT_INTERNAL: "error",
    EXIT_PAUSED: "paused",
    EXIT_INTERRUPTED: "interrupted",
    EXIT_TERMINATED: "interrupted",
}

# How bad a code is when a job file's run has several (higher is worse): a signal first,
# since the files not reached wait; then a bug, an output file that could not be written
# (every later file and run meets it too, until someone makes room), an abort, a
# configuration or input problem, a busy report, failed rows, and a pause (the time bound
# ended it as planned; nobody needs to look, the next run continues). Least bad first;
# codes that rank alike share a place. The one statement of the order: help texts print it.
SEVERITY: tuple[tuple[int, ...], ...] = (
    (EXIT_OK,),
    (EXIT_PAUSED,),
    (EXIT_ROWS_FAILED,),
    (EXIT_LOCKED,),
    (EXIT_USAGE,),
    (EXIT_ABORTED,),
    (EXIT_OUTPUT,),
    (EXIT_INTERNAL,),
    tuple(STOP_SIGNALS.values()),
)
# `130/143 > 70 > 5 > 3 > 2 > 4 > 1 > 75 > 0`, worst first.
SEVERITY_ORDER = " > ".join("/".join(map(str, codes)) for codes in reversed(SEVERITY))


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def signal_exit_code(name: str | None) -> int | None:
    """130 for SIGINT, 143 for SIGTERM; None for any other reason a run stopped."""
    return STOP_SIGNALS.get(name) if name else None


def run_exit_code(
    *,
    stopped_by: str | None,
    aborted_code: int | None,
    rows_not_done: int,
    failed_rows_code: int = EXIT_ROWS_FAILED,
    rows_skipped: int = 0,
) -> int:
    """A run's code: a stopping signal wins (the user asked it to stop), then an abort (3, or
    2 for a configuration problem found mid-run), then a time bound that left rows skipped
    (75, paused), then whether every row is done.

    `failed_rows_code` (the option failed_rows_exit_code: 1 or 0) is what a run that finished
    with only row failures exits with; it never stands for a signal or an abort."""
    code = signal_exit_code(stopped_by)
    if code is not None:
        return code
    if aborted_code is not None:
        return aborted_code
    if stopped_by == TIME_UP and rows_skipped:
        return EXIT_PAUSED
    return failed_rows_code if rows_not_done else EXIT_OK


def finished(code: int) -> bool:
    """Whether a run (or a job file's run) with this code ended well: every row has its
    status, some perhaps failed (0, or 1), or its time bound paused it as planned (75; the
    next run continues). The metrics' "last success"."""
    return code in (EXIT_OK, EXIT_ROWS_FAILED, EXIT_PAUSED)


def severity(code: int) -> int:
    """The code's place in SEVERITY; an unknown code ranks as a bug: it should not exist."""
    for rank, codes in enumerate(SEVERITY):
        if code in codes:
            return rank
    return severity(EXIT_INTERNAL)


def worst(codes: Iterable[int]) -> int:
    """The worst code by SEVERITY (SEVERITY_ORDER); 0 for none."""
    return max(codes, key=severity, default=EXIT_OK)


def state_word(code: int, *, rows_not_done: int = 0) -> str:
    """`ok`, `failed`, `error`, `aborted`, `locked`, `unwritable`, `paused` or `interrupted`. `failed`
    also for a code 0 that failed_rows_exit_code = 0 made of failed rows (`rows_not_done`)."""
    if code == EXIT_OK and rows_not_done:
        return _STATES[EXIT_ROWS_FAILED]
    return _STATES.get(code, "error")


def ends_a_job_run(code: int) -> bool:
    """After a file ends with this code, a job file's run takes no further file: the next
    file would be refused alike (an abort), could not be written either (a full disk), or
    the user asked it to stop (a signal)."""
    return code in (EXIT_ABORTED, EXIT_OUTPUT) or code in STOP_SIGNALS.values()
