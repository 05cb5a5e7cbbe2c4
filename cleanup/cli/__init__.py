"""The click layer: options -> RunConfig or JobFile -> the core -> summary and exit code.

main      the `reaction-cleanup` group; demo and sandbox load only when they run
options   click options derived from RunConfig's declaration
common    the error boundary, signals, run ids and JSON summary events
run       `run INPUT`
jobs      `run-job JOBFILE`, `check-job JOBFILE`
"""

from cleanup.cli.main import main

__all__ = ["main"]
