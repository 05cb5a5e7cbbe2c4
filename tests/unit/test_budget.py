"""The operating-time budget on a fake clock: greedy spending up to the limit, holding until
the reset, both billings (per method, the whole batch to `batch`), and a limit learnt from a
refusal when the job was told a larger one."""

from __future__ import annotations

import pytest

from cleanup.pacing.budget import OperatingBudget
from tests.helpers.clock import FakeClock


def test_budget_spends_greedily_then_holds_until_the_reset() -> None:
    clock = FakeClock()
    budget = OperatingBudget(100.0, clock=clock)
    reset = clock.wall() + 42
    budget.observe({"operating": 90.0, "operating_reset_at": reset})
    assert budget.hold_seconds() == 0.0 and budget.has_room()  # no slowing down before
    budget.observe({"operating": 96.0, "operating_reset_at": reset})
    # Until the reset, and a second more: the portal rounds the reset time down.
    assert budget.hold_seconds() == pytest.approx(43.0)
    clock.advance(44)
    # Past the reset the oldest part of the window has freed, how much is unknown: one
    # request goes to find out, the others look again shortly.
    assert budget.try_send(50) == 0.0
    assert budget.hold_seconds() == OperatingBudget.LOOK_AGAIN
    budget.observe({"operating": 30.0, "operating_reset_at": clock.wall() + 50})
    budget.settled(50)
    assert budget.hold_seconds() == 0.0
    budget.observe({"operating": 95.0, "operating_reset_at": clock.wall() + 50})
    assert budget.hold_seconds() == pytest.approx(51.0)  # the new window, at its 95 %


def test_budget_counts_the_commands_in_flight() -> None:
    # Eight batches of 50 on their way will spend about 8 s more: the ninth does not
    # overshoot together with them. It waits for their answers, not for the reset: what
    # they add is only known then (the totals reported already hold the part that has run).
    clock = FakeClock()
    budget = OperatingBudget(16.0, clock=clock)
    budget.observe({"operating": 7.0, "operating_reset_at": clock.wall() + 30, "processing": 0.02})
    assert budget.hold_seconds(50) == 0.0
    # Each goes while 7 s and what the batches in flight will add stay under 95 % of 16 s.
    assert [budget.try_send(50) for _ in range(8)] == [0.0] * 8  # 7 + 8 x 1 s = 15 s
    assert budget.hold_seconds(50) == OperatingBudget.LOOK_AGAIN  # + 1 s: 16 s, too much
    budget.observe({"operating": 13.0, "operating_reset_at": clock.wall() + 30})
    for _ in range(8):
        budget.settled(50)
    assert budget.hold_seconds(50) == 0.0  # 13 + 1 of 16: under 95 %, it goes
    budget.observe({"operating": 15.5, "operating_reset_at": clock.wall() + 30})
    assert budget.hold_seconds(50) == pytest.approx(31.0)  # spent: until the reset


def test_workers_whose_slots_come_together_pass_the_check_one_at_a_time() -> None:
    # Checking and counting in one step: of several batches whose throttle slots come at
    # once, only those that fit go; a check-then-count would let all of them through.
    clock = FakeClock()
    budget = OperatingBudget(10.0, clock=clock)
    budget.observe({"operating": 6.0, "operating_reset_at": clock.wall() + 30, "processing": 0.02})
    holds = [budget.try_send(50) for _ in range(6)]
    assert holds[:3] == [0.0, 0.0, 0.0]  # 6 + 3 x 1 s = 9: under 95 % of 10 before each
    assert all(h > 0 for h in holds[3:])
    for _ in range(3):
        budget.settled(50)  # the three that went: their answers say 9 s now
    budget.observe({"operating": 9.0, "operating_reset_at": clock.wall() + 30})
    assert budget.try_send(50) > 0  # 9 + 1 of 10: over 95 %


def test_budget_reads_answers_out_of_order_and_each_method_apart() -> None:
    # A limit of 94 s: 90 s spent holds (past 95 %), 70 s would not.
    clock = FakeClock()
    budget = OperatingBudget(94.0, clock=clock)
    reset = clock.wall() + 300
    budget.observe({"operating": 90.0, "operating_reset_at": reset})
    budget.observe({"operating": 70.0, "operating_reset_at": reset})  # an older answer, late
    assert budget.hold_seconds() == pytest.approx(301)  # still 90
    # Per-method billing: a batch's own `time` reports the batch method (not counted: 0).
    budget.observe({"operating": 0, "operating_reset_at": reset + 100}, "batch")
    assert budget.hold_seconds() == pytest.approx(301) and budget.reset_in() == pytest.approx(301)
    budget.observe({"operating": "12.5", "operating_reset_at": str(reset + 60)})  # strings too
    assert budget.hold_seconds() == 0.0  # a newer window: 12.5 s spent
    budget.observe({"duration": 0.1})  # no operating field: nothing learnt
    budget.observe(None)
    budget.observe({"operating": 80.0, "operating_reset_at": reset + 60})
    assert budget.hold_seconds() == 0.0  # 80 of 94: the answers without a total changed nothing
    assert OperatingBudget(None).hold_seconds(1000) == 0.0


