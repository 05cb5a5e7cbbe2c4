"""A discrete simulation of the job's pacing against the sandbox's own leaky
bucket, shared with another client: the throttle's behaviour in minutes of simulated time,
without a real sleep."""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field
from typing import Any

from cleanup.pacing.retry import RetryPolicy
from cleanup.pacing.throttle import DITHER, Throttle
from cleanup.sandbox.limits import LeakyBucket
from tests.helpers.clock import FakeClock


@dataclass
class Outcome:
    seconds: float
    refused: int
    accepted_at: list[float] = field(default_factory=list)  # seconds from the start
    other_sent: int = 0
    other_refused: int = 0

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


def simulate_workers(
    told: float,
    real: float,
    burst: int,
    requests: int,
    *,
    other: float = 0.0,
    other_until: float | None = None,
    workers: int = 12,
    latency: float = 1.03,
    refusal_latency: float = 0.01,
    jitter: float = 0.01,
    seed: int = 1,
    other_resends: bool = True,
    share: float = 1.0,
    left_full: bool = False,
) -> Outcome:
    """Like `simulate`, with the job as it runs: `workers` requests in flight, each accepted
    answer `latency` seconds after it left, a refused one `refusal_latency` after it reached
    the portal, then the engine's backoff before the re-send; each request reaches the portal
    up to `jitter` seconds after it left. The other client is a real client too: what the
    portal refuses it, it sends again 0.1 s later, and it keeps its schedule (what fell
    behind goes as soon as the portal takes it): its rate stays `other`. With
    `other_resends=False` a refused request of the other client is lost (counted). With
    `left_full` the bucket starts full (the run this one resumed, say, filled it just before)."""
    rng = random.Random(seed)
    clock = FakeClock()
    start = clock.now()
    throttle = Throttle(
        told, burst, clock=clock, share=share, rng=random.Random(seed), dither=DITHER
    )
    portal = LeakyBucket(clock)
    while left_full and portal.try_acquire(real, burst):
        pass
    policy = RetryPolicy(jitter=0.0)
    outcome = Outcome(0.0, 0)
    events: list[tuple[float, int, str, tuple[Any, ...]]] = []
    order = itertools.count()

    def at(t: float, kind: str, *data: Any) -> None:
        heapq.heappush(events, (t, next(order), kind, data))

    jobs = requests
    backlog = 0  # the other client's requests due and not yet accepted
    for w in range(workers):
        at(start, "want", w, 0)
    if other:
        at(start + 1 / other, "other")
    last_answer = start
    while events:
        t, _, kind, data = heapq.heappop(events)
        clock.t = max(clock.t, t)
        now = clock.now()
        if kind == "other":  # one more request due: it keeps its schedule
            if other_until is not None and now - start >= other_until:
                continue
            if len(outcome.accepted_at) >= requests:
                continue
            backlog += 1
            if backlog == 1:
                at(now, "other_send")
            at(now + 1 / other, "other")
        elif kind == "other_send":
            ok = portal.try_acquire(real, burst)
            outcome.other_sent += 1
            outcome.other_refused += not ok
            backlog -= ok or not other_resends
            if backlog:
                at(now + (0.01 if ok else 0.1), "other_send")
        elif kind == "want":
            worker, refusals = data
            if refusals == 0:
                if jobs == 0:
                    continue
                jobs -= 1
            with throttle._lock:
                pause_seen, epoch = throttle._paused_until, throttle._epoch
            wait, interval, jumps = throttle._reserve()
            wait += throttle.dither()
            at(now + wait, "wake", worker, refusals, (pause_seen, epoch, interval, jumps))
        elif kind == "wake":
            worker, refusals, slot = data
            if throttle._claim(*slot):
                at(now + rng.uniform(0, jitter), "arrive", worker, refusals, now)
            else:
                with throttle._lock:
                    pause_seen, epoch = throttle._paused_until, throttle._epoch
                wait, interval, jumps = throttle._reserve()
                at(now + wait, "wake", worker, refusals, (pause_seen, epoch, interval, jumps))
        elif kind == "arrive":
            worker, refusals, sent = data
            if portal.try_acquire(real, burst):
                outcome.accepted_at.append(now - start)
                at(sent + latency, "done", worker)
            else:
                outcome.refused += 1
                at(now + refusal_latency, "refused", worker, refusals, sent)
        elif kind == "done":
            last_answer = now
            at(now, "want", data[0], 0)
        elif kind == "refused":
            worker, refusals, sent = data
            throttle.on_refusal(sent_ago=now - sent)
            delay = policy.limit_wait(refusals + 1, None)
            at(now + delay, "want", worker, refusals + 1)
    outcome.seconds = last_answer - start
    return outcome
