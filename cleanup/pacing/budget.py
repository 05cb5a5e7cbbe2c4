"""The portal's operating-time budget, as the job sees it from the answers.

The portal counts each method's run time over a sliding ten-minute window (ten one-minute
parts) and refuses with OPERATION_TIME_LIMIT once the window's total is over its limit
(480 s on the cloud; off on premise unless switched on, then 420 s). Two billings are seen:

- **per method** (the documentation): each command in a batch is charged to its own method,
  and its `result_time[key].operating` is that method's total;
- **batch** (measured on live portals, b24jssdk pull request 539): the whole batch request is
  charged to the method `batch`, and every command's `operating` in that answer shows the
  same batch-wide total.

`OperatingBudget` follows both: every `time` block it is shown (the batch's own and each
command's) updates the total of the method it reports, and the job is limited by the
fullest. It spends greedily: a request goes while the total, plus what the commands already
in flight will add, stays under `stop_at` of the limit (all of a limit learnt from a
refusal). The check and the counting of the request as in flight are one step
(`try_send`): workers whose slots come together would otherwise all pass it. When only the
commands in flight make the budget look spent, the job waits for their answers (the totals
already reported hold the part of them that has run), not for the reset; past the limit,
requests wait for the reset time the portal gave (`operating_reset_at`), when the oldest part
of the window frees. That is the fastest schedule the window allows (the budget's own floor:
the limit at once, then the limit per window).

The limit it works to is the configured one (`--operating-limit`) until the portal refuses:
a refusal proves the real limit is at most the highest total the portal reported in that
window, so from then on that figure is the limit, used to the full: the one request that
crosses it (per method billing, the portal runs its commands that fit and refuses the rest,
which go in the next window) goes alone, after the answers in flight, so a window meets at
most one refused request. Another refusal in a later window lowers the limit again.
"""

from __future__ import annotations

import logging
import math
import threading

from cleanup.clock import Clock, SystemClock

log = logging.getLogger("cleanup")

MAIN = ""  # the job's own method; "batch" for a batch's outer `time`


