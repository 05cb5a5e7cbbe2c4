"""The throttle on a fake clock: the GCRA model against the sandbox's strict leaky bucket, and
the capacity estimate that finds the portal's real rate (a wrong setting, a shared bucket)."""

from __future__ import annotations

import random

import pytest

from cleanup.pacing.budget import OperatingBudget
from cleanup.pacing.throttle import Throttle, default_headroom, ideal_seconds
from cleanup.sandbox.limits import LeakyBucket
from tests.helpers.clock import FakeClock, queue_at_once
from tests.helpers.pacing_sim import simulate, simulate_workers

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
    waits = queue_at_once(throttle, clock, 60)
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
        assert throttle.acquire()  # the clock is now at its slot
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
        assert throttle.acquire()
        refused += not bucket.try_acquire(2.0, 10, now=clock.now() - 0.01 * (i % 2))
    assert refused > 0


def test_retry_after_pauses_everyone() -> None:
    clock = FakeClock()
    throttle = Throttle(100.0, 100, clock=clock)
    throttle.on_refusal(retry_after=3.0, sent_ago=0.0)
    assert throttle.waiting() == ("Retry-After", pytest.approx(3.0))  # type: ignore[comparison-overlap]
    assert throttle.waiting_note() == "waiting 3 s (Retry-After)"
    first, second = queue_at_once(throttle, clock, 2)
    assert first == pytest.approx(3.0)
    assert second >= 3.0


def test_a_slot_inside_a_pause_is_retaken_after_it_and_never_counted_twice() -> None:
    # Worker X sleeps towards its slot when a long pause begins; worker Y books the first
    # slot after the pause. X must not go out into the pause, and the slot X gives back
    # must not be freed twice (Y's booking already jumped over it): right after the pause
    # the model lets out no more than the bucket holds (burst - headroom = 8).
    clock = FakeClock()
    throttle = Throttle(2.0, 10, clock=clock)
    assert queue_at_once(throttle, clock, 8) == [0.0] * 8  # the burst, sent at once
    sleep = clock.sleep
    booked: list[float] = []

    def sleep_then_pause(seconds: float) -> bool:
        clock.sleep = sleep  # type: ignore[method-assign]  # once
        throttle.pause(18.0)
        booked.append(clock.now() + queue_at_once(throttle, clock, 1)[0])  # Y
        return sleep(seconds)

    clock.sleep = sleep_then_pause  # type: ignore[method-assign]
    assert throttle.acquire()  # X
    pause_end = booked[0]
    assert clock.now() >= pause_end  # X waited the pause out
    sends = [pause_end, clock.now()]  # Y and X
    sends += [clock.now() + wait for wait in queue_at_once(throttle, clock, 10)]
    assert sum(t <= pause_end + 1e-9 for t in sends) <= 8


def test_waited_time_is_wall_clock_not_a_sum_over_workers() -> None:
    clock = FakeClock()
    throttle = Throttle(1.0, 1, clock=clock, headroom=0.0)
    waits = queue_at_once(throttle, clock, 8)
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
    # Few requests over a short span: the high end of what they allow (2 more); a probe
    # comes soon, and the next refusal measures over a longer span.
    estimate = throttle.capacity.estimate
    assert estimate is not None
    assert 5.0 <= estimate <= 9.0
    assert not throttle.capacity._sure
    assert throttle.rate == pytest.approx(0.95 * estimate)  # cruising under it


def test_the_first_measure_counts_only_what_left_before_the_refused_request() -> None:
    # A busy process reads the refusal late: what left meanwhile did not fill the bucket.
    clock = FakeClock()
    throttle = Throttle(10.0, 10, clock=clock)
    capacity = throttle.capacity
    for _ in range(21):  # 20 accepted over 2 s (5/s after the burst of 10), then refused
        capacity.sent(clock.now())
        clock.advance(0.1)
    refused_sent = clock.now() - 0.1
    for _ in range(6):  # left before the refusal was read
        capacity.sent(clock.now())
        clock.advance(0.1)
    throttle.on_refusal(sent_ago=clock.now() - refused_sent)
    assert capacity.estimate == pytest.approx((10 + 2) / 2.0, rel=0.02)  # not (16 + 2) / 2


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
    for _ in range(400):  # the portal takes everything: it has more room than thought
        throttle.acquire()
    assert throttle.capacity.estimate == 10.0 and throttle.rate == 10.0


