"""Throughput at the portal's limit: the throttle's model against a strict leaky bucket,
adaptive slow-down and recovery, Retry-After, the operating-time budget, and the whole job
against a rate-limited sandbox shared with another application.

No assertion here is about speed (that is tests/benchmarks/): they count refusals, rows and
waits. Pacing tests use small buckets and fast rates so the suite stays quick.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from click.testing import Result
from conftest import portal_args, read_report, write_rows
from hypothesis import given
from hypothesis import strategies as st

from cleanup.cli_progress import LogProgress
from cleanup.inputs import validate as validate_module
from cleanup.inputs.readers import RawChunk, open_table
from cleanup.inputs.validate import Validator
from cleanup.pacing.throttle import OperatingBudget, Throttle, default_headroom, ideal_seconds
from cleanup.run.progress import ProgressUpdate
from cleanup.sandbox import PortalConfig, SandboxPortal
from cleanup.sandbox.limits import LeakyBucket

PortalFactory = Callable[..., SandboxPortal]
RunCli = Callable[..., Result]
BOT = 456


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


def rows_of(n: int, first_message: int = 1000) -> list[tuple[int, int, str]]:
    return [(BOT, first_message + i, "like") for i in range(n)]


# ---------------------------------------------------------------- the model, with a fake clock


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
    bucket = LeakyBucket()
    rng = random.Random(7)
    jitter = 0.4 * min(throttle.headroom, 1.0) / rate
    refused = 0
    for i in range(3000):
        if i % 97 == 0:
            clock.advance(rng.uniform(0, 3 * burst / rate))  # idle spells refill the burst
        wait = throttle.reserve()
        clock.advance(wait)
        arrival = clock.now() + rng.uniform(-jitter, jitter) * (i % 2)
        refused += not bucket.try_acquire(arrival + jitter, rate, burst)
    assert refused == 0


def test_without_headroom_a_client_at_the_limit_is_refused() -> None:
    # Why the headroom exists: a client exactly at the boundary loses to the slightest
    # compression of its requests on the way.
    clock = FakeClock()
    throttle = Throttle(2.0, 10, clock=clock, headroom=0.0)
    bucket = LeakyBucket()
    refused = 0
    for i in range(200):
        clock.advance(throttle.reserve())
        refused += not bucket.try_acquire(clock.now() - 0.01 * (i % 2), 2.0, 10)
    assert refused > 0


def test_every_fresh_refusal_lowers_the_rate_and_fills_the_model() -> None:
    clock = FakeClock()
    throttle = Throttle(10.0, 20, clock=clock)
    throttle.on_refusal(sent_ago=0.05)
    assert throttle.rate == pytest.approx(8.0)
    # The model now holds a full bucket: the next slot is one interval away.
    assert throttle.reserve() == pytest.approx(1 / 8.0)
    # Refusals of requests sent before that slowdown are no news: no second cut.
    throttle.on_refusal(sent_ago=0.2)
    assert throttle.rate == pytest.approx(8.0)
    clock.advance(0.5)
    throttle.on_refusal(sent_ago=0.1)  # sent after the slowdown: the portal is still full
    assert throttle.rate == pytest.approx(6.4)
    assert throttle.stats.refusals == 3 and throttle.stats.slowdowns == 2
    for _ in range(20):
        clock.advance(1)
        throttle.on_refusal(sent_ago=0.0)
    assert throttle.rate == pytest.approx(2.5)  # never below a quarter of the configured rate


def test_the_rate_recovers_after_a_quiet_spell() -> None:
    clock = FakeClock()
    throttle = Throttle(10.0, 20, clock=clock, recover_after=20.0)
    throttle.on_refusal(sent_ago=0.0)
    assert throttle.rate == pytest.approx(8.0)
    clock.advance(19.0)
    throttle.reserve()
    assert throttle.rate == pytest.approx(8.0)  # not quiet long enough
    clock.advance(1.5)
    throttle.reserve()
    assert throttle.rate == pytest.approx(9.6)
    clock.advance(4.0)
    throttle.reserve()
    assert throttle.rate == pytest.approx(9.6)  # the next step comes a quarter spell later
    clock.advance(1.5)
    throttle.reserve()
    assert throttle.rate == 10.0  # and never above what was configured


def test_after_a_storm_the_rate_is_back_within_half_a_minute() -> None:
    # A storm (another application filling the shared bucket) pushed the job down to its
    # floor; once it passes, the job is back at its rate within ~30 s, not minutes (the
    # steps were 10 % every 10 s after 20 s of quiet: 160 s from the floor at 2 req/s).
    clock = FakeClock()
    throttle = Throttle(2.0, 10, clock=clock)
    for _ in range(10):
        clock.advance(3.0)
        throttle.on_refusal(sent_ago=0.0)
    assert throttle.rate == pytest.approx(0.5)  # the floor: a quarter of the rate
    for _ in range(60):  # 30 s without a refusal, a request every 0.5 s
        clock.advance(0.5)
        throttle.reserve()
    assert throttle.rate == 2.0
    # A storm that is still on refuses the first step too far: one step back, no more.
    throttle.on_refusal(sent_ago=0.0)
    assert throttle.rate == pytest.approx(1.6)


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
        clock.sleep = sleep  # once
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


# ---------------------------------------------------------------- the operating-time budget


def test_budget_slows_then_holds_until_the_reset() -> None:
    clock = FakeClock()
    budget = OperatingBudget(100.0, clock=clock)
    reset = clock.wall() + 42
    budget.observe({"operating": 50.0, "operating_reset_at": reset})
    assert budget.pace_factor() == 1.0 and budget.hold_seconds() == 0.0
    budget.observe({"operating": 87.5, "operating_reset_at": reset})
    assert budget.pace_factor() == pytest.approx(0.55)  # halfway from slow_at to stop_at
    assert budget.hold_seconds() == 0.0
    budget.observe({"operating": 96.0, "operating_reset_at": reset})
    assert budget.pace_factor() == pytest.approx(0.1)
    # Until the reset, and a second more: the portal rounds the reset time down.
    assert budget.hold_seconds() == pytest.approx(43.0)
    clock.advance(44)
    # Past the reset the oldest part of the window has freed, not all of it: go on at half
    # pace until an answer says how much is spent now.
    assert budget.hold_seconds() == 0.0 and budget.pace_factor() == pytest.approx(0.55)
    budget.observe({"operating": 30.0, "operating_reset_at": clock.wall() + 50})
    assert budget.pace_factor() == 1.0


def test_budget_counts_the_commands_in_flight() -> None:
    # Eight batches of 50 on their way will spend about 8 s more: the ninth waits for the
    # reset instead of overshooting together with them.
    clock = FakeClock()
    budget = OperatingBudget(16.0, clock=clock)
    budget.observe({"operating": 7.0, "operating_reset_at": clock.wall() + 30, "processing": 0.02})
    assert budget.hold_seconds(50) == 0.0
    for _ in range(8):
        budget.sending(50)
    assert budget.fraction() == pytest.approx((7.0 + 400 * 0.02) / 16)
    assert budget.hold_seconds(50) == pytest.approx(31.0)
    for _ in range(8):
        budget.settled(50)
    assert budget.hold_seconds(50) == 0.0


def test_budget_reads_answers_out_of_order_and_keeps_batch_apart() -> None:
    clock = FakeClock()
    budget = OperatingBudget(100.0, clock=clock)
    reset = clock.wall() + 300
    budget.observe({"operating": 90.0, "operating_reset_at": reset})
    budget.observe({"operating": 70.0, "operating_reset_at": reset})  # an older answer, late
    assert budget.used == 90.0
    # A batch's own `time` reports the batch method (not counted: 0) with a fresh window.
    budget.observe({"operating": 0, "operating_reset_at": reset + 100}, "batch")
    assert budget.used == 90.0 and budget.reset_in() == pytest.approx(301)
    budget.observe({"operating": "12.5", "operating_reset_at": str(reset + 60)})  # strings too
    assert budget.used == 12.5
    budget.observe({"duration": 0.1})  # no operating field: nothing learnt
    budget.observe(None)
    assert budget.used == 12.5
    assert OperatingBudget(None).pace_factor() == 1.0


def test_a_spent_budget_spaces_the_throttle_out() -> None:
    clock = FakeClock()
    throttle = Throttle(10.0, 50, clock=clock)
    budget = OperatingBudget(100.0, clock=clock)
    throttle.budget = budget
    assert throttle.reserve() == 0.0 and throttle.reserve() == 0.0
    budget.observe({"operating": 95.0, "operating_reset_at": clock.wall() + 60})
    assert throttle.credit() == 0
    assert throttle.reserve() == pytest.approx(1.0)  # 1/rate / 0.1: the burst is not used


def test_progress_log_says_a_wait_once(caplog: pytest.LogCaptureFixture) -> None:
    progress = LogProgress()
    with caplog.at_level("INFO", logger="cleanup"):
        for left in (30, 29, 28):
            progress(ProgressUpdate(0, 0, 10, f"waiting {left} s (operating-time limit)"))
        progress(ProgressUpdate(0, 0, 10, ""))
        progress(ProgressUpdate(0, 0, 10, "waiting 5 s (Retry-After)"))
    waits = [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting")]
    assert waits == [
        "waiting: waiting 30 s (operating-time limit)",
        "waiting: waiting 5 s (Retry-After)",
    ]


# ---------------------------------------------------------------- the job against the sandbox


def run_job_cli(
    run_cli: RunCli, portal: SandboxPortal, tmp_path: Path, n: int, *extra: str
) -> tuple[Result, list[dict[str, str]], dict]:
    path = write_rows(tmp_path / "in.csv", rows_of(n))
    result = run_cli("run", path, *portal_args(portal, tmp_path), *extra)
    report = read_report(tmp_path / "in.report.csv")
    summary = json.loads((tmp_path / "in.report.csv.summary.json").read_text())
    return result, report, summary


@pytest.mark.slow
def test_steady_state_at_the_limit_is_almost_never_refused(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    # The client runs at exactly the portal's rate and burst, several requests in flight.
    portal = portal_factory(rows_of(200), PortalConfig(rate=10.0, burst=10, latency=0.02))
    result, report, summary = run_job_cli(
        run_cli, portal, tmp_path, 200, "--rate", "10", "--burst", "10", "--batch-size", "5"
    )
    assert result.exit_code == 0, result.stderr
    assert [r["status"] for r in report] == ["removed"] * 200
    assert portal.stats.requests >= 40
    assert portal.stats.limit_refusals <= 1  # none expected; one is 2.5 % of 40 requests
    assert summary["limit_refusals"] == portal.stats.limit_refusals
    assert summary["requests"] == portal.stats.requests
    assert summary["ideal_s"] == pytest.approx((40 - 10) / 10, abs=1.0)


class OtherApp:
    """Another application on the same portal: sends `rate` requests/s to the same bucket."""

    def __init__(self, portal: SandboxPortal, rate: float) -> None:
        self.url = portal.webhook_url() + "server.time.json"
        self.interval = 1.0 / rate
        self.sent = self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.wait(self.interval):
                answer = session.post(self.url, json={}, timeout=5)
                self.sent += 1
                self.refused += answer.status_code in (429, 503)

    def __enter__(self) -> OtherApp:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.mark.slow
def test_sharing_the_bucket_with_another_app_slows_down_and_stays_mostly_unrefused(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory(rows_of(250), PortalConfig(rate=10.0, burst=10, latency=0.01))
    with OtherApp(portal, rate=3.0) as other:
        result, report, summary = run_job_cli(
            run_cli, portal, tmp_path, 250, "--rate", "10", "--burst", "10", "--batch-size", "5"
        )
    assert result.exit_code == 0, result.stderr
    assert [r["status"] for r in report] == ["removed"] * 250
    assert {r["attempts"] for r in report} == {"1"}  # a refused request is not an attempt
    ours = portal.stats.limit_refusals - other.refused
    assert summary["limit_refusals"] == ours
    # The job learns the bucket is shared: a few refusals, each lowering its rate, and
    # then it fits into what the other application leaves.
    assert 1 <= ours <= 0.15 * summary["requests"], (ours, summary["requests"])
    assert "slowing to 8.00 req/s" in result.stderr
    assert other.sent > 0


def test_retry_after_is_honoured(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory(rows_of(20), PortalConfig(retry_after=1.5, limit_status=429))
    portal.inject("limit")
    result, report, summary = run_job_cli(
        run_cli, portal, tmp_path, 20,
        "--rate", "100", "--burst", "100", "--batch-size", "10", "--concurrency", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert [r["status"] for r in report] == ["removed"] * 20
    assert summary["limit_refusals"] == 1 and summary["requests"] == 3
    log = portal.stats.log
    refused = next(r for r in log if r.status == 429)
    later = [r.t_start for r in log if r.t_start > refused.t_start]
    # Nothing was sent before the portal's Retry-After was up (a lower bound, not a speed).
    assert later and min(later) - refused.t_end >= 1.4
    assert summary["limit_wait_s"] >= 1.4


@pytest.mark.slow
def test_retry_after_holds_requests_already_waiting_for_their_slot(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    # Four requests queue for slots 1 s apart; the first is refused with Retry-After: 1.5.
    # Those whose slots fall inside that pause must not go out into it (they did: slots
    # taken before a refusal were kept), but wait and take a slot after it. (1 s apart, so
    # a slow answer on a busy machine still arrives before the second slot.)
    portal = portal_factory(rows_of(20), PortalConfig(retry_after=1.5, limit_status=429))
    portal.inject("limit")
    result, report, summary = run_job_cli(
        run_cli, portal, tmp_path, 20,
        "--rate", "1", "--burst", "1", "--batch-size", "5", "--concurrency", "4",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert [r["status"] for r in report] == ["removed"] * 20
    assert summary["limit_refusals"] == 1 and summary["requests"] == 5
    log = portal.stats.log
    refused = next(r for r in log if r.status == 429)
    later = [r.t_start for r in log if r.t_start > refused.t_start]
    # A lower bound, not a speed: nothing left before the portal's Retry-After was up.
    assert len(later) == 4 and min(later) - refused.t_end >= 1.4


def operating_portal(
    portal_factory: PortalFactory, n: int, *, limit: float, window: float
) -> SandboxPortal:
    config = PortalConfig(
        operating_limit=limit, operating_window=window, operating_cost=0.01, latency=0.002
    )
    return portal_factory(rows_of(n), config)


@pytest.mark.slow
def test_operation_time_limit_in_a_batch_waits_and_resends_without_failing_rows(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    # The job does not know the portal's budget (tracking off), so it runs into the limit:
    # the commands past it come back OPERATION_TIME_LIMIT inside the batch answer.
    portal = operating_portal(portal_factory, 60, limit=0.2, window=2.0)
    result, report, summary = run_job_cli(
        run_cli,
        portal,
        tmp_path,
        60,
        "--rate", "100", "--burst", "100", "--batch-size", "10",
        "--concurrency", "1", "--operating-limit", "0", "--progress", "log",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert [r["status"] for r in report] == ["removed"] * 60
    assert {r["attempts"] for r in report} <= {"1", "2"}
    assert portal.stats.operating_refusals > 0
    assert summary["operating_refusals"] > 0 and summary["limit_wait_s"] > 0
    assert "OPERATION_TIME_LIMIT" in result.stderr and "waiting" in result.stderr
    assert "waiting: waiting" in result.stderr  # the progress log shows the wait


@pytest.mark.slow
def test_operation_time_limit_on_a_single_call(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = operating_portal(portal_factory, 30, limit=0.1, window=1.0)
    result, report, summary = run_job_cli(
        run_cli,
        portal,
        tmp_path,
        30,
        "--rate", "100", "--burst", "100", "--mode", "single",
        "--concurrency", "2", "--operating-limit", "0",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert [r["status"] for r in report] == ["removed"] * 30
    assert portal.stats.operating_refusals > 0 and summary["operating_refusals"] > 0
    assert all(r.status in (200, 429) for r in portal.stats.log)


@pytest.mark.parametrize("mode", ["single", "batch"])
def test_operation_time_limit_with_retry_after_waits_what_the_portal_says(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path, mode: str
) -> None:
    # A whole call refused with 429 OPERATION_TIME_LIMIT and a Retry-After, before any
    # answer told the reset time: the job waits what the portal says (1 s), not its blind
    # 30 s backoff, which is past --max-wait here and would fail the rows.
    portal = portal_factory(rows_of(10), PortalConfig(retry_after=1.0))
    portal.inject("operating")
    result, report, summary = run_job_cli(
        run_cli, portal, tmp_path, 10,
        "--mode", mode, "--concurrency", "1", "--max-wait", "10",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert [r["status"] for r in report] == ["removed"] * 10
    assert {r["attempts"] for r in report} == {"1"}  # the refused call ran nothing
    assert portal.stats.operating_refusals == 1
    assert summary["operating_refusals"] == 1
    assert summary["limit_refusals"] == 0 and summary["retries"] == 0
    assert "OPERATION_TIME_LIMIT" in result.stderr


@pytest.mark.slow
def test_a_known_budget_is_spared_before_the_portal_refuses(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    # Told the portal's budget, the job slows down and holds as the reported time.operating
    # nears it, instead of running into OPERATION_TIME_LIMIT.
    portal = operating_portal(portal_factory, 60, limit=0.2, window=2.0)
    result, report, summary = run_job_cli(
        run_cli,
        portal,
        tmp_path,
        60,
        "--rate", "100", "--burst", "100", "--batch-size", "5",
        "--concurrency", "1", "--operating-limit", "0.2",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert [r["status"] for r in report] == ["removed"] * 60
    unaware = portal.stats.operating_refusals
    assert unaware <= 2, unaware  # at most what was already on its way
    assert summary["limit_wait_s"] > 0


def test_the_summary_reports_what_the_issue_asks(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory(rows_of(120))
    result, _, summary = run_job_cli(
        run_cli, portal, tmp_path, 120, "--rate", "50", "--burst", "5", "--batch-size", "10"
    )
    assert result.exit_code == 0, result.stderr
    for key in ("requests", "limit_refusals", "limit_wait_s", "rows_per_s", "ideal_rows_per_s"):
        assert key in summary
    assert summary["requests"] == 12
    # 12 requests, 5 at once then 50/s: the ideal counts the burst once.
    assert summary["ideal_s"] == pytest.approx(7 / 50, abs=0.2)
    assert summary["ideal_rows_per_s"] == pytest.approx(120 / summary["ideal_s"], rel=0.01)
    assert summary["limit_wait_s"] > 0  # 7 requests had to wait for the bucket


def test_auto_concurrency_spends_the_burst_with_many_in_flight(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    # A slow portal (each request 0.2 s) with a big bucket: one request at a time would
    # reach 5 req/s; the burst is spent with many in flight at once.
    portal = portal_factory(rows_of(200), PortalConfig(latency=0.2))
    result, _, _ = run_job_cli(
        run_cli, portal, tmp_path, 200, "--rate", "2", "--burst", "50", "--batch-size", "5"
    )
    assert result.exit_code == 0, result.stderr
    assert portal.stats.max_in_flight >= 10
    assert portal.stats.requests == 40


# ---------------------------------------------------------------- a fast dry run stays exact

dedup_rows = st.lists(
    st.tuples(
        st.sampled_from(["1", "2", "3", " 2", "2.0", "x"]),
        st.sampled_from(["7", "8", "9", "007", "10"]),
        st.sampled_from(["like", "LIKE", "fire", "nope"]),
    ),
    min_size=1,
    max_size=80,
)


def reference_duplicates(rows: list[tuple[str, str, str]]) -> list[int]:
    """The first row of each duplicate, 0 for first occurrences and invalid rows."""
    first: dict[tuple[int, int, str], int] = {}
    out = []
    for i, (bot, msg, reaction) in enumerate(rows, start=1):
        canonical = {"like": "like", "fire": "fire"}.get(reaction.strip().lower())
        try:
            key = (int(float(bot)), int(msg), canonical)
        except ValueError:
            out.append(0)
            continue
        if canonical is None:
            out.append(0)
            continue
        out.append(first.setdefault(key, i) if key in first else 0)
        first.setdefault(key, i)
    return out


@given(rows=dedup_rows, chunk=st.integers(1, 9), hash_bits=st.sampled_from([1, 2, 64]))
def test_duplicates_stay_exact_when_hashes_collide(
    rows: list[tuple[str, str, str]], chunk: int, hash_bits: int
) -> None:
    # With a hash of one or two bits nearly every key collides with another: the verdicts
    # must still be exact, because a hash match is only ever a candidate. Tiny sorted
    # slices (2 rows) exercise the split of big chunks as well.
    def weak_hash(b: np.ndarray, m: np.ndarray, r: np.ndarray) -> np.ndarray:
        full = strong_hash(b, m, r)
        shift = np.uint64(64 - hash_bits)
        return full if hash_bits == 64 else (full >> shift) << shift  # the top bits only

    strong_hash = validate_module._hash
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(validate_module, "_hash", weak_hash)
        mp.setattr(validate_module._Deduplicator, "_INDEX_BITS", 1 if hash_bits == 1 else 24)
        validator = Validator()
        found: list[int] = []
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            checked = validator.check(
                RawChunk(start + 1, *(pa.array([r[k] for r in part]) for k in range(3)))
            )
            found.extend(checked.duplicate_of.tolist())
    assert found == reference_duplicates(rows)


def test_a_million_ids_take_the_fast_path_but_odd_ones_the_full_rule() -> None:
    # Plain digits go straight to integers; anything else gets the documented rule.
    values = [
        "12",
        " 12 ",
        "12.0",
        "0012",
        "0",
        "-3",
        "1e3",
        "0x10",
        "９",
        "1" * 19,
        "0" * 20 + "5",
    ]
    chunk = RawChunk(
        1,
        pa.array(values),
        pa.array([str(i + 1) for i in range(len(values))]),
        pa.array(["like"] * len(values)),
    )
    checked = Validator().check(chunk)
    assert checked.bot_id.tolist() == [12, 12, 12, 12, 0, 0, 0, 0, 0, 0, 5]
    reasons = {i: d for i, (_, d) in checked.problems.items()}
    assert reasons[4] == "botId: '0' is not a positive integer (ids start at 1)"
    assert reasons[7] == "botId: '0x10' is not a positive integer"
    assert sorted(reasons) == [4, 5, 6, 7, 8, 9]
    assert not checked.duplicate_of.any()  # every row has its own messageId


def test_read_ahead_keeps_order_and_stops_with_the_reader(tmp_path: Path) -> None:
    # The next chunk is read in a thread while this one is validated; rows keep their
    # numbers, and a caller that stops early leaves no reader thread behind.
    path = tmp_path / "rows.parquet"
    pq.write_table(
        pa.table(
            {
                "botId": ["1"] * 100,
                "messageId": [str(i) for i in range(1, 101)],
                "reaction": ["like"] * 100,
            }
        ),
        path,
    )
    chunks = list(open_table(path, chunk_rows=10).chunks())
    assert [c.first_row for c in chunks] == list(range(1, 101, 10))
    assert sum(len(c) for c in chunks) == 100

    stream = open_table(path, chunk_rows=10).chunks()
    assert next(iter(stream)).first_row == 1
    stream.close()  # type: ignore[attr-defined]
    for thread in threading.enumerate():
        if thread.name == "cleanup-read-ahead":
            thread.join(5)
            assert not thread.is_alive()


def test_a_run_inside_the_burst_never_beats_the_portals_maximum(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    # Three quick requests all inside the burst: the maximum is one round trip as observed,
    # not a guessed latency that would leave the achieved rate above the "maximum".
    portal = portal_factory(rows_of(150))
    result, _, summary = run_job_cli(run_cli, portal, tmp_path, 150)
    assert result.exit_code == 0, result.stderr
    assert summary["requests"] == 3
    assert summary["ideal_s"] < 0.5
    assert summary["rows_per_s"] <= summary["ideal_rows_per_s"]
