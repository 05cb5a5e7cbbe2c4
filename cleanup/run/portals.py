"""One bucket and one operating-time budget per portal, shared by every run on it.

The portal's limits are per portal, not per job file: two job files that clean up the same
portal at once must draw on one leaky bucket and one operating-time budget, or together
they would send twice the portal's rate. `PortalPacings` hands each run the `PortalPacing`
of its portal, made once (a portal is its REST base URL without the secret path: scheme,
host and port). Runs on other portals get their own, so they never slow each other down.

A shared throttle sleeps in the threads of several runs, each with its own stop (an abort on
one job file stops that one only): its clock wakes a sleeper when the sleeper's own run is
stopped, which `sleeping_on` tells it for the duration of a run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

from cleanup.clock import Clock, SystemClock
from cleanup.pacing.budget import OperatingBudget
from cleanup.pacing.throttle import DITHER, Throttle
from cleanup.run.config import RunConfig

if TYPE_CHECKING:
    from collections.abc import Mapping

# The stop of the run a thread works for (worker threads copy their run's context).
_RUN_STOP: ContextVar[threading.Event | None] = ContextVar("cleanup_run_stop", default=None)


@contextmanager
def sleeping_on(event: threading.Event) -> Iterator[None]:
    """Within the block (and in the threads started in it), a shared clock's sleep wakes
    when `event` is set."""
    token = _RUN_STOP.set(event)
    try:
        yield
    finally:
        _RUN_STOP.reset(token)


class SharedClock(SystemClock):
    """A clock for pacing that several runs share: a sleep ends early when the sleeping
    run's own stop is set (or, outside any run, this clock's)."""

    def sleep(self, seconds: float) -> bool:
        event = _RUN_STOP.get() or self.stop
        if seconds <= 0:
            return not event.is_set()
        return not event.wait(seconds)


@dataclass
class PortalPacing:
    """What paces the requests to one portal."""

    throttle: Throttle
    budget: OperatingBudget

    @classmethod
    def new(
        cls,
        rate: float,
        burst: int,
        operating_limit: float | None,
        clock: Clock,
        share: float = 1.0,
    ) -> Self:
        """A bucket and the budget it consults: a spent operating-time budget leaves the
        throttle no burst to offer. `share`: the job's part of the rate and burst (the
        operating-time budget is per application: a share does not touch it)."""
        budget = OperatingBudget(operating_limit, clock=clock)
        throttle = Throttle(rate, burst, clock=clock, budget=budget, share=share, dither=DITHER)
        return cls(throttle, budget)


def portal_identity(url: str) -> str:
    """`https://example.bitrix24.com/rest/1/<code>/` -> `https://example.bitrix24.com:443`:
    the portal, without the webhook's secret path; the same for its OAuth address."""
    parts = urlsplit(url.strip())
    scheme = (parts.scheme or "https").lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


@dataclass
class _Limits:
    rate: float
    burst: int
    operating_limit: float | None
    share: float = 1.0


class PortalPacings:
    """One `PortalPacing` per portal, made on first use. `expect()` each run's options first
    when the runs may differ: a portal's pacing takes the strictest of what they set (the
    lowest rate, burst and operating-time limit), since they share one portal's limits."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        self._stop = stop or threading.Event()
        self._limits: dict[str, _Limits] = {}
        self._made: dict[str, PortalPacing] = {}
        self._lock = threading.Lock()

    def expect(self, options: Mapping[str, Any]) -> str | None:
        """Note the limits a run with these RunConfig fields will use; its portal, if any."""
        url = options.get("webhook") or options.get("portal")
        if not url:
            return None
        rate, burst, limit = RunConfig.pacing_limits(options)
        share = float(options.get("share") or 1.0)
        key = portal_identity(str(url))
        with self._lock:
            known = self._limits.get(key)
            if known is None:
                self._limits[key] = _Limits(rate, burst, limit, share)
            else:
                known.rate, known.burst = min(known.rate, rate), min(known.burst, burst)
                known.share = min(known.share, share)
                if limit is not None:
                    known.operating_limit = min(known.operating_limit or limit, limit)
        return key

    def for_config(self, config: RunConfig) -> PortalPacing | None:
        """The pacing of the config's portal; None for a run that calls no portal."""
        url = config.webhook or config.portal
        if not url:
            return None
        key = portal_identity(url)
        with self._lock:
            made = self._made.get(key)
            if made is not None:
                return made
            if key not in self._limits:
                rate, burst = config.effective_rate
                self._limits[key] = _Limits(rate, burst, config.operating_limit, config.share)
            limits = self._limits[key]
            made = PortalPacing.new(
                limits.rate,
                limits.burst,
                limits.operating_limit,
                SharedClock(self._stop),
                limits.share,
            )
            self._made[key] = made
            return made
