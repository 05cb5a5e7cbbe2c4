"""The portal's two limits: the request-rate leaky bucket and the operating-time window.

Both read time from an injectable clock (`cleanup.clock.Clock`: `now()` for the bucket's
drain, `wall()` for the window's unix times), so unit tests run them on a fake clock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from cleanup.clock import Clock, SystemClock

BUCKETS_PER_WINDOW = 10  # Bitrix: ten one-minute buckets per ten-minute window


class LeakyBucket:
    """Each accepted request adds 1; the level drains at ``rate`` per second. A request that
    would lift the level above ``burst`` is refused and adds nothing."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._level = 0.0
        self._last: float | None = None

    def try_acquire(self, rate: float, burst: int, now: float | None = None) -> bool:
        """`now`: the request's arrival time on the clock (default: the clock's now)."""
        with self._lock:
            now = self.clock.now() if now is None else now
            if self._last is not None:
                self._level = max(0.0, self._level - (now - self._last) * rate)
            self._last = now
            if self._level + 1.0 > burst + 1e-9:
                return False
            self._level += 1.0
            return True

    @property
    def level(self) -> float:
        return self._level


@dataclass
class _SubBucket:
    first: (
        float  # when its first charge came; it expires one window later (like Bitrix's Redis key)
    )
    seconds: float


class OperatingClock:
    """Method run time per (caller, method), summed over a sliding window of ten sub-buckets."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], dict[int, _SubBucket]] = {}

    def _live(self, key: tuple[str, str], now: float, window: float) -> list[_SubBucket]:
        size = window / BUCKETS_PER_WINDOW
        current = int(now // size)
        buckets = self._buckets.get(key, {})
        for index in [
            i
            for i, b in buckets.items()
            if i <= current - BUCKETS_PER_WINDOW or now >= b.first + window
        ]:
            del buckets[index]  # expired: forget it
        return [buckets[i] for i in sorted(buckets)]

    def usage(self, key: tuple[str, str], window: float) -> tuple[float, int]:
        """(seconds used in the window, unix time the oldest non-empty sub-bucket expires).

        With nothing used, the reset time is one window from now, as real portals report.
        """
        with self._lock:
            now = self.clock.wall()
            live = [b for b in self._live(key, now, window) if b.seconds > 0]
            used = sum(b.seconds for b in live)
            reset_at = int(live[0].first + window) if live else int(now + window)
            return used, reset_at

    def charge(self, key: tuple[str, str], seconds: float, window: float) -> None:
        if seconds <= 0:
            return
        with self._lock:
            now = self.clock.wall()
            self._live(key, now, window)
            index = int(now // (window / BUCKETS_PER_WINDOW))
            bucket = self._buckets.setdefault(key, {}).get(index)
            if bucket is None:
                self._buckets[key][index] = _SubBucket(now, seconds)
            else:
                bucket.seconds += seconds

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()
