"""Client-side pacing that mirrors the portal's limits.

- `Throttle` models the portal's leaky bucket (drains `rate` requests/s, holds `burst`)
  as a GCRA: each request reserves its own send slot under a lock and sleeps outside it,
  so waiting workers are released one slot apart instead of all at once (the overshoot
  that makes naive clients hit QUERY_LIMIT_EXCEEDED on a strict portal).
- A refusal means the portal's bucket is full now, perhaps because other applications
  share it: the model is set to full and the rate is lowered, then recovers after a quiet
  spell. A Retry-After header pauses everyone until then.
- `OperatingBudget` follows the per-method run time the portal reports in `time.operating`
  and holds new requests when it is nearly spent, until `operating_reset_at`.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass

from .clock import Clock, SystemClock

log = logging.getLogger("cleanup")

PLANS: dict[str, tuple[float, int]] = {"standard": (2.0, 50), "enterprise": (5.0, 250)}


@dataclass
class ThrottleStats:
    waited_s: float = 0.0  # time requests spent held back by the bucket or a pause
    refusals: int = 0
    slowdowns: int = 0


class Throttle:
    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Clock | None = None,
        headroom: float | None = None,
        recover_after: float = 20.0,
        min_rate_factor: float = 0.25,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.clock = clock or SystemClock()
        self.configured_rate = rate
        self.rate = rate
        self.burst = burst
        # Keep a little of the burst free: other clients of the portal may be using it.
        self.headroom = max(1.0, burst * 0.1) if headroom is None else headroom
        self.recover_after = recover_after
        self.min_rate = rate * min_rate_factor
        self._lock = threading.Lock()
        self._tat = self.clock.now()  # GCRA "theoretical arrival time": bucket empty
        self._paused_until = 0.0
        self._pause_reason = ""
        self._last_refusal = -math.inf
        self.stats = ThrottleStats()

    @property
    def _tolerance(self) -> float:
        return max(self.burst - self.headroom - 1, 0) / self.rate

    def reserve(self) -> float:
        """Reserve the next send slot; returns how long the caller must wait for it."""
        with self._lock:
            now = self.clock.now()
            self._maybe_recover(now)
            interval = 1.0 / self.rate
            send_at = max(now, self._tat - self._tolerance, self._paused_until)
            self._tat = max(self._tat, send_at) + interval
            wait = send_at - now
            self.stats.waited_s += wait
            return wait

    def acquire(self) -> bool:
        """Block until this request may go. False if the job is stopping."""
        return self.clock.sleep(self.reserve())

    def on_refusal(self, retry_after: float | None = None) -> None:
        """The portal said QUERY_LIMIT_EXCEEDED: its bucket is full, whatever we thought."""
        with self._lock:
            now = self.clock.now()
            self.stats.refusals += 1
            # Refusals that arrive together are one event: slow down once per interval.
            if now - self._last_refusal > 1.0 / self.rate:
                self.rate = max(self.min_rate, self.rate * 0.8)
                self.stats.slowdowns += 1
                log.info(
                    "portal refused a request for its rate limit; slowing to %.2f req/s", self.rate
                )
            self._last_refusal = now
            self._tat = max(self._tat, now + self._tolerance + 1.0 / self.rate)
            if retry_after and now + retry_after > self._paused_until:
                self._paused_until, self._pause_reason = now + retry_after, "Retry-After"

    def pause(self, seconds: float, reason: str = "operating-time limit") -> None:
        """Hold every request for `seconds` (used for the operating-time limit)."""
        with self._lock:
            until = self.clock.now() + seconds
            if until > self._paused_until:
                self._paused_until, self._pause_reason = until, reason

    def waiting_note(self) -> str:
        """What the job is waiting for, for the progress bar; '' when it is not."""
        left = self._paused_until - self.clock.now()
        return f"waiting {left:.0f} s ({self._pause_reason})" if left > 0.5 else ""

    def _maybe_recover(self, now: float) -> None:
        if self.rate < self.configured_rate and now - self._last_refusal > self.recover_after:
            self.rate = min(self.configured_rate, self.rate * 1.1)
            self._last_refusal = now - self.recover_after / 2  # next step after half a spell


class OperatingBudget:
    """Tracks `time.operating` for the method and says how long to hold new requests."""

    def __init__(
        self, limit: float | None = 480.0, *, clock: Clock | None = None, slow_at: float = 0.9
    ):
        self.limit = limit
        self.slow_at = slow_at
        self.clock = clock or SystemClock()
        self._lock = threading.Lock()
        self.used = 0.0
        self.reset_at: float | None = None  # unix time, from the portal
        self.refusals = 0
        self.waited_s = 0.0

    def observe(self, time_info: object) -> None:
        """Read `operating` / `operating_reset_at` from an answer's `time` (all optional)."""
        if not isinstance(time_info, dict):
            return
        used = _number(time_info.get("operating"))
        reset = _number(time_info.get("operating_reset_at"))
        with self._lock:
            if used is not None:
                # Answers arrive out of order from several workers; the newest reset wins.
                if reset is not None and (self.reset_at is None or reset >= self.reset_at):
                    self.used, self.reset_at = used, reset
                elif reset is None:
                    self.used = used

    def hold_seconds(self) -> float:
        """How long to wait before the next request, 0 if the budget has room."""
        if self.limit is None:
            return 0.0
        with self._lock:
            if self.used < self.limit * self.slow_at or self.reset_at is None:
                return 0.0
            wait = self.reset_at - self.clock.wall()
            if wait <= 0:
                self.used = 0.0  # part of the window has freed; the next answer tells how much
                return 0.0
            return min(wait + 0.5, 600.0)

    def reset_in(self) -> float | None:
        with self._lock:
            if self.reset_at is None:
                return None
            wait = self.reset_at - self.clock.wall()
            return wait if wait > 0 else None


def _number(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
