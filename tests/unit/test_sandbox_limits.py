"""The sandbox portal's limits on a fake clock: the leaky bucket and the operating window."""

from __future__ import annotations

from cleanup.sandbox.limits import LeakyBucket, OperatingClock
from tests.helpers.clock import FakeClock


def test_the_bucket_takes_a_burst_then_drains_at_its_rate() -> None:
    clock = FakeClock()
    bucket = LeakyBucket(clock)
    assert all(bucket.try_acquire(2.0, 5) for _ in range(5))
    assert not bucket.try_acquire(2.0, 5)  # full: refused, and adds nothing
    clock.advance(0.5)
    assert bucket.try_acquire(2.0, 5)  # one drained
    assert not bucket.try_acquire(2.0, 5)
    clock.advance(10)
    assert bucket.level == 5.0
    assert bucket.try_acquire(2.0, 5) and bucket.level == 1.0


def test_the_window_frees_its_oldest_part_at_the_reset_time() -> None:
    clock = FakeClock()
    window = OperatingClock(clock)
    key = ("webhook:1", "method")
    assert window.usage(key, 100.0) == (0.0, int(clock.wall() + 100))
    window.charge(key, 4.0, 100.0)
    first = clock.wall()
    clock.advance(25)  # a later tenth of the window
    window.charge(key, 3.0, 100.0)
    assert window.usage(key, 100.0) == (7.0, int(first + 100))
    clock.advance(75)  # the first part expires one window after its first charge
    assert window.usage(key, 100.0) == (3.0, int(first + 25 + 100))
    clock.advance(30)
    assert window.usage(key, 100.0)[0] == 0.0
