"""The progress display: the log mode says each wait once."""

from __future__ import annotations

import pytest

from cleanup.cli.progress import LogProgress
from cleanup.run.progress import ProgressUpdate


def test_progress_log_says_a_wait_once(caplog: pytest.LogCaptureFixture) -> None:
    progress = LogProgress()
    with caplog.at_level("INFO", logger="cleanup"):
        for left in (30, 29, 28):
            progress(ProgressUpdate(0, 0, 10, f"waiting {left} s (operating-time limit)"))
        progress(ProgressUpdate(0, 0, 10, ""))
        progress(ProgressUpdate(0, 0, 10, "waiting 5 s (Retry-After)"))
    waits = [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting")]
    assert waits == [
        "waiting: waiting 30 s (operating-time limit)",
        "waiting: waiting 5 s (Retry-After)",
    ]


def test_progress_log_paces_only_this_runs_rows(caplog: pytest.LogCaptureFixture) -> None:
    # A --resume that kept 92 rows and sent 1 in 10 s goes at 0.1 rows/s, not 9.3: its ETA
    # is the rows left at that pace (QA: "8.6 rows/s, ETA 7 s" where the rest took 25 s).
    progress = LogProgress(interval=0.0)
    progress.started -= 10.0
    with caplog.at_level("INFO", logger="cleanup"):
        progress(ProgressUpdate(93, 0, 150, kept=92))
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress")]
    assert "93/150 rows (62%), 0.1 rows/s" in line
    assert "ETA 57" in line  # 57 rows at 0.1 rows/s: about 570 s
