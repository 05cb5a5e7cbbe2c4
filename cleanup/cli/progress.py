"""Progress at the edge: a tqdm bar on a terminal, periodic log lines under a scheduler, or
nothing. The run only calls back with `ProgressUpdate`s; drawing happens here."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from cleanup.run.progress import ProgressCallback, ProgressUpdate

log = logging.getLogger("cleanup")

LOG_INTERVAL = 10.0  # seconds between progress log lines


def progress_for(requested: str, *, quiet: bool = False) -> ProgressCallback | None:
    """The display for `--progress` (auto, bar, log, none)."""
    mode = "none" if quiet else requested
    if mode == "auto":
        mode = "bar" if sys.stderr.isatty() else "log"
    if mode == "bar":
        return BarProgress()
    if mode == "log":
        return LogProgress()
    return None


def _postfix(update: ProgressUpdate) -> str:
    text = f"failed={update.failed}"
    return f"{text}, {update.waiting}" if update.waiting else text


class BarProgress:
    """A tqdm bar on stderr; the postfix shows failures and a wait's countdown."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._postfix = ""

    def __call__(self, update: ProgressUpdate) -> None:
        if self._bar is None:
            if update.finished:
                return
            from tqdm import tqdm

            self._bar = tqdm(
                total=update.total,
                unit="row",
                dynamic_ncols=True,
                file=sys.stderr,
                smoothing=0.1,
                mininterval=0.5,
            )
        bar = self._bar
        advanced = update.done - bar.n
        if advanced > 0:
            bar.update(advanced)
        postfix = _postfix(update)
        if postfix != self._postfix or advanced > 0:
            # A changed wait note is drawn at once; a row count waits for tqdm's next refresh.
            bar.set_postfix_str(postfix, refresh=advanced <= 0)
            self._postfix = postfix
        if update.finished:
            bar.close()
            self._bar = None


class LogProgress:
    """A log line every `interval` seconds while rows finish, and each wait said once when
    it starts, not at every tick of its countdown."""

    def __init__(self, interval: float | None = None) -> None:
        self.interval = LOG_INTERVAL if interval is None else interval
        self.started = time.monotonic()
        self._last_log = self.started
        self._done = 0
        self._waiting = ""

    def __call__(self, update: ProgressUpdate) -> None:
        if update.waiting != self._waiting:
            if update.waiting and not self._waiting:
                log.info("waiting: %s", update.waiting)
            self._waiting = update.waiting
        if update.done > self._done:
            self._done = update.done
            now = time.monotonic()
            if now - self._last_log >= self.interval:
                self._last_log = now
                self._log_line(update, now)

    def _log_line(self, update: ProgressUpdate, now: float) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = (update.done - update.kept) / elapsed  # this run's pace, not the kept rows'
        if update.total:
            pct = 100.0 * update.done / update.total
            eta = (update.total - update.done) / rate if rate > 0 else float("inf")
            eta_text = f", ETA {eta:.0f} s" if eta != float("inf") else ""
            log.info(
                "progress: %d/%d rows (%.0f%%), %.1f rows/s, %d failed%s",
                update.done,
                update.total,
                pct,
                rate,
                update.failed,
                eta_text,
            )
        else:
            log.info("progress: %d rows, %.1f rows/s, %d failed", update.done, rate, update.failed)
