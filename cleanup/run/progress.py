"""Progress: a tqdm bar on a terminal, periodic log lines under a scheduler, or nothing."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

log = logging.getLogger("cleanup")


def choose_mode(requested: str, quiet: bool) -> str:
    if quiet:
        return "none"
    if requested != "auto":
        return requested
    return "bar" if sys.stderr.isatty() else "log"


class Progress:
    def __init__(self, mode: str, total: int | None, *, interval: float = 10.0) -> None:
        self.mode = mode
        self.total = total
        self.interval = interval
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self._last_log = self.started
        self._wait_note = ""
        self._bar: Any = None
        if mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                unit="row",
                dynamic_ncols=True,
                file=sys.stderr,
                smoothing=0.1,
                mininterval=0.5,
            )

    def advance(self, rows: int, failed: int = 0) -> None:
        self.done += rows
        self.failed += failed
        if self._bar is not None:
            self._bar.update(rows)
            self._bar.set_postfix_str(self._postfix(), refresh=False)
        elif self.mode == "log":
            now = time.monotonic()
            if now - self._last_log >= self.interval:
                self._last_log = now
                self._log_line(now)

    def note_wait(self, text: str) -> None:
        """Shown while the job waits on a portal limit; '' clears it. The bar shows the
        countdown; the log says it once when a wait starts, not at every tick."""
        if text == self._wait_note:
            return
        started = bool(text) and not self._wait_note
        self._wait_note = text
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix())
        elif self.mode == "log" and started:
            log.info("waiting: %s", text)

    def _postfix(self) -> str:
        text = f"failed={self.failed}"
        return f"{text}, {self._wait_note}" if self._wait_note else text

    def _log_line(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        if self.total:
            pct = 100.0 * self.done / self.total
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            eta_text = f", ETA {eta:.0f} s" if eta != float("inf") else ""
            log.info(
                "progress: %d/%d rows (%.0f%%), %.1f rows/s, %d failed%s",
                self.done,
                self.total,
                pct,
                rate,
                self.failed,
                eta_text,
            )
        else:
            log.info("progress: %d rows, %.1f rows/s, %d failed", self.done, rate, self.failed)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
