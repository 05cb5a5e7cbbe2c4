"""The progress display: the log mode says each wait once."""

from __future__ import annotations

import pytest

from cleanup.run.progress import Progress


def test_progress_log_says_a_wait_once(caplog: pytest.LogCaptureFixture) -> None:
    progress = Progress("log", 10)
    with caplog.at_level("INFO", logger="cleanup"):
        for left in (30, 29, 28):
            progress.note_wait(f"waiting {left} s (operating-time limit)")
        progress.note_wait("")
        progress.note_wait("waiting 5 s (Retry-After)")
    waits = [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting")]
    assert waits == [
        "waiting: waiting 30 s (operating-time limit)",
        "waiting: waiting 5 s (Retry-After)",
    ]
