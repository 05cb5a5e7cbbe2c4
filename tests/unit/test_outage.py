"""The outage hold (cleanup.portal.outage) on the fake clock: what is an outage, what counts
against rows, and how long it is waited out."""

from __future__ import annotations

import threading

import pytest

from cleanup.errors import FatalAPIError
from cleanup.portal.outage import OutageHold
from tests.helpers.clock import FakeClock


def hold(max_wait: float = 100.0) -> tuple[OutageHold, FakeClock]:
    clock = FakeClock()
    return OutageHold(clock, max_wait=max_wait), clock


def test_one_dropped_request_counts_against_its_rows_two_in_a_row_are_an_outage() -> None:
    h, _ = hold()
    assert h.failed("dropped", certain=False) is True  # a fault of that request
    h.answered()
    assert h.failed("dropped", certain=False) is True  # an answer came between
    assert h.failed("dropped", certain=False) is False  # two in a row: the portal is away
    assert h.outages == 1 and h.away_for() == 0.0


def test_a_connection_that_never_opened_is_an_outage_at_once() -> None:
    h, clock = hold()
    assert h.failed("refused", certain=True) is False
    clock.advance(7.0)
    assert h.away_for() == 7.0
    h.answered()
    assert h.away_s == 7.0 and h.away_for() == 0.0 and h.waited_s() == 7.0


def test_while_away_one_worker_probes_after_the_backoff_the_others_wait() -> None:
    h, clock = hold()
    h.failed("refused", certain=True)
    t0 = clock.now()
    h.admit()  # this thread becomes the probe, after the first backoff
    assert clock.now() - t0 == pytest.approx(0.5)
    other: list[str] = []

    def another_worker() -> None:
        try:
            h.admit()
            other.append("admitted")
        except FatalAPIError as exc:
            other.append(exc.code)

    worker = threading.Thread(target=another_worker)
    worker.start()
    worker.join(timeout=5)
    # The probe is this thread's: the other worker waited (its sleeps moved the fake clock)
    # until --max-wait ran out, never admitted beside the probe.
    assert other == ["PORTAL_UNREACHABLE"]
    assert clock.now() - t0 >= 100.0 - 0.5


def test_probes_back_off_to_a_cap() -> None:
    h, _ = hold()
    assert [h.probe_wait(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_the_hold_ends_with_an_abort_after_max_wait() -> None:
    h, clock = hold(max_wait=10.0)
    h.failed("refused", certain=True)
    with pytest.raises(FatalAPIError) as caught:
        while True:
            h.admit()
            h.failed("refused", certain=True)
    assert caught.value.code == "PORTAL_UNREACHABLE"
    assert "--max-wait (10 s)" in caught.value.hint
    assert 10.0 <= clock.now() - 1000.0 <= 10.5
