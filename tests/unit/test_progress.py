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