def test_batch_billing_every_command_shows_the_batch_total() -> None:
    # The whole batch is charged to `batch`; each command's `operating` is that total: the
    # budget follows it like a method's own, and holds at the limit.
    clock = FakeClock()
    budget = OperatingBudget(10.0, clock=clock)
    reset = clock.wall() + 20
    budget.observe({"operating": 9.6, "operating_reset_at": reset}, "batch")
    for _ in range(50):
        budget.observe({"operating": 9.6, "operating_reset_at": reset, "processing": 0.02})
    assert budget.hold_seconds(50) == pytest.approx(21.0)  # 9.6 of 10: until the reset


def test_a_refusal_teaches_a_limit_lower_than_configured() -> None:
    # Told 480 s, the portal refuses at 10: from then on the job works to what it reported.
    clock = FakeClock()
    budget = OperatingBudget(480.0, clock=clock)
    reset = clock.wall() + 30
    for used in (2.0, 6.0, 10.2):
        budget.observe({"operating": used, "operating_reset_at": reset})
    assert budget.hold_seconds() == 0.0  # 10 of 480: no reason to wait
    budget.refused()
    assert budget.limit == pytest.approx(10.2) and budget.learned == 1
    assert budget.hold_seconds() == pytest.approx(31.0)
    budget.refused()  # refusals that come together teach it once
    assert budget.limit == pytest.approx(10.2) and budget.learned == 1
    # A learnt limit is spent to the full: a batch that may cross it still goes (its
    # refused commands go in the next window), not one that starts past it.
    budget.observe({"operating": 10.0, "operating_reset_at": reset + 1, "processing": 0.02})
    assert budget.try_send(50) == 0.0
    # The next waits for that batch's answer (how much of it ran), then for the reset.
    assert budget.hold_seconds(50) == OperatingBudget.LOOK_AGAIN
    budget.observe({"operating": 10.2, "operating_reset_at": reset + 1})
    budget.settled(50)
    assert budget.hold_seconds(50) == pytest.approx(32.0)
    # A later window refused lower still: the limit follows it down, never up.
    clock.advance(40)
    budget.observe({"operating": 9.0, "operating_reset_at": clock.wall() + 30})
    budget.refused()
    assert budget.limit == pytest.approx(9.0)
    budget.observe({"operating": 12.0, "operating_reset_at": clock.wall() + 30})
    budget.refused()
    assert budget.limit == pytest.approx(9.0)


def test_an_untracked_budget_learns_one_from_a_refusal() -> None:
    clock = FakeClock()
    budget = OperatingBudget(None, clock=clock)
    budget.observe({"operating": 5.0, "operating_reset_at": clock.wall() + 30})
    assert budget.hold_seconds() == 0.0
    budget.refused()
    assert budget.limit == 5.0 and budget.hold_seconds() == pytest.approx(31.0)


def test_the_request_that_crosses_a_learnt_limit_goes_alone() -> None:
    # Two batches crossing the limit together would run side by side, both refused in part:
    # two refused requests in one window. The crossing one waits for the answers in flight,
    # then goes alone.
    clock = FakeClock()
    budget = OperatingBudget(480.0, clock=clock)
    reset = clock.wall() + 30
    budget.observe({"operating": 10.2, "operating_reset_at": reset, "processing": 0.02})
    budget.refused()
    clock.advance(31)
    budget.observe({"operating": 8.5, "operating_reset_at": clock.wall() + 30})
    assert budget.try_send(50) == 0.0  # 8.5 + 1 <= 10.2: it does not cross
    assert budget.try_send(50) == OperatingBudget.LOOK_AGAIN  # 8.5 + 1 + 1 would, not alone
    budget.observe({"operating": 9.5, "operating_reset_at": clock.wall() + 30})
    budget.settled(50)
    assert budget.try_send(50) == 0.0  # 9.5 + 1 crosses 10.2: it goes, alone
    assert budget.try_send(50) == OperatingBudget.LOOK_AGAIN
