"""Time as an injectable dependency: tests and the runner share one interruptible sleep."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...
    def wall(self) -> float: ...
    def sleep(self, seconds: float) -> bool: ...


class SystemClock:
    """Monotonic time; `sleep` wakes early (returning False) when `stop` is set."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.stop = stop or threading.Event()

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> bool:
        if seconds <= 0:
            return not self.stop.is_set()
        return not self.stop.wait(seconds)
