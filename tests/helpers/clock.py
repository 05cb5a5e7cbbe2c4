"""The one fake clock of the tests: time moves only when someone sleeps or a test advances it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cleanup.pacing.throttle import Throttle

WALL_AT_ZERO = 1_700_000_000.0  # the wall clock when the monotonic clock reads 0


class FakeClock:
    """Satisfies `cleanup.clock.Clock`. `sleeps` records every wait asked for; `on_sleep` lets
    a test change the world meanwhile (a portal lifting a refusal, say)."""

    def __init__(self, start: float = 1000.0, on_sleep: Callable[[], None] | None = None) -> None:
        self.t = start
        self.on_sleep = on_sleep
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return WALL_AT_ZERO + self.t

    def sleep(self, seconds: float) -> bool:
        self.sleeps.append(seconds)
        self.t += max(seconds, 0.0)
        if self.on_sleep is not None:
            self.on_sleep()
        return True

    def advance(self, seconds: float) -> None:
        self.t += seconds


def queue_at_once(throttle: Throttle, clock: FakeClock, workers: int) -> list[float]:
    """`workers` requests asking the throttle for a slot at the same moment: how long each
    waits. Each goes through `acquire` (sleeping to its slot, sent there), then the clock is
    put back to that moment for the next one."""
    waits = []
    for _ in range(workers):
        start = clock.t
        assert throttle.acquire()
        waits.append(clock.t - start)
        clock.t = start
    return waits
