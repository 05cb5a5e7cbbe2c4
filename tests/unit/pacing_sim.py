"""A fake clock and a discrete simulation of the job's pacing against the sandbox's own leaky
bucket, shared with another client: the throttle's behaviour in minutes of simulated time,
without a real sleep."""

from __future__ import annotations

from dataclasses import dataclass, field

from cleanup.pacing.throttle import Throttle
from cleanup.sandbox.limits import LeakyBucket


class FakeClock:
    """Time that moves only when someone sleeps (or a test calls `advance`)."""

    def __init__(self, start: float = 1000.0, wall: float = 1_700_000_000.0) -> None:
        self.t = start
        self.wall0 = wall - start

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.wall0 + self.t

    def sleep(self, seconds: float) -> bool:
        if seconds > 0:
            self.t += seconds
        return True

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Outcome:
    seconds: float
    refused: int
    accepted_at: list[float] = field(default_factory=list)  # seconds from the start

    def refused_share(self) -> float:
        return self.refused / (self.refused + len(self.accepted_at))

    def back_to_full(self, after: float, rate: float, span: float = 5.0) -> float | None:
        """Seconds after `after` until the job sends at 95 % of `rate` over `span` seconds."""
        for step in range(int(after * 10), int(self.seconds * 10)):
            t = step / 10
            if sum(1 for x in self.accepted_at if t <= x < t + span) >= 0.95 * rate * span:
                return t - after
        return None


def simulate(
    told: float,
    real: float,
    burst: int,
    requests: int,
    *,
    other: float = 0.0,
    other_until: float | None = None,
    answer: float = 0.03,
) -> Outcome:
    """The job, told `told` req/s, sends `requests` that the portal accepts, into a bucket
    draining `real` req/s (burst `burst`) that another client fills at `other` req/s (until
    `other_until` seconds, if given). A refusal reaches the job `answer` seconds later."""
    clock = FakeClock()
    start = clock.now()
    throttle = Throttle(told, burst, clock=clock)
    portal = LeakyBucket(clock)
    next_other = start + (1 / other if other else float("inf"))
    outcome = Outcome(0.0, 0)
    while len(outcome.accepted_at) < requests:
        throttle.acquire()
        now = clock.now()
        while next_other <= now:
            if other_until is None or next_other - start < other_until:
                portal.try_acquire(real, burst, now=next_other)
            next_other += 1 / other
        if portal.try_acquire(real, burst):
            outcome.accepted_at.append(now - start)
        else:
            outcome.refused += 1
            clock.advance(answer)
            throttle.on_refusal(sent_ago=answer)
    outcome.seconds = clock.now() - start
    return outcome
