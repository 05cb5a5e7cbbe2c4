"""The throttle on a fake clock: the GCRA model against the sandbox's strict leaky bucket, and
the capacity estimate that finds the portal's real rate (a wrong setting, a shared bucket)."""

from __future__ import annotations

import random

import pytest
from pacing_sim import FakeClock, simulate

from cleanup.pacing.budget import OperatingBudget
from cleanup.pacing.throttle import Throttle, default_headroom, ideal_seconds
from cleanup.sandbox.limits import LeakyBucket

# ---------------------------------------------------------------- the model


def test_ideal_seconds_counts_the_burst_once() -> None:
    assert ideal_seconds(0, 2.0, 50, 1.0) == 0.0
    assert ideal_seconds(30, 2.0, 50, 1.0) == 1.0  # all inside the burst: one round trip
    assert ideal_seconds(400, 2.0, 50, 1.0) == 176.0  # (400 - 50) / 2 + 1
    assert ideal_seconds(1000, 5.0, 250, 0.0) == 150.0


def test_burst_then_one_slot_per_interval() -> None:
    clock = FakeClock()
    throttle = Throttle(2.0, 50, clock=clock)
    assert throttle.headroom == default_headroom(50) == 2.0
    waits = [throttle.reserve() for _ in range(60)]
    # The burst less the headroom leaves at once, then one every 1/rate.
    assert waits[:48] == [0.0] * 48
    assert waits[48:51] == pytest.approx([0.5, 1.0, 1.5])
    assert throttle.credit() == 0
    clock.advance(100)
    assert throttle.credit() == 48  # a quiet spell refills the whole usable burst


@pytest.mark.parametrize(("rate", "burst"), [(2.0, 50), (5.0, 250), (10.0, 1), (20.0, 4)])
def test_a_strict_leaky_bucket_never_refuses_the_schedule(rate: float, burst: int) -> None:
    # Workers take slots and send at them, each send arriving a little early or late (the
    # network and the scheduler); the portal's own bucket, exactly as the sandbox runs it,
    # must accept every one. Refusals would mean the model and the portal disagree.
    clock = FakeClock()
    throttle = Throttle(rate, burst, clock=clock)
    bucket = LeakyBucket(clock)
    rng = random.Random(7)
    jitter = 0.4 * min(throttle.headroom, 1.0) / rate
    refused = 0
    for i in range(3000):
        if i % 97 == 0:
            clock.advance(rng.uniform(0, 3 * burst / rate))  # idle spells refill the burst
        clock.advance(throttle.reserve())
        arrival = clock.now() + rng.uniform(-jitter, jitter) * (i % 2)
        refused += not bucket.try_acquire(rate, burst, now=arrival + jitter)
    assert refused == 0


def test_without_headroom_a_client_at_the_limit_is_refused() -> None:
    # Why the headroom exists: a client exactly at the boundary loses to the slightest
    # compression of its requests on the way.
    clock = FakeClock()
    throttle = Throttle(2.0, 10, clock=clock, headroom=0.0)
    bucket = LeakyBucket(clock)
    refused = 0
    for i in range(200):
        clock.advance(throttle.reserve())
        refused += not bucket.try_acquire(2.0, 10, now=clock.now() - 0.01 * (i % 2))
    assert refused > 0


def test_retry_after_pauses_everyone() -> None:
    clock = FakeClock()
    throttle = Throttle(100.0, 100, clock=clock)
    throttle.on_refusal(retry_after=3.0, sent_ago=0.0)
    assert throttle.waiting() == ("Retry-After", pytest.approx(3.0))
    assert throttle.waiting_note() == "waiting 3 s (Retry-After)"
    assert throttle.reserve() == pytest.approx(3.0)
    assert throttle.reserve() >= 3.0


def test_a_slot_inside_a_pause_is_retaken_after_it_and_never_counted_twice() -> None:
    # Worker X sleeps towards its slot when a long pause begins; worker Y books the first
    # slot after the pause. X must not go out into the pause, and the slot X gives back
    # must not be freed twice (Y's booking already jumped over it): right after the pause
    # the model lets out no more than the bucket holds (burst - headroom = 8).
    clock = FakeClock()
    throttle = Throttle(2.0, 10, clock=clock)
    for _ in range(8):
        assert throttle.reserve() == 0  # the burst, sent at once
    sleep = clock.sleep
    booked: list[float] = []

    def sleep_then_pause(seconds: float) -> bool:
        clock.sleep = sleep  # type: ignore[method-assign]  # once
        throttle.pause(18.0)
        booked.append(clock.now() + throttle.reserve())  # Y
        return sleep(seconds)

    clock.sleep = sleep_then_pause  # type: ignore[method-assign]
    assert throttle.acquire()  # X
    pause_end = booked[0]
    assert clock.now() >= pause_end  # X waited the pause out
    sends = [pause_end, clock.now()]  # Y and X
    sends += [clock.now() + throttle.reserve() for _ in range(10)]
    assert sum(t <= pause_end + 1e-9 for t in sends) <= 8


