"""The whole job against a rate-limited sandbox portal over real HTTP: the steady state at the
configured limit, a bucket shared with another client, Retry-After, the operating-time limit
under both billings (per method, and the whole batch charged to `batch`).

No assertion here is about speed (that is tests/benchmarks/): they count refusals, rows and
waits. The pacing itself is unit-tested on a fake clock in tests/unit/test_throttle.py and
tests/unit/test_budget.py.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import Result

from cleanup.sandbox import PortalConfig, SandboxPortal
from tests.helpers.cli import portal_args, read_report, write_rows

PortalFactory = Callable[..., SandboxPortal]
RunCli = Callable[..., Result]
BOT = 456


def rows_of(n: int, first_message: int = 1000) -> list[tuple[int, int, str]]:
    return [(BOT, first_message + i, "like") for i in range(n)]


def run_job_cli(
    run_cli: RunCli, portal: SandboxPortal, tmp_path: Path, n: int, *extra: str
) -> tuple[Result, list[dict[str, str]], dict[str, Any]]:
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
    # The job learns the bucket is shared: a few refusals measure what the other
    # application leaves (7 of 10 req/s), and the job fits into it.
    assert 1 <= ours <= 0.15 * summary["requests"], (ours, summary["requests"])
    estimates = [float(x) for x in re.findall(r"capacity about ([0-9.]+) req/s", result.stderr)]
    assert estimates and all(e < 10.0 for e in estimates), estimates
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
    # One at a time would be 1 in flight. Each send is placed at random within its slot
    # (issue 18), so the burst's requests do not all start together: 11-13 of the workers
    # overlap on an idle machine, 9 was seen on a loaded one (CI); 6 still tells many apart
    # from a few.
    assert portal.stats.max_in_flight >= 6
    assert portal.stats.requests == 40


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


@pytest.mark.slow
@pytest.mark.parametrize("billing", ["method", "batch"])
def test_an_unknown_operating_limit_is_learnt_from_the_first_refusal(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path, billing: str
) -> None:
    # Told the cloud's 480 s, the portal allows 0.3 s per 3 s window, billed per method or
    # the whole batch to `batch` (every command then reports the batch-wide total). After
    # the first refusal the job works to what the portal reported: later windows see at
    # most one refused request each, and no row fails.
    config = PortalConfig(
        operating_limit=0.3,
        operating_window=3.0,
        operating_cost=0.01,
        latency=0.002,
        operating_billing=billing,
    )
    portal = portal_factory(rows_of(100), config)
    result, report, summary = run_job_cli(
        run_cli, portal, tmp_path, 100,
        "--rate", "100", "--burst", "100", "--batch-size", "10", "--concurrency", "2",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert [r["status"] for r in report] == ["removed"] * 100
    assert "operating-time limit is at most" in result.stderr
    assert summary["operating_refusals"] >= 1
    # 1.0 s of method time at 0.3 s per 3 s window: about 3 windows after the first.
    assert summary["operating_refusals"] <= 1 + 1 + summary["elapsed_s"] / 3.0, summary
