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

- A refusal means the portal's bucket was full (within a request) when the refused request
  arrived. Between two such moments the bucket drained exactly what it accepted from us (and
  from the others), so `accepted / elapsed` between two refusals measures the capacity left to
  the job, to within a request or two over the span: the estimate is taken over the longest
  span of the last 30 s. A newest span that cannot be that capacity (another client started)
  starts the measure over. The first refusal of a run measures from the start (an empty
  bucket, the configured burst), counting only what left before the refused request.
- The job then cruises a little under that capacity (`CRUISE`); between full moments that
  loses nothing (the bucket is not allowed to run empty), it only frees some of the bucket.
  Every so often (`PROBE_EVERY` requests, `PROBE_SPACING` seconds) it probes above it
  (`PROBE`), doubling the probe's rate every `PROBE_DOUBLING` seconds it goes unrefused (TCP's
  slow start). An unchanged capacity costs one refused request per probe; a larger one (the
  other application stopped) is proven without a refusal once two requests more went through
  than the estimate allows, and the rate climbs to the new level.
- A refusal that is news voids the send slots already handed out at the disproved rate (the
  workers sleeping towards them take new ones), so a probe is refused once, not once per
  request in flight.
- A `Retry-After` header pauses every request until then.
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from cleanup.clock import Clock, SystemClock
from cleanup.errors import ConfigError, WaitTooLong
from cleanup.pacing.budget import OperatingBudget

log = logging.getLogger("cleanup")

MayHold = Callable[[float], bool]
OPERATING_PAUSE = "operating-time limit"  # the reason of an operating-time pause

PLANS: dict[str, tuple[float, int]] = {"standard": (2.0, 50), "enterprise": (5.0, 250)}


def ideal_seconds(requests: int, rate: float, burst: int, latency: float = 0.0) -> float:
    """The time a client that keeps the portal's bucket exactly full needs for `requests`:
    the first `burst` leave at once, the rest one every 1/rate, and the last answer takes
    `latency`. The yardstick for "as fast as the portal allows"."""
    if requests <= 0:
        return 0.0
    return max(requests - burst, 0) / rate + latency


