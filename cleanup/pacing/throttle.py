"""Client-side pacing that finds and follows the portal's real request rate.

`Throttle` models the portal's leaky bucket (drains `rate` requests/s, holds `burst`) as a
GCRA: each request reserves its own send slot under a lock and sleeps outside it, so waiting
workers are released one slot apart instead of all at once (the overshoot that makes naive
clients hit QUERY_LIMIT_EXCEEDED on a strict portal). A little of the bucket (`headroom`) is
left free, so that requests which reach the portal closer together than they left (network
and scheduling jitter) still fit.

The configured rate is a ceiling, not a fact: the portal may drain slower (a wrong plan), and
other applications and webhooks on the portal share its bucket. Like TCP's congestion
control it keeps an estimate of the capacity it really has, not only a rate to cut:

- A refusal means the portal's bucket was full when the refused request arrived. Between two
  such moments the bucket drained exactly what it accepted from us (and from the others), so
  `accepted / elapsed` between two refusals measures the capacity left to the job. The first
  refusal of a run measures from the start (an empty bucket, the configured burst).
- The job then cruises a little under that capacity (`CRUISE`), which frees some of the
  bucket, and every so often probes above it (`PROBE`): a capacity that has not changed costs
  one refused request per probe (the probe interval is chosen so that is one request in
  `PROBE_EVERY`), a larger one (the other application stopped) is proven without a refusal
  once more went through than the estimate allowed, and the rate climbs to the new level.
- A `Retry-After` header pauses every request until then.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from dataclasses import dataclass

from cleanup.clock import Clock, SystemClock
from cleanup.pacing.budget import OperatingBudget

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
    slowdowns: int = 0  # refusals that changed the capacity estimate


CRUISE = 0.95  # share of the estimated capacity sent between probes
PROBE = 2.0  # share of it sent while probing
PROBE_EVERY = 35.0  # requests per probe: a probe that finds nothing new costs one refusal
PROBE_SPACING = (4.0, 14.0)  # seconds between probes, at least / at most
STEP_UP = 1.25  # each proof that more went through than the estimate allowed raises it so


class Throttle:
    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Clock | None = None,
        budget: OperatingBudget | None = None,
        headroom: float | None = None,
        min_rate_factor: float = 0.05,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.clock = clock or SystemClock()
        self.budget = budget  # a spent operating budget: no burst to offer (credit)
        self.configured_rate = rate
        self.rate = rate
        self.burst = burst
        self.headroom = default_headroom(burst) if headroom is None else headroom
        self.min_rate = rate * min_rate_factor
        self._lock = threading.Lock()
        now = self.clock.now()
        self._tat = now  # GCRA "theoretical arrival time": the bucket is empty
        # Bumped whenever _tat jumps forward over time no slot was reserved for: a slot
        # reserved before such a jump is part of it, and no longer an interval to give back.
        self._jumps = 0
        self._full_tat = -math.inf  # the model's full bucket at the last refusal
        self._paused_until = 0.0
        self._pause_reason = ""
        self._held_until = -math.inf  # end of the held time counted so far, for waited_s
        self.stats = ThrottleStats()
        self.capacity = Capacity(rate, burst, self.min_rate)

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
        with self._lock:
            now = self.clock.now()
            self._set_rate(self.capacity.rate(now))
            interval = 1.0 / self.rate
            send_at = max(now, self._tat - self._tolerance, self._paused_until)
            if send_at > self._tat:
                self._jumps += 1
            self._tat = max(self._tat, send_at) + interval
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
                now = self.clock.now()
                if self._paused_until <= pause_seen or now >= self._paused_until:
                    self.capacity.sent(now)
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
            if self.budget is not None and not self.budget.has_room():
                return 0
            ahead = now - (self._tat - self._tolerance)
            if ahead < 0:
                return 0
            return min(int(ahead * self.rate) + 1, max(int(self.burst - self.headroom), 1))

    # ------------------------------------------------------------------ refusals and pauses

    def on_refusal(self, retry_after: float | None = None, sent_ago: float | None = None) -> None:
        """The portal said QUERY_LIMIT_EXCEEDED: its bucket was full when the request came.

        `sent_ago`: how long ago the refused request left (the moment the bucket was full).
        """
        with self._lock:
            now = self.clock.now()
            self.stats.refusals += 1
            sent_at = now - sent_ago if sent_ago is not None else now
            if self.capacity.refused(sent_at, now):
                self.stats.slowdowns += 1
                log.info(
                    "portal refused a request for its rate limit; capacity about %.2f req/s",
                    self.capacity.estimate,
                )
            self._set_rate(self.capacity.rate(now))
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

    def _set_rate(self, rate: float) -> None:
        """Change the spacing; the model's bucket keeps its level (in requests)."""
        if rate == self.rate:
            return
        now = self.clock.now()
        level = max(0.0, self._tat - now) * self.rate
        self.rate = rate
        self._tat = now + level / rate

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