class OperatingBudget:
    # The portal gives operating_reset_at in whole seconds ("usually int"), rounded down:
    # the window frees up to a second after it. Waits run this much past it.
    RESET_SLACK = 1.0
    # Past a reset with no newer answer, the total is unknown: one request at a time finds
    # it out, the others wait this long between looks.
    LOOK_AGAIN = 0.25

    def __init__(
        self,
        limit: float | None = 480.0,
        *,
        clock: Clock | None = None,
        stop_at: float = 0.95,
    ) -> None:
        self.limit = limit or None  # 0 / None: not tracked (until a refusal teaches one)
        self.stop_at = stop_at
        self.clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._in_flight = 0  # commands sent whose answers have not come yet
        self._cost: float | None = None  # seconds of method time per command, on average
        self._used: dict[str, float] = {}
        self._reset: dict[str, float] = {}  # unix time, from the portal
        self._peak = 0.0  # the highest total reported since the last refusal
        self._stale = False  # a reset passed since the last answer: the total is unknown
        self.learned = 0  # times a refusal taught a lower limit

    # ------------------------------------------------------------------ what answers say

    def observe(self, time_info: object, method: str = MAIN) -> None:
        """Read `operating` / `operating_reset_at` from an answer's `time` (all optional)."""
        if not isinstance(time_info, dict):
            return
        used = _number(time_info.get("operating"))
        reset = _number(time_info.get("operating_reset_at"))
        spent = _number(time_info.get("processing", time_info.get("duration")))
        if used is None:
            return
        with self._lock:
            self._forget_reset()
            if method == MAIN and spent is not None and spent >= 0:
                # One command's own run time: what each command in flight will likely add.
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
            self._peak = max(self._peak, used)
            self._stale = False

    def refused(self) -> None:
        """The portal said OPERATION_TIME_LIMIT: its limit is at most the highest total it
        reported since the last refusal. Refusals that come together teach it once."""
        with self._lock:
            if self._peak <= 0:
                return  # nothing reported yet: nothing learnt
            if self.limit is None or self._peak < self.limit:
                log.info(
                    "the portal's operating-time limit is at most %.1f s (it refused at that "
                    "total); working to that from now on",
                    self._peak,
                )
                self.learned += 1
            self.limit = self._peak if self.limit is None else min(self.limit, self._peak)
            self._peak = 0.0  # the next window's peak, for a refusal there

    def try_send(self, commands: int) -> float:
        """Check and count `commands` as leaving, in one step: 0 if they may go (they are
        now in flight), else how long to wait. Several workers whose slots come together
        must not all pass the check before any of them is counted (each would overshoot)."""
        with self._lock:
            hold = self._hold(commands)
            if hold <= 0:
                self._in_flight += commands
            return hold

    def settled(self, commands: int) -> None:
        with self._lock:
            self._in_flight = max(0, self._in_flight - commands)

    # ------------------------------------------------------------------ what to do

    @property
    def reset_at(self) -> float | None:
        with self._lock:
            return self._reset.get(MAIN, self._reset.get("batch"))

    def has_room(self) -> bool:
        return self.hold_seconds() <= 0

    def hold_seconds(self, commands: int = 0) -> float:
        """How long to wait before sending `commands` more; 0 if the budget has room."""
        with self._lock:
            return self._hold(commands)

    def reset_in(self) -> float | None:
        """Seconds until the window frees its oldest part (with the rounding slack), if known
        and ahead."""
        with self._lock:
            return self._reset_in()

    # ------------------------------------------------------------------ internals

    def _hold(self, commands: int) -> float:
        if self.limit is None:
            return 0.0
        self._forget_reset()
        if self._stale:
            # The window has freed some, how much no answer has said yet: one request
            # goes to find out, the rest look again shortly.
            return self.LOOK_AGAIN if self._in_flight else 0.0
        if self.learned:
            # A limit the portal showed by refusing is used to the full: the request that
            # crosses it is the one refusal this window meets, and its refused commands
            # go in the next. Stopping short would leave part of every window unspent.
            # It goes alone, once the others' answers have told the total: two crossing
            # together would run side by side and both be refused in part.
            if self._fraction(0) < 1.0 and (self._fraction(commands) <= 1.0 or not self._in_flight):
                return 0.0
            full = self._fraction(0, in_flight=False) >= 1.0
        else:
            if self._fraction(commands) < self.stop_at:
                return 0.0
            full = self._fraction(0, in_flight=False) >= self.stop_at
        if not full and self._in_flight:
            # Only the commands on their way make it look spent; what they really add is
            # less (the totals already reported include the part of them that has run):
            # their answers will tell, shortly, rather than the window's reset, long after.
            return self.LOOK_AGAIN
        wait = self._reset_in()
        if wait is None:
            return self.LOOK_AGAIN if self._in_flight else 0.0
        return min(wait, 600.0)

    def _fraction(self, extra: int, *, in_flight: bool = True) -> float:
        """The share of the limit spent, counting what the commands in flight (and `extra`
        about to leave) will likely add; the most over the methods seen; 0 when not tracking."""
        if not self.limit:
            return 0.0
        used = max(self._used.values(), default=0.0)
        if self._cost is not None:
            used += ((self._in_flight if in_flight else 0) + extra) * self._cost
        return used / self.limit

    def _reset_in(self) -> float | None:
        resets = [r for m, r in self._reset.items() if self._used.get(m, 0.0) > 0]
        if not resets:
            return None
        wait = min(resets) + self.RESET_SLACK - self.clock.wall()
        return wait if wait > 0 else None

    def _forget_reset(self) -> None:
        # Past a reset time the oldest part of the window has freed: the totals are no
        # longer known (not zero: the newer parts still count) until an answer tells them.
        now = self.clock.wall()
        for method, reset in list(self._reset.items()):
            if reset + self.RESET_SLACK <= now and self._used.get(method, 0.0) > 0:
                self._used[method] = 0.0
                self._stale = True
                self._peak = 0.0  # a refusal from now on is about the window ahead


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
