"""Client-side pacing that mirrors the portal's limits.

- `Throttle` models the portal's leaky bucket (drains `rate` requests/s, holds `burst`)
  as a GCRA: each request reserves its own send slot under a lock and sleeps outside it,
  so waiting workers are released one slot apart instead of all at once (the overshoot
  that makes naive clients hit QUERY_LIMIT_EXCEEDED on a strict portal). A little of the
  bucket (`headroom`) is left free, so that requests which reach the portal closer together
  than they left (network and scheduling jitter) still fit.
- A refusal means the portal's bucket is full now, perhaps because other applications
  share it: the model is set to full and the rate is lowered (once per refusal that was
  sent at the current rate), then recovers step by step after a quiet spell. A Retry-After
  header pauses everyone until then.
- `OperatingBudget` follows the per-method run time the portal reports in `time.operating`:
  past `slow_at` of the limit it stretches the spacing of requests more and more, and at
  `stop_at` it holds new requests until `operating_reset_at`.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass

from cleanup.clock import Clock, SystemClock

log = logging.getLogger("cleanup")

PLANS: dict[str, tuple[float, int]] = {"standard": (2.0, 50), "enterprise": (5.0, 250)}


def ideal_seconds(requests: int, rate: float, burst: int, latency: float = 0.0) -> float:
    """The time a client that keeps the portal's bucket exactly full needs for `requests`:
    the first `burst` leave at once, the rest one every 1/rate, and the last answer takes
    `latency`. The yardstick for "as fast as the portal allows"."""
    if requests <= 0:
        return 0.0
    return max(requests - burst, 0) / rate + latency


def default_headroom(burst: int) -> float:
    """Requests' worth of the bucket kept free: 2 of 50, 5 of 250; a fraction of tiny buckets
    (then each request is spaced a little more than 1/rate apart)."""
    return min(max(2.0, 0.02 * burst), 0.25 * burst)


@dataclass
class ThrottleStats:
    # Wall-clock seconds during which at least one request was held back by a limit (the
    # bucket, a pause, a backoff after a refusal). Not a sum over workers: with 8 waiting
    # at once, a second of waiting counts once.
    waited_s: float = 0.0
    refusals: int = 0
    slowdowns: int = 0
    reserved: int = 0  # send slots handed out


class Throttle:
    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Clock | None = None,
        budget: OperatingBudget | None = None,
        headroom: float | None = None,
        recover_after: float = 10.0,
        min_rate_factor: float = 0.25,
        slowdown: float = 0.8,
        speedup: float = 1.2,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.clock = clock or SystemClock()
        self.configured_rate = rate
        self.rate = rate
        self.burst = burst
        self.headroom = default_headroom(burst) if headroom is None else headroom
        self.recover_after = recover_after
        self.min_rate = rate * min_rate_factor
        self.slowdown = slowdown
        self.speedup = speedup
        self.budget = budget  # stretches spacing when the operating-time budget runs low
        self._lock = threading.Lock()
        now = self.clock.now()
        self._tat = now  # GCRA "theoretical arrival time": the bucket is empty
        # Bumped whenever _tat jumps forward over time no slot was reserved for: a slot
        # reserved before such a jump is part of it, and no longer an interval to give back.
        self._jumps = 0
        self._full_tat = -math.inf  # the model's full bucket at the last refusal
        self._last_send = -math.inf
        self._paused_until = 0.0
        self._pause_reason = ""
        self._slowed_at = -math.inf  # when the rate was last lowered
        self._next_step_up = math.inf
        self._held_until = -math.inf  # end of the held time counted so far, for waited_s
        self.stats = ThrottleStats()

    @property
    def _tolerance(self) -> float:
        # How far ahead of the drain the model lets a request go: a bucket holding
        # burst - headroom after it. Negative for tiny buckets: a margin on the spacing.
        return (self.burst - self.headroom - 1) / self.rate

    # ------------------------------------------------------------------ sending

    def reserve(self) -> float:
        """Reserve the next send slot; returns how long the caller must wait for it."""
        return self._reserve()[0]

    def _reserve(self) -> tuple[float, float, int]:
        """(wait, the interval this slot added to the model, the jump count after it)."""
        factor = self.budget.pace_factor() if self.budget is not None else 1.0
        with self._lock:
            now = self.clock.now()
            self._maybe_recover(now)
            interval = 1.0 / self.rate
            send_at = max(now, self._tat - self._tolerance, self._paused_until)
            if factor < 1.0:
                # The operating budget is running low: space requests out further.
                send_at = max(send_at, self._last_send + interval / factor)
            if send_at > self._tat:
                self._jumps += 1
            self._tat = max(self._tat, send_at) + interval
            self._last_send = max(self._last_send, send_at)
            self.stats.reserved += 1
            self._account(now, send_at)
            return send_at - now, interval, self._jumps

    def acquire(self) -> bool:
        """Block until this request may go. False if the job is stopping.

        A pause that begins while the request sleeps towards its slot (a refusal's
        Retry-After, the operating-time limit) holds it too: it takes a new slot after the
        pause instead of going out into it."""
        while True:
            with self._lock:
                pause_seen = self._paused_until
            wait, interval, jumps = self._reserve()
            if not self.clock.sleep(wait):
                return False
            with self._lock:
                if self._paused_until <= pause_seen or self.clock.now() >= self._paused_until:
                    return True
                if self._jumps == jumps:
                    # Its slot fell inside the pause and goes unused: give it back to the
                    # model (unless a later slot jumped over it, which took it in), never
                    # below the full bucket the last refusal showed.
                    self._tat = max(self._tat - interval, self._full_tat)

    def credit(self) -> int:
        """Requests that could leave right now without waiting (the unspent burst)."""
        with self._lock:
            now = self.clock.now()
            if now < self._paused_until:
                return 0
            if self.budget is not None and self.budget.pace_factor() < 1.0:
                return 0
            ahead = now - (self._tat - self._tolerance)
            if ahead < 0:
                return 0
            return min(int(ahead * self.rate) + 1, max(int(self.burst - self.headroom), 1))

    # ------------------------------------------------------------------ refusals and pauses

    def on_refusal(self, retry_after: float | None = None, sent_ago: float | None = None) -> None:
        """The portal said QUERY_LIMIT_EXCEEDED: its bucket is full, whatever we thought.

        `sent_ago`: how long ago the refused request left. A request sent before the last
        slowdown was paced at the old rate, so its refusal is no news and lowers nothing.
        """
        with self._lock:
            now = self.clock.now()
            self.stats.refusals += 1
            if sent_ago is not None:
                news = now - sent_ago > self._slowed_at
            else:
                news = now - self._slowed_at > 1.0 / self.rate  # refusals that come together
            if news and self.rate > self.min_rate:
                self.rate = max(self.min_rate, self.rate * self.slowdown)
                self.stats.slowdowns += 1
                self._slowed_at = now
                log.info(
                    "portal refused a request for its rate limit; slowing to %.2f req/s", self.rate
                )
            self._next_step_up = now + self.recover_after
            # Bucket full: the next request may go one interval from now, not before.
            full = self._full_tat = now + self._tolerance + 1.0 / self.rate
            if full > self._tat:
                self._jumps += 1
            self._tat = max(self._tat, full)
            if retry_after and now + retry_after > self._paused_until:
                self._paused_until, self._pause_reason = now + retry_after, "Retry-After"
                self._account(now, self._paused_until)

    def pause(self, seconds: float, reason: str = "operating-time limit") -> bool:
        """Hold every request for `seconds` (used for the operating-time limit). True if this
        started or lengthened the pause, False if one already lasted as long."""
        with self._lock:
            now = self.clock.now()
            until = now + seconds
            if until <= self._paused_until + 0.5:
                return False
            self._paused_until, self._pause_reason = until, reason
            self._account(now, until)
            return True

    def held(self, seconds: float) -> None:
        """A worker waits `seconds` outside the throttle because of a limit (a backoff after
        a refusal): count it in waited_s."""
        with self._lock:
            now = self.clock.now()
            self._account(now, now + seconds)

    def waited_so_far(self) -> float:
        """`stats.waited_s` without the part of a hold still ahead: a run that ends during a
        wait (it gave up, or was stopped) must not count the rest of that wait."""
        with self._lock:
            ahead = self._held_until - self.clock.now()
            return max(0.0, self.stats.waited_s - max(0.0, ahead))

    def waiting(self) -> tuple[str, float] | None:
        """(reason, seconds left) while every request is paused; None otherwise."""
        with self._lock:
            left = self._paused_until - self.clock.now()
            return (self._pause_reason, left) if left > 0.5 else None

    def waiting_note(self) -> str:
        """What the job is waiting for, for the progress bar; '' when it is not."""
        wait = self.waiting()
        return f"waiting {wait[1]:.0f} s ({wait[0]})" if wait else ""

    # ------------------------------------------------------------------ internals

    def _account(self, start: float, end: float) -> None:
        """Add [start, end] to the union of held time (called in start order, under the lock)."""
        if end <= start:
            return
        if start > self._held_until:
            self.stats.waited_s += end - start
            self._held_until = end
        elif end > self._held_until:
            self.stats.waited_s += end - self._held_until
            self._held_until = end

    def _maybe_recover(self, now: float) -> None:
        if self.rate < self.configured_rate and now >= self._next_step_up:
            self.rate = min(self.configured_rate, self.rate * self.speedup)
            # Further steps come faster than the first: a quarter of a quiet spell apart, so
            # that a job slowed by a passing storm is back at its rate within seconds, not
            # minutes (a step too far costs one refusal and a step back).
            self._next_step_up = now + self.recover_after / 4
            if self.rate >= self.configured_rate:
                log.info("no refusals for a while; back to %.2f req/s", self.rate)


class OperatingBudget:
    """Tracks `time.operating` per method and says how much to slow down or hold requests.

    The portal counts each method's run time over a sliding window (10 min on the cloud)
    and refuses with OPERATION_TIME_LIMIT past the limit. Below `slow_at` of the limit
    nothing changes; between `slow_at` and `stop_at` requests are spaced out more and more
    (down to `min_factor` of the rate) so that spending meets what the window frees; from
    `stop_at` new requests wait for `operating_reset_at`.
    """

    MAIN = ""  # the job's own method; `batch` answers are tracked apart (it is not counted)
    # The portal gives operating_reset_at in whole seconds ("usually int"), rounded down:
    # the window frees up to a second after it. Waits run this much past it.
    RESET_SLACK = 1.0

    def __init__(
        self,
        limit: float | None = 480.0,
        *,
        clock: Clock | None = None,
        slow_at: float = 0.8,
        stop_at: float = 0.95,
        min_factor: float = 0.1,
    ):
        self.limit = limit
        self.slow_at = slow_at
        self.stop_at = stop_at
        self.min_factor = min_factor
        self.clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._in_flight = 0  # commands sent whose answers have not come yet
        self._cost: float | None = None  # seconds of method time per command, on average
        self._used: dict[str, float] = {}
        self._reset: dict[str, float] = {}  # unix time, from the portal
        self.refusals = 0
        self.waited_s = 0.0

    @property
    def used(self) -> float:
        with self._lock:
            return max(self._used.values(), default=0.0)

    @property
    def reset_at(self) -> float | None:
        with self._lock:
            return self._reset.get(self.MAIN)

    def observe(self, time_info: object, method: str = MAIN) -> None:
        """Read `operating` / `operating_reset_at` from an answer's `time` (all optional).

        `method`: whose budget the answer reports; the job's own method by default, "batch"
        for a batch's outer `time` (the portal does not count batch, but if one did, it
        would be slowed for too).
        """
        if not isinstance(time_info, dict):
            return
        used = _number(time_info.get("operating"))
        reset = _number(time_info.get("operating_reset_at"))
        spent = _number(time_info.get("processing", time_info.get("duration")))
        if used is None:
            return
        with self._lock:
            if method == self.MAIN and spent is not None and spent >= 0:
                # One call's own run time: what each command in flight will likely add.
                self._cost = spent if self._cost is None else 0.8 * self._cost + 0.2 * spent
            known = self._reset.get(method)
            # Answers arrive out of order from several workers; the newest window wins,
            # and within one window the most spent (answers that finished later).
            if reset is None or known is None or reset > known:
                self._used[method] = used
                if reset is not None:
                    self._reset[method] = reset
            elif reset == known:
                self._used[method] = max(self._used.get(method, 0.0), used)

    def sending(self, commands: int) -> None:
        with self._lock:
            self._in_flight += commands

    def settled(self, commands: int) -> None:
        with self._lock:
            self._in_flight = max(0, self._in_flight - commands)

    def fraction(self, extra: int = 0) -> float:
        """The share of the limit spent, counting what the commands in flight (and `extra`
        about to leave) will likely add; the most over the methods seen; 0 when not tracking."""
        if not self.limit:
            return 0.0
        with self._lock:
            self._forget_reset()
            used = max(self._used.values(), default=0.0)
            if self._cost is not None and self._used.get(self.MAIN, 0.0) > 0:
                used = max(used, self._used[self.MAIN] + (self._in_flight + extra) * self._cost)
            return used / self.limit

    def pace_factor(self) -> float:
        """1.0 normally; lower (down to `min_factor`) as the budget nears `stop_at`."""
        share = self.fraction()
        if share <= self.slow_at:
            return 1.0
        span = max(self.stop_at - self.slow_at, 1e-9)
        return max(self.min_factor, 1.0 - (1.0 - self.min_factor) * (share - self.slow_at) / span)

    def hold_seconds(self, commands: int = 0) -> float:
        """How long to wait before sending `commands` more, 0 if the budget has room (or
        the known reset has passed: then one request at the slowest pace finds out)."""
        if not self.limit or self.fraction(commands) < self.stop_at:
            return 0.0
        wait = self.reset_in()
        return 0.0 if wait is None else min(wait, 600.0)

    def reset_in(self) -> float | None:
        """Seconds until the main method's window frees its oldest part (with the rounding
        slack), if known and ahead."""
        with self._lock:
            reset = self._reset.get(self.MAIN)
            if reset is None:
                return None
            wait = reset + self.RESET_SLACK - self.clock.wall()
            return wait if wait > 0 else None

    def _forget_reset(self) -> None:
        # Past a reset time the oldest part of the window has freed, but not all of it: the
        # spent time is scaled down (not forgotten), so requests go on at a slow pace until
        # an answer tells how much is spent now.
        if not self.limit:
            return
        now, share = self.clock.wall(), self.slow_at + 0.5 * (self.stop_at - self.slow_at)
        for method, reset in self._reset.items():
            if reset + self.RESET_SLACK <= now and self._used.get(method, 0.0) > share * self.limit:
                self._used[method] = share * self.limit


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