def test_a_refusal_voids_the_slots_handed_out_at_the_disproved_rate() -> None:
    # Workers sleeping towards slots drawn while probing at twice the estimate would all be
    # refused too: a refusal that is news redraws the schedule, and they take new slots.
    clock = FakeClock()
    throttle = Throttle(10.0, 10, clock=clock, headroom=1.0)
    for _ in range(9):
        assert throttle.acquire()
    with throttle._lock:
        pause_seen, epoch = throttle._paused_until, throttle._epoch
    wait, interval, jumps = throttle._reserve()
    refused_at = clock.now()
    throttle.on_refusal(sent_ago=0.0)  # news: the first refusal
    clock.advance(wait)
    assert not throttle._claim(pause_seen, epoch, interval, jumps)
    next_slot = clock.now() + queue_at_once(throttle, clock, 1)[0]
    # Two intervals on: what the other clients had refused meanwhile comes back first.
    assert next_slot == pytest.approx(refused_at + 2.0 / throttle.rate)
    throttle.on_refusal(sent_ago=0.5)  # sent before that: no news, the new slots stand
    with throttle._lock:
        assert throttle._epoch == epoch + 1


def _refused_after(clock: FakeClock, throttle: Throttle, rate: float, seconds: float) -> None:
    # `rate * seconds` accepted, then one more that the portal refuses (it was sent too).
    for _ in range(round(rate * seconds)):
        clock.advance(1 / rate)
        throttle.capacity.sent(clock.now())
    clock.advance(0.01)
    throttle.capacity.sent(clock.now())
    throttle.on_refusal(sent_ago=0.0)


def test_the_capacity_is_measured_over_the_longest_span_of_the_horizon() -> None:
    # Full moments 4 s apart, 3.25 req/s accepted between them (13 a span, one request's
    # error is 8 % of each): over the three spans together the error is a third of that.
    clock = FakeClock()
    throttle = Throttle(10.0, 20, clock=clock)
    throttle.on_refusal(sent_ago=0.0)
    estimates = []
    for _ in range(3):
        _refused_after(clock, throttle, 3.25, 4.0)
        estimates.append(throttle.capacity.estimate)
    assert estimates[-1] == pytest.approx(3.25, rel=0.03)
    assert throttle.capacity._sure  # 39 requests measured: probes 40 requests apart


def test_a_newest_span_that_disagrees_starts_the_measure_over() -> None:
    # 5 req/s for 20 s, then another client takes 2: the long span says 4.x, the newest span
    # (3 req/s over 4 s, 12 +- 1) cannot be that capacity: the estimate follows the newest.
    clock = FakeClock()
    throttle = Throttle(10.0, 20, clock=clock)
    throttle.on_refusal(sent_ago=0.0)
    _refused_after(clock, throttle, 5.0, 20.0)
    assert throttle.capacity.estimate == pytest.approx(5.0, rel=0.02)
    _refused_after(clock, throttle, 3.0, 4.0)
    # As far as the newest span proves (12 + 2 over 4 s), not to its middle on 12 requests.
    assert throttle.capacity.estimate == pytest.approx(3.5, rel=0.01)
    assert not throttle.capacity._sure  # the next probe comes sooner
    _refused_after(clock, throttle, 3.0, 6.0)  # measured from the newest moment on
    assert throttle.capacity.estimate == pytest.approx(3.0, rel=0.05)


def test_a_raise_needs_two_requests_more_than_the_estimate_allows() -> None:
    # The bucket may have been a request short of full when it refused: one request more
    # than the estimate drains is no proof; two are.
    clock = FakeClock()
    throttle = Throttle(10.0, 20, clock=clock)
    throttle.on_refusal(sent_ago=0.0)
    _refused_after(clock, throttle, 2.0, 10.0)
    capacity = throttle.capacity
    estimate = capacity.estimate
    assert estimate is not None
    capacity.sent(clock.now())
    capacity.sent(clock.now())
    assert capacity.estimate == estimate  # level 2: not above it
    capacity.sent(clock.now())
    assert capacity.estimate == pytest.approx(estimate * 1.25)


@pytest.mark.parametrize(
    ("told", "real", "burst", "n"),
    [
        (10.0, 5.0, 10, 120),
        (10.0, 5.0, 10, 240),
        (4.0, 2.0, 50, 240),
        (2.0, 2.0, 50, 240),
        (5.0, 5.0, 250, 1000),
    ],
)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_told_too_much_or_right_it_reaches_the_real_ideal(
    told: float, real: float, burst: int, n: int, seed: int
) -> None:
    # The job as it runs: requests in flight for a second each, refusals answered at once,
    # arrivals jittered. The targets: >= 0.95 of the real ideal, < 5 % refused.
    workers = int(told * 1.03) + 3
    done = simulate_workers(told, real, burst, n, workers=workers, seed=seed)
    # 0.965-0.99: the short run (120 requests, 24 s) pays most for the first measures.
    assert ideal_seconds(n, real, burst, 1.03) / done.seconds >= (0.96 if n < 200 else 0.97)
    assert done.refused_share() < 0.05
    if told == real:
        assert done.refused == 0  # the steady state is never refused