def test_waited_time_is_wall_clock_not_a_sum_over_workers() -> None:
    clock = FakeClock()
    throttle = Throttle(1.0, 1, clock=clock, headroom=0.0)
    waits = [throttle.reserve() for _ in range(8)]  # 8 workers queue at once
    assert waits == pytest.approx([0, 1, 2, 3, 4, 5, 6, 7])
    assert throttle.stats.waited_s == pytest.approx(7.0)  # not 28
    throttle.pause(2.0)
    throttle.held(1.0)  # overlaps the pause: adds nothing
    assert throttle.stats.waited_s == pytest.approx(7.0)
    clock.advance(20)
    throttle.pause(2.0)
    assert throttle.stats.waited_s == pytest.approx(9.0)


def test_a_spent_operating_budget_offers_no_burst() -> None:
    clock = FakeClock()
    budget = OperatingBudget(100.0, clock=clock)
    throttle = Throttle(10.0, 50, clock=clock, budget=budget)
    assert throttle.credit() == 48
    budget.observe({"operating": 96.0, "operating_reset_at": clock.wall() + 60})
    assert throttle.credit() == 0


# ---------------------------------------------------------------- the capacity estimate


def test_the_first_refusal_measures_the_rate_from_the_start() -> None:
    # Told 10/s, the portal drains 5 (burst 10): 8 go at once, then 10/s; the bucket is
    # full when 10 + 5 t = 8 + 10 t accepted, the first refusal. Between the empty start and
    # that full moment the portal drained (accepted - burst) / t = its rate.
    clock = FakeClock()
    throttle = Throttle(10.0, 10, clock=clock)
    portal = LeakyBucket(clock)
    while True:
        throttle.acquire()
        if not portal.try_acquire(5.0, 10):
            throttle.on_refusal(sent_ago=0.0)
            break
    assert throttle.capacity.estimate == pytest.approx(5.0, rel=0.25)
    assert throttle.rate == pytest.approx(0.95 * throttle.capacity.estimate)  # cruising under it


def test_refusals_of_requests_sent_before_the_change_are_no_news() -> None:
    clock = FakeClock()
    throttle = Throttle(10.0, 20, clock=clock)
    for _ in range(30):
        throttle.acquire()
    throttle.on_refusal(sent_ago=0.05)
    estimate = throttle.capacity.estimate
    throttle.on_refusal(sent_ago=0.2)  # it left before the first refusal was seen
    assert throttle.capacity.estimate == estimate
    assert throttle.stats.refusals == 2 and throttle.stats.slowdowns == 1


def test_two_full_moments_measure_the_capacity_between_them() -> None:
    # Refused at t=0 and again at t=10 s with 30 requests accepted between: 3 req/s left.
    clock = FakeClock()
    throttle = Throttle(10.0, 20, clock=clock)
    throttle.on_refusal(sent_ago=0.0)  # too early to measure from the start: cut
    for _ in range(30):
        clock.advance(1 / 3)
        throttle.capacity.sent(clock.now())
    clock.advance(0.01)
    throttle.on_refusal(sent_ago=0.0)
    assert throttle.capacity.estimate == pytest.approx(3.0, rel=0.02)


def test_more_through_than_the_estimate_allows_raises_it_without_a_refusal() -> None:
    clock = FakeClock()
    throttle = Throttle(10.0, 20, clock=clock)
    throttle.on_refusal(sent_ago=0.0)
    low = throttle.capacity.estimate
    assert low is not None and low < 10
    for _ in range(200):  # the portal takes everything: it has more room than thought
        throttle.acquire()
    assert throttle.capacity.estimate == 10.0 and throttle.rate == 10.0


@pytest.mark.parametrize(
    ("told", "real", "burst"), [(10.0, 5.0, 10), (4.0, 2.0, 50), (2.0, 2.0, 50), (5.0, 5.0, 250)]
)
def test_told_too_much_or_right_it_reaches_the_real_ideal(
    told: float, real: float, burst: int
) -> None:
    n = max(240, 4 * burst)
    done = simulate(told, real, burst, n)
    assert ideal_seconds(n, real, burst) / done.seconds >= 0.97
    assert done.refused_share() < 0.05
    if told == real:
        assert done.refused == 0  # the steady state is never refused


@pytest.mark.parametrize(("real", "burst", "other"), [(2.0, 50, 1.0), (5.0, 250, 2.0)])
def test_sharing_the_bucket_it_takes_what_is_left(real: float, burst: int, other: float) -> None:
    left = real - other
    n = max(240, 4 * burst)
    done = simulate(real, real, burst, n, other=other)
    assert ideal_seconds(n, left, burst) / done.seconds >= 0.97
    assert done.refused_share() < 0.05


@pytest.mark.parametrize(("real", "burst", "other"), [(2.0, 50, 1.0), (5.0, 250, 2.0)])
@pytest.mark.parametrize("stop", [40.0, 61.0, 77.0])
def test_when_the_other_client_stops_it_is_back_at_the_full_rate(
    real: float, burst: int, other: float, stop: float
) -> None:
    done = simulate(real, real, burst, int(real * 150), other=other, other_until=stop)
    back = done.back_to_full(stop, real)
    # A probe every 35 requests (one refusal each while nothing changed), at most 14 s apart.
    assert back is not None and back <= 20.0, back
