"""The portal being away, waited out by every worker together.

An outage is the portal (or the network, or a proxy in front of it) not answering at all:
a connection refused, a name that does not resolve, a connect timeout, a request dropped
without a reply, or a proxy's 502/503/504 without the portal's JSON. It is not counted
against any row's retry budget. While the portal is away every worker is held; one at a
time re-sends its request as a probe, after a capped backoff; the first answer lets them
all go on, at the pace the throttle had. The hold lasts at most `max_wait` seconds, then
the run is aborted as an unreachable portal (nothing is lost: the rows are `skipped`).

A dropped request alone is not yet an outage: a lost reply or a reset happens to one
request now and then, and counts against that request's rows. Two in a row, with no answer
in between (from any worker), are: the portal is away. A connection that cannot even open is
an outage at once.
"""

from __future__ import annotations

import logging
import threading

from cleanup.clock import Clock
from cleanup.errors import FatalAPIError, Stopped

log = logging.getLogger("cleanup")

UNREACHABLE = "PORTAL_UNREACHABLE"
# Dropped requests in a row, with no answer between them, that make an outage.
DROPS_TO_OUTAGE = 2


class OutageHold:
    """Shared by the workers of one run. `admit` before each request; then `answered`
    after any answer, or `failed` after an outage-type failure (from the same thread)."""

    def __init__(
        self,
        clock: Clock,
        *,
        max_wait: float,
        probe_base: float = 0.5,
        probe_max: float = 5.0,
        poll: float = 0.25,
        warn_after: float = 10.0,
        log_every: float = 60.0,
    ) -> None:
        self.clock = clock
        self.max_wait = max_wait
        self.probe_base = probe_base
        self.probe_max = probe_max
        self.poll = poll
        self.warn_after = warn_after  # a short outage is told at INFO only
        self.log_every = log_every
        self._lock = threading.Lock()
        self._streak = 0  # outage-type failures since the last answer
        self._away_since: float | None = None
        self._prober: int | None = None  # the thread whose request is the probe
        self._probes = 0  # failed probes in this outage
        self._next_probe = 0.0
        self._next_log = 0.0  # when "still waiting" is logged next
        self._warned = False  # this outage was logged as a warning
        self.outages = 0
        self.away_s = 0.0  # seconds the portal was away, outages that ended

    # ------------------------------------------------------------------ public

    def probe_wait(self, probes: int) -> float:
        """Capped backoff before the next probe, after `probes` failed ones."""
        return min(self.probe_max, self.probe_base * 2.0 ** max(probes, 0))

    def away_for(self) -> float:
        """Seconds the portal has been away now; 0 while it answers."""
        with self._lock:
            return 0.0 if self._away_since is None else self.clock.now() - self._away_since

    def waited_s(self) -> float:
        """Seconds of outage this run waited out, the current one included."""
        return self.away_s + self.away_for()

    def admit(self) -> None:
        """Return at once while the portal answers. While it is away, wait until it is back
        or until it is this worker's turn to probe. Raises FatalAPIError when the outage
        outlasts `max_wait`, Stopped when the run stops meanwhile."""
        me = threading.get_ident()
        while True:
            with self._lock:
                if self._away_since is None or self._prober == me:
                    return
                now = self.clock.now()
                away = now - self._away_since
                if away >= self.max_wait:
                    raise self._gave_up(away)
                if self._prober is None and now >= self._next_probe:
                    self._prober = me
                    return
                self._log_waiting(now, away)
                step = self.poll
                if self._prober is None:
                    step = min(step, self._next_probe - now)
                step = max(0.0, min(step, self.max_wait - away))
            if not self.clock.sleep(step):
                raise Stopped

    def answered(self) -> None:
        """The portal answered a request (whatever it said): it is not away."""
        with self._lock:
            self._streak = 0
            if self._prober == threading.get_ident():
                self._prober = None
            if self._away_since is None:
                return
            away = self.clock.now() - self._away_since
            self.away_s += away
            self._away_since = None
            self._probes = 0
            level = logging.WARNING if self._warned else logging.INFO
        log.log(level, "the portal answers again after %.0f s; going on", away)

    def failed(self, what: str, *, certain: bool) -> bool:
        """An outage-type failure (`certain`: the connection never opened). True when it
        counts against the request's rows: a dropped request while the portal answers."""
        with self._lock:
            now = self.clock.now()
            self._streak += 1
            if self._prober == threading.get_ident():
                self._prober = None
                self._probes += 1
                self._next_probe = now + self.probe_wait(self._probes)
            if self._away_since is not None:
                return False
            if not certain and self._streak < DROPS_TO_OUTAGE:
                return True
            self._away_since = now
            self._next_log = now + self.warn_after
            self._warned = False
            self.outages += 1
            self._probes = 0
            self._next_probe = now + self.probe_wait(0)
        log.info(
            "the portal is not answering (%s); holding every request, one probe at a time,"
            " for up to %.0f s (--max-wait)",
            what,
            self.max_wait,
        )
        return False

    def release(self) -> None:
        """The probing worker stops without an answer (the run stops): another may probe."""
        with self._lock:
            if self._prober == threading.get_ident():
                self._prober = None

    # ------------------------------------------------------------------ internals

    def _log_waiting(self, now: float, away: float) -> None:
        """A warning once the outage lasts `warn_after`, then once every `log_every`."""
        if self._away_since is not None and now >= self._next_log:
            self._warned = True
            self._next_log = self._away_since + self.log_every * (away // self.log_every + 1)
            log.warning(
                "the portal has not answered for %.0f s; still waiting (up to %.0f s, --max-wait)",
                away,
                self.max_wait,
            )

    def _gave_up(self, away: float) -> FatalAPIError:
        return FatalAPIError(
            UNREACHABLE,
            f"the portal did not answer for {away:.0f} s",
            f"Waited --max-wait ({self.max_wait:.0f} s) for it; check the address and the"
            " network, then run again with --resume",
        )