@pytest.mark.parametrize(
    ("real", "burst", "other", "n"),
    [(2.0, 50, 1.0, 240), (5.0, 250, 2.0, 600), (5.0, 10, 2.0, 120)],
)
@pytest.mark.parametrize("seed", [1, 2])
def test_sharing_the_bucket_it_takes_what_is_left(
    real: float, burst: int, other: float, n: int, seed: int
) -> None:
    # The other client re-sends what the portal refuses it, so it keeps its rate: the job
    # is judged against the capacity the other really left it.
    done = simulate_workers(real, real, burst, n, other=other, workers=int(real) + 3, seed=seed)
    other_got = (done.other_sent - done.other_refused) / done.seconds
    assert other_got >= 0.9 * other
    assert ideal_seconds(n, real - other_got, burst, 1.03) / done.seconds >= 0.95
    # At 1 req/s left a probe every 14 s (to be back within 15 s when the other client
    # stops) is one refusal per ~15 requests: about 5 % there, under 3 % at 3 req/s.
    assert done.refused_share() < (0.06 if real - other < 1.5 else 0.05)


@pytest.mark.parametrize(("real", "burst", "other"), [(2.0, 50, 1.0), (5.0, 250, 2.0)])
@pytest.mark.parametrize("stop", [25.0, 40.0, 61.0, 77.0])
def test_when_the_other_client_stops_it_is_back_at_the_full_rate(
    real: float, burst: int, other: float, stop: float
) -> None:
    done = simulate_workers(
        real, real, burst, int(real * 150), other=other, other_until=stop, workers=int(real) + 3
    )
    back = done.back_to_full(stop, real)
    # A probe at most 14 s after the last refusal; at twice the estimate it is at the full
    # rate at once.
    assert back is not None and back <= 15.0, back


@pytest.mark.parametrize("workers", [5, 16])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_bucket_left_full_costs_the_refusal_not_the_rate(workers: int, seed: int) -> None:
    # QA round 2 (bug 4): a run resumed at once after a paused one met the bucket the first
    # left full; its first request was refused before it could measure anything, and the
    # halving guess (1 req/s) was cruised on as if measured (with a shared bucket's room
    # after it, and a probe 10 s on, behind slots handed out at the guess): before the fix
    # back at the full rate after 10-16 s, 17-24 requests in its first 20 s here (28 on
    # QA's portal) where the portal took 40; after it 0.6-1.4 s and 37-38.
    done = simulate_workers(2.0, 2.0, 50, 80, workers=workers, seed=seed, left_full=True)
    back = done.back_to_full(0.0, 2.0)
    assert back is not None and back <= 15.0, back  # issue 18: full rate within 15 s
    for t in range(15, int(done.seconds) - 5):  # and it stays there
        assert sum(1 for x in done.accepted_at if t <= x < t + 5) >= 0.9 * 2.0 * 5
    # What a full bucket lets through in a 20 s run is 2 req/s x 20 s: the refusal costs
    # about a second of it, not half the run.
    assert sum(1 for x in done.accepted_at if x < 20) >= 0.9 * 40
    assert done.refused <= 3


def test_the_single_threaded_model_agrees() -> None:
    done = simulate(10.0, 5.0, 10, 240)
    assert ideal_seconds(240, 5.0, 10) / done.seconds >= 0.97
    assert done.refused_share() < 0.05


def test_a_probe_that_keeps_finding_room_doubles_its_rate() -> None:
    # Like TCP's slow start: an estimate far too low (the first measure was of a few
    # requests) is left within seconds of probing, not one quarter at a time.
    clock = FakeClock()
    throttle = Throttle(10.0, 10, clock=clock)
    throttle.on_refusal(sent_ago=0.0)
    _refused_after(clock, throttle, 1.0, 30.0)
    capacity = throttle.capacity
    assert capacity.estimate == pytest.approx(1.0, rel=0.05)
    estimate = capacity.estimate
    assert estimate is not None
    start = capacity._probe_at
    assert capacity.rate(start - 0.1) == pytest.approx(0.95 * estimate)
    assert capacity.rate(start) == pytest.approx(2 * estimate)
    assert capacity.rate(start + 2.0) == pytest.approx(4 * estimate)
    assert capacity.rate(start + 10.0) == 10.0  # never over the configured rate
