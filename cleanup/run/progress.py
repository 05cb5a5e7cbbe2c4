"""What a run tells its caller as it goes. The caller decides how to show it (the CLI: a
bar on a terminal, log lines under a scheduler, or nothing; see cleanup/cli/progress.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProgressUpdate:
    done: int  # rows with their final status, in input order
    failed: int  # of those, failed
    total: int | None  # rows in the input, estimated; None when unknown
    waiting: str = ""  # what the run is waiting for (a portal limit), '' when it is not
    finished: bool = False  # the last update of the run
    kept: int = 0  # of `done`, rows kept from an earlier run (--resume): not this run's pace


ProgressCallback = Callable[[ProgressUpdate], None]
# The CLI's choice of display for a run's `--progress` mode (auto, bar, log, none).
ProgressFactory = Callable[[str], ProgressCallback | None]