def share_part(rate: float, burst: int, share: float) -> tuple[float, int]:
    """A run's part of the portal's bucket under --share: f of the rate and f of the burst
    (at least one request). The one rule the throttle, the estimate and the summary use."""
    return rate * share, max(1, math.floor(burst * share))


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
PROBE_DOUBLING = 2.0  # seconds of probing without a refusal that double the probe's rate
PROBE_EVERY = 40.0  # requests per probe: a probe that finds nothing new costs one refusal
PROBE_SPACING = (2.0, 14.0)  # seconds between probes, at least / at most
SPAN_ERROR = 2.0  # requests a span's count may be off by (see Capacity._measure)
SURE_AFTER = 20  # requests a measure spans to be trusted (one request's error: 5 %)
# Requests more than the estimate lets drain since the bucket was full that prove it low:
# two, as the bucket may have been up to one request short of full when it refused.
PROOF = 2.0
STEP_UP = 1.25  # each proof that more went through than the estimate allowed raises it so
DITHER = 1.0  # intervals a send may be delayed within its slot, at random (see dither)
SHARED_ROOM = 0.1  # share of the bucket left to drain after a refusal on a shared bucket
SHARED_ROOM_MAX = 5.0  # requests: at most (a big bucket would cost seconds per refusal)


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
        share: float = 1.0,
        rng: random.Random | None = None,
        dither: float = 0.0,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ConfigError("rate must be > 0 and burst >= 1")
        if not 0 < share <= 1:
            raise ConfigError("share must be above 0 and at most 1")
        self.clock = clock or SystemClock()
        self.budget = budget  # a spent operating budget: no burst to offer (credit)
        # A share below 1 is the job's part of the portal (--share): its rate and its burst
        # are the part's, a cap the job sends at (no cruising margin under it); the rest of
        # the bucket is the others'.
        self.share = share
        self._rng = rng or random.Random()
        self._dither = dither  # intervals; the portal's pacing uses DITHER (see `dither`)
        rate, burst = share_part(rate, burst, share)
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
        self._epoch = 0  # bumped when a refusal voids the slots handed out (see _claim)
        self._full_tat = -math.inf  # the model's full bucket at the last refusal
        self._paused_until = 0.0
        self._pause_reason = ""
        self._held_until = -math.inf  # end of the held time counted so far, for waited_s
        self.stats = ThrottleStats()
        self.capacity = Capacity(rate, burst, self.min_rate, capped=share < 1)

    @property
    def _tolerance(self) -> float:
        # How far ahead of the drain the model lets a request go: a bucket holding
        # burst - headroom after it. Negative for tiny buckets: a margin on the spacing.
        return (self.burst - self.headroom - 1) / self.rate

    # ------------------------------------------------------------------ sending

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

    def acquire(self, may_hold: MayHold | None = None) -> bool:
        """Block until this request may go. False if the job is stopping.

        A pause that begins while the request sleeps towards its slot (a refusal's
        Retry-After, the operating-time limit) holds it too: it takes a new slot after the
        pause instead of going out into it. `may_hold(seconds)` is asked before the request
        waits out a pause (the pacing's own spacing is not asked): False raises WaitTooLong,
        and the request does not wait (its rows' --max-wait would be exceeded)."""
        while True:
            with self._lock:
                pause_seen = self._paused_until
                epoch = self._epoch
                paused = pause_seen - self.clock.now()
                reason = self._pause_reason
            if paused > 0 and may_hold is not None and not may_hold(paused):
                raise WaitTooLong(paused, reason)
            wait, interval, jumps = self._reserve()
            if not self.clock.sleep(wait + self.dither()):
                return False
            if self._claim(pause_seen, epoch, interval, jumps):
                return True

    def dither(self) -> float:
        """A random delay of up to one interval before a request takes its slot.

        Slots one interval apart, at the pace the bucket drains, lock onto its drain: at a
        full bucket the job's request comes just as room opens and another application's
        finds it full. The others lose their requests (many do not re-send), the job is
        hardly ever refused, and so never learns it takes their part. Dithered, the job's
        requests meet a full bucket as often as theirs, and its refusals tell it. The
        average rate is unchanged (the schedule is not moved, only each send within it)."""
        if not self._dither:
            return 0.0
        return self._rng.uniform(0.0, self._dither / self.rate)

    def _claim(self, pause_seen: float, epoch: int, interval: float, jumps: int) -> bool:
        """At the slot reserved: True if the request goes now; False if it must take a new
        slot (a pause began meanwhile, or a refusal redrew the schedule)."""
        with self._lock:
            now = self.clock.now()
            if self._epoch != epoch:
                # A refusal that was news while this request slept: its slot was drawn at
                # a rate the portal just disproved (a probe's, say) and would be refused too.
                # The schedule restarted from the full bucket; take a slot in it.
                return False
            if self._paused_until <= pause_seen or now >= self._paused_until:
                self.capacity.sent(now)
                return True
            if self._jumps == jumps:
                # Its slot fell inside the pause and goes unused: give it back to the
                # model (unless a later slot jumped over it, which took it in), never
                # below the full bucket the last refusal showed.
                self._tat = max(self._tat - interval, self._full_tat)
            return False

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
            news = self.capacity.refused(sent_at, now)
            if news:
                self.stats.slowdowns += 1
                log.info(
                    "portal refused a request for its rate limit; %s",
                    "its bucket was full before this run could measure its rate (a run just"
                    " before, or another application); probing again at once"
                    if self.capacity.guessed
                    else f"capacity about {self.capacity.estimate:.2f} req/s",
                )
            self._set_rate(self.capacity.rate(now))
            # Bucket full: the next request may go one interval from now, not before; after
            # news, two (what the others had refused meanwhile comes back first).
            gap = self._gap_after(news) / self.rate
            full = self._full_tat = now + self._tolerance + gap
            if news:
                # The slots already handed out were drawn at the disproved rate: void them
                # (their holders take new ones) and draw the schedule again from here.
                self._epoch += 1
                self._jumps += 1
                self._tat = full
            else:
                if full > self._tat:
                    self._jumps += 1
                self._tat = max(self._tat, full)
            if retry_after and now + retry_after > self._paused_until:
                self._paused_until, self._pause_reason = now + retry_after, "Retry-After"
                self._account(now, self._paused_until)

    def _gap_after(self, news: bool) -> float:
        """Requests' worth of the bucket left to drain after a refusal before the next send.

        One (the bucket was full); after news two (what the others had refused meanwhile
        comes back first). And when the bucket is shared (the capacity measured is below the
        ceiling: another application draws on it), a part of the bucket (`SHARED_ROOM`): a
        job that resumed at the full bucket would keep it full, and every request of the
        others that came at a full moment would be refused (the job re-sends, many of them
        do not), so the job's next measure would count what it took from them."""
        if not news:
            return 1.0
        if self.capacity.shared:
            return min(max(2.0, SHARED_ROOM * self.burst), SHARED_ROOM_MAX)
        return 2.0

    def pause(self, seconds: float, reason: str = OPERATING_PAUSE) -> bool:
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

    Until the first refusal the configured rate stands. Every refusal is a moment the portal's
    bucket was full (within one request). Between two such moments the bucket drained exactly
    what it accepted from the job, so `accepted / span` measures the capacity left, to within
    one request over the span: the job measures over the longest span of the last `HORIZON`
    seconds (a few requests' error over many), unless the newest span disagrees with it
    beyond that error (the capacity changed: another client started), and then starts over
    from the newest. `level` follows how full the bucket would be if the estimate were
    right, counted from the last full moment: a level above one without a refusal proves the
    capacity larger (`STEP_UP`; another client stopped), and the old moments are forgotten.
    """

    HORIZON = 30.0  # seconds of full moments measured over
    MIN_SPAN = 1.0  # shorter spans say too little (one request's error is > 20 % at 5/s)

    def __init__(self, ceiling: float, burst: int, floor: float, *, capped: bool = False) -> None:
        self.ceiling, self.burst, self.floor = ceiling, burst, floor
        # The ceiling is a cap the user set (a share), not the portal's figure: at it the
        # job sends at it, with no cruising margin under it.
        self.capped = capped
        self.estimate: float | None = None  # None: never refused, the ceiling stands
        self._sends: deque[float] = deque()  # send times, over the horizon
        self._refused: deque[float] = deque()  # send times of refused requests, likewise
        self._full: deque[float] = deque()  # the full moments (refused sends) measured from
        self._first_send: float | None = None
        self._sent_total = 0
        self._refused_total = 0
        self._reacted_at = -math.inf  # when the estimate last changed on a refusal
        self._sure = False  # the estimate was measured over enough requests to trust it
        self._guessed = False  # the estimate is the halving guess, not a measure (see refused)
        self._level = 0.0  # the modelled bucket above full (negative: room), in requests
        self._level_at = 0.0
        self._probe_at = math.inf
        self._probing = False

    @property
    def guessed(self) -> bool:
        """Whether the estimate is the halving guess of a refusal too soon to measure."""
        return self._guessed

    @property
    def shared(self) -> bool:
        """Whether the capacity measured is below the ceiling: others draw on the bucket."""
        if self._guessed:
            return False  # a guess proves nothing about the others (see refused)
        return self.estimate is not None and self.estimate < 0.95 * self.ceiling

    def rate(self, now: float) -> float:
        """The rate to send at now."""
        if self.estimate is None:
            return self.ceiling
        if not self._probing and now >= self._probe_at:
            self._probing = True
        if not self._probing:
            if self.capped and self.estimate >= self.ceiling:
                return self.ceiling
            gain = CRUISE
        else:
            # A probe that finds room for long doubles its rate every PROBE_DOUBLING seconds
            # (TCP's slow start): an estimate far too low is left in seconds, not minutes.
            gain = PROBE * 2.0 ** (max(0.0, now - self._probe_at) / PROBE_DOUBLING)
        return max(self.floor, min(self.ceiling, self.estimate * gain))

    def sent(self, now: float) -> None:
        if self._first_send is None:
            self._first_send = now
        self._sent_total += 1
        self._sends.append(now)
        if self.estimate is None:
            if len(self._sends) > 4096:  # counted from the newest end (see _measure)
                self._sends.popleft()
            return
        self._drain(now, self.estimate)
        self._level += 1.0
        if len(self._sends) > 4096:  # no refusal for long (at the ceiling): keep it bounded
            self._forget(now)
        if self._level > PROOF + 1e-9 and self.estimate < self.ceiling:
            # More went through since the bucket was full than the estimate lets drain:
            # the portal has more room than thought (another client stopped, say; the next
            # refusal's span will disagree with the older ones). The next step needs a proof
            # of its own at the new estimate.
            self.estimate = min(self.ceiling, self.estimate * STEP_UP)
            self._level = 0.0

    def refused(self, sent_at: float, now: float) -> bool:
        """A refusal of a request sent at `sent_at`. True if it changed the estimate (news:
        the request left after the last change; older ones were sent at the old rate)."""
        self._refused_total += 1
        self._refused.append(sent_at)
        if sent_at <= self._reacted_at:
            return False
        measured = self._measure(sent_at)
        if measured is not None:
            self.estimate = max(self.floor, min(self.ceiling, measured))
            self._guessed = False
        elif self.estimate is not None and self._probing:
            # Nothing to measure from, and refused while probing: the capacity is under the
            # probe's rate and over half of it (the probe doubled since it last fitted).
            # The next refusal measures from here.
            self.estimate = max(self.estimate, self.rate(now) / 2)
        elif self.estimate is None:
            # Refused too soon to measure: the bucket was full before the job could fill it
            # (the run this one resumed, or another client, left it full) or it is smaller
            # than told. That says nothing of the rate it drains at. Halve, as TCP does, but
            # as a guess (`_guessed`): no proof that others share the bucket (no room after
            # it), and nothing to cruise on: the probe starts at once (at twice the guess,
            # the ceiling), and the next refusal measures. Cruising on the guess cost half
            # the rate for 10-15 s: slots handed out at it hold the workers behind them.
            self.estimate = max(self.floor, self.ceiling * 0.5)
            self._guessed = True
        else:
            # Nothing to measure from (the first moment after a change): a gentle cut, the
            # next refusal measures.
            self.estimate = max(self.floor, self.estimate * 0.85)
        self._full.append(sent_at)
        self._forget(sent_at)
        self._reacted_at = now
        self._level, self._level_at = 0.0, now
        self._probing = False
        # A probe every PROBE_EVERY requests; sooner after a measure of few requests (it may
        # be low by a lot, and the bucket would empty while the job sends under it).
        every = PROBE_EVERY if self._sure else PROBE_EVERY / 4
        self._probe_at = now + min(max(every / self.estimate, PROBE_SPACING[0]), PROBE_SPACING[1])
        if self._guessed:
            self._probe_at = now  # nothing to cruise on: probe from here (see above)
        return True

    def _measure(self, sent_at: float) -> float | None:
        """The capacity between a full moment of the horizon and this one, if long enough."""
        if self.estimate is None:
            # From the start: an empty bucket, filled by the configured burst and then
            # by what the portal did not drain.
            if self._first_send is None:
                return None
            # Only what left before the refused request: answers come late to a busy
            # process, and what left meanwhile did not fill this bucket.
            span = sent_at - self._first_send
            later = 0
            for t in reversed(self._sends):
                if t <= sent_at:
                    break
                later += 1
            accepted = self._sent_total - later - self._refused_total - self.burst
            if span < 0.5 or accepted <= 0:
                return None
            # Few requests over a short span, and the bucket's level at the start unknown
            # (another client may have had some in it): the high end of what they allow. Too
            # high costs a refusal that measures again; too low, seconds of an idle bucket.
            self._sure = False
            return min((accepted + SPAN_ERROR) / span, self.ceiling * 0.9)
        spans = [(sent_at - t, self._accepted(t, sent_at)) for t in self._full]
        spans = [(span, n) for span, n in spans if span >= self.MIN_SPAN]
        if not spans:
            return None
        longest, newest = spans[0], spans[-1]
        estimate = longest[1] / longest[0]
        # The bucket is within a request of full at each moment, and another client's
        # requests land in between: a span of `n` accepted is n +- SPAN_ERROR of capacity.
        low = (newest[1] - SPAN_ERROR) / newest[0]
        high = (newest[1] + SPAN_ERROR) / newest[0]
        self._sure = longest[1] >= SURE_AFTER
        if not low <= estimate <= high:
            # The newest span cannot be the same capacity: it changed since. Start over
            # from it, moving the estimate only as far as it proves.
            while self._full and self._full[0] < sent_at - newest[0]:
                self._full.popleft()
            estimate = min(max(estimate, low), high)
            self._sure = False
        return estimate

    def _accepted(self, start: float, end: float) -> int:
        """The job's requests sent in (start, end) and not refused."""
        sent = sum(1 for t in self._sends if start < t < end)
        return sent - sum(1 for t in self._refused if start < t < end)

    def _forget(self, now: float) -> None:
        while self._full and self._full[0] < now - self.HORIZON:
            self._full.popleft()
        oldest = self._full[0] if self._full else now
        while self._sends and self._sends[0] <= oldest:
            self._sends.popleft()
        while self._refused and self._refused[0] <= oldest:
            self._refused.popleft()

    def _drain(self, now: float, estimate: float) -> None:
        level = self._level - (now - self._level_at) * estimate
        self._level = max(-float(self.burst), level)
        self._level_at = now