class Capacity:
    """The estimate of the request rate the portal really leaves to the job (not thread-safe:
    the throttle calls it under its lock).

    Until the first refusal the configured rate stands. `level` follows how full the portal's
    bucket would be if the estimate were right, counted from the last refusal (full): each
    accepted request adds one, the estimate drains it. A level above one without a refusal
    proves the capacity larger (`STEP_UP`); a refusal measures it.
    """

    def __init__(self, ceiling: float, burst: int, floor: float) -> None:
        self.ceiling, self.burst, self.floor = ceiling, burst, floor
        self.estimate: float | None = None  # None: never refused, the ceiling stands
        self._sends: deque[float] = deque()  # send times since the last full moment
        self._first_send: float | None = None
        self._sent_total = 0
        self._refused_total = 0
        self._full_at: float | None = None  # send time of the last refused request that was news
        self._refused_since_full = 0
        self._reacted_at = -math.inf  # when the estimate last changed on a refusal
        self._level = 0.0  # the modelled bucket above full (negative: room), in requests
        self._level_at = 0.0
        self._probe_at = math.inf
        self._probing = False

    def rate(self, now: float) -> float:
        """The rate to send at now."""
        if self.estimate is None:
            return self.ceiling
        if not self._probing and now >= self._probe_at:
            self._probing = True
        gain = PROBE if self._probing else CRUISE
        return max(self.floor, min(self.ceiling, self.estimate * gain))

    def sent(self, now: float) -> None:
        if self._first_send is None:
            self._first_send = now
        self._sent_total += 1
        if self.estimate is None:
            return
        self._sends.append(now)
        self._drain(now)
        self._level += 1.0
        if self._level > 1.0 + 1e-9 and self.estimate < self.ceiling:
            # More went through since the bucket was full than the estimate lets drain:
            # the portal has more room than thought (another client stopped, say).
            self.estimate = min(self.ceiling, self.estimate * STEP_UP)
            self._level = 0.0

    def refused(self, sent_at: float, now: float) -> bool:
        """A refusal of a request sent at `sent_at`. True if it changed the estimate (news:
        the request left after the last change; older ones were sent at the old rate)."""
        self._refused_total += 1
        if sent_at <= self._reacted_at:
            if self._full_at is not None and sent_at > self._full_at:
                self._refused_since_full += 1
            return False
        measured = self._measure(sent_at)
        if measured is not None:
            self.estimate = max(self.floor, min(self.ceiling, measured))
        else:
            base = self.estimate if self.estimate is not None else self.ceiling
            self.estimate = max(self.floor, base * 0.7)
        self._full_at, self._refused_since_full = sent_at, 0
        while self._sends and self._sends[0] <= sent_at:
            self._sends.popleft()
        self._reacted_at = now
        self._level, self._level_at = 0.0, now
        self._probing = False
        self._probe_at = now + min(
            max(PROBE_EVERY / self.estimate, PROBE_SPACING[0]), PROBE_SPACING[1]
        )
        return True

    def _measure(self, sent_at: float) -> float | None:
        """The capacity between the last full moment and this one, if long enough to tell."""
        if self._full_at is None:
            # From the start: an empty bucket, filled by the configured burst and then
            # by what the portal did not drain.
            if self._first_send is None:
                return None
            span = sent_at - self._first_send
            accepted = self._sent_total - self._refused_total - self.burst
            if span < 0.5 or accepted <= 0:
                return None
            return min(accepted / span, self.ceiling * 0.9)
        span = sent_at - self._full_at
        accepted = sum(1 for t in self._sends if t < sent_at) - self._refused_since_full
        if span < 1.0 or accepted < 2:
            return None
        return accepted / span

    def _drain(self, now: float) -> None:
        assert self.estimate is not None
        self._level = max(-float(self.burst), self._level - (now - self._level_at) * self.estimate)
        self._level_at = now
