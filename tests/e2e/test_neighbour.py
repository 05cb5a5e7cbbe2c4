"""Issue 18: a good neighbour on a live portal. A share of the portal's limit with another
client on the sandbox's bucket (one bucket for every caller, as on a portal), runs bounded
in time (--max-duration, a job file's window and timezone), resume after a bound, and the
exit code, report, summary and metrics of a paused run. No timed asserts: the speed targets
are in tests/benchmarks/neighbour.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import requests
from click.testing import Result

from cleanup.exits import EXIT_OK, EXIT_PAUSED
from cleanup.sandbox import PortalConfig, SandboxPortal
from tests.helpers.cli import portal_args, read_report, write_rows
from tests.helpers.jobs import ENV, Setup, likes

PortalFactory = Callable[..., SandboxPortal]
RunCli = Callable[..., Result]
TIME_UP = "time is up: --max-duration 1s; run again, or --resume, to continue"


@contextmanager
def neighbour(portal: SandboxPortal, rate: float) -> Iterator[list[int]]:
    """Another application on the portal's bucket: `rate` cheap requests/s, never re-sent;
    yields the HTTP status of each of its requests."""
    statuses: list[int] = []
    stop = threading.Event()

    def send() -> None:
        with requests.Session() as session:
            while not stop.wait(1.0 / rate):
                answer = session.post(portal.webhook_url() + "server.time.json", json={})
                statuses.append(answer.status_code)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        yield statuses
    finally:
        stop.set()
        thread.join(5)


def summary_of(report: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(report.with_name(report.name + ".summary.json").read_text())
    return data


def job_deletes(portal: SandboxPortal) -> int:
    return sum(1 for r in portal.stats.log if r.path_method != "server.time" and r.status == 200)


def test_a_share_leaves_the_rest_of_the_bucket_to_the_neighbour(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    rows = likes(40)
    portal = portal_factory(rows, PortalConfig(rate=20.0, burst=10))
    src = write_rows(tmp_path / "in.csv", rows)
    with neighbour(portal, 4.0) as theirs:
        result = run_cli(
            "run", src, *portal_args(portal, tmp_path),
            "--rate", "20", "--burst", "10", "--share", "0.5", "--batch-size", "1",
            "--operating-limit", "0", "--html", tmp_path / "page.html",
        )  # fmt: skip
    assert result.exit_code == EXIT_OK, result.output
    assert theirs and all(code == 200 for code in theirs)  # the neighbour lost nothing
    # The job kept to its part (a refusal or two only when a loaded machine bunches its
    # requests: the figures are the benchmark's): its first requests are its part of the
    # burst (5 of 10), not the portal's whole burst.
    assert portal.stats.limit_refusals <= 2
    ours = sorted(r.t_start for r in portal.stats.log if r.path_method != "server.time")
    assert sum(1 for t in ours if t < ours[0] + 0.1) <= 5
    summary = summary_of(tmp_path / "in.report.csv")
    assert summary["share"] == 0.5 and summary["settings"]["share"] == 0.5
    assert "share 0.5: at most 10 req/s and a burst of 5" in result.output
    # The yardstick is the share's part too, not the portal's whole rate and burst.
    assert "maximum for these settings" in result.output
    assert "(10 req/s x 1 rows after a burst of 5)" in result.output
    assert summary["ideal_s"] >= (40 - 5) / 10
    page = (tmp_path / "page.html").read_text()
    assert "share 0.5: at most 10 req/s and a burst of 5" in page
    assert "estimate: 40 row(s) in 40 single" not in page  # batch size 1 is not single mode
    assert "estimate: 40 row(s) in 40 batch requests" in page


def test_max_duration_pauses_the_run_and_resume_finishes_it(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    rows = likes(60)
    portal = portal_factory(rows, PortalConfig(rate=10.0, burst=5))
    src = write_rows(tmp_path / "in.csv", rows)
    report = tmp_path / "in.report.csv"
    metrics = tmp_path / "run.prom"
    common = [
        *portal_args(portal, tmp_path), "--rate", "10", "--burst", "5", "--batch-size", "1",
        "--operating-limit", "0",
    ]  # fmt: skip
    first = run_cli("run", src, *common, "--max-duration", "1s", "--metrics-file", metrics)
    assert first.exit_code == EXIT_PAUSED, first.output
    lines = read_report(report)
    skipped = [r for r in lines if r["status"] == "skipped"]
    assert skipped and len(lines) == 60
    assert {r["error_description"] for r in skipped} == {f"not sent: {TIME_UP}"}
    removed_first = sum(1 for r in lines if r["status"] == "removed")
    assert portal.stats.removed == removed_first  # every report line is true
    summary = summary_of(report)
    assert summary["exit_code"] == EXIT_PAUSED and summary["paused"] == "--max-duration 1s"
    assert summary["rows_left"] == len(skipped)
    assert summary["estimate"]["rows_this_run"] and summary["estimate"]["runs_needed"] > 1
    assert "status=paused exit=75" in first.output
    prom = metrics.read_text()
    assert 'reaction_cleanup_rows{job="in",status="skipped"}' in prom.replace(" ", "")
    assert f'reaction_cleanup_rows_left{{job="in"}} {float(len(skipped))}' in prom
    assert 'reaction_cleanup_exit_code{job="in"} 75.0' in prom

    second = run_cli("run", src, *common, "--resume")
    assert second.exit_code == EXIT_OK, second.output
    assert {r["status"] for r in read_report(report)} == {"removed"}
    assert portal.stats.removed == 60
    assert job_deletes(portal) == 60  # no row sent twice across the two runs


def test_undo_takes_the_same_bound(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    rows = likes(30)
    portal = portal_factory(rows, PortalConfig(rate=10.0, burst=5))
    src = write_rows(tmp_path / "in.csv", rows)
    common = [*portal_args(portal, tmp_path), "--rate", "10", "--burst", "5", "--batch-size", "1"]
    assert run_cli("run", src, *common).exit_code == EXIT_OK
    undo = run_cli("undo", tmp_path / "in.report.csv", *common, "--yes", "--max-duration", "1s")
    assert undo.exit_code == EXIT_PAUSED, undo.output


def _window_around_now(zone: str, before: int, after: int) -> str:
    now = datetime.now(ZoneInfo(zone))
    start, end = now - timedelta(minutes=before), now + timedelta(minutes=after)
    return f"{start:%H:%M}-{end:%H:%M}"


def _setup(portal_factory: PortalFactory, tmp_path: Path, n: int, **keys: Any) -> Setup:
    portal = portal_factory(likes(n), PortalConfig(rate=10.0, burst=5))
    return Setup(tmp_path, portal, rate=10, burst=5, batch_size=1, operating_limit=0, **keys)


def test_run_job_outside_its_window_does_nothing_and_says_when_it_opens(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    # A window that opened an hour ago and closed a minute after: across midnight or not,
    # in a zone far from the machine's.
    window = _window_around_now("Pacific/Auckland", 120, -60)
    s = _setup(portal_factory, tmp_path, 5, window=window, timezone="Pacific/Auckland")
    src = s.drop("a.csv", likes(5))
    result = run_cli("run-job", s.job, env=s.env)
    assert result.exit_code == EXIT_OK, result.output
    assert f"outside its window {window} (Pacific/Auckland)" in result.output
    assert "the window opens at" in result.output
    assert s.portal.stats.requests == 0 and src.exists()


def test_run_job_inside_its_window_pauses_keeps_the_file_then_finishes_it(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    window = _window_around_now("America/New_York", 60, 60)
    keys = {"window": window, "timezone": "America/New_York", "max_duration": "1s"}
    s = _setup(portal_factory, tmp_path, 50, **keys)
    src = s.drop("a.csv", likes(50))
    metrics = tmp_path / "job.prom"
    first = run_cli("run-job", s.job, "--metrics-file", metrics, env=s.env)
    assert first.exit_code == EXIT_PAUSED, first.output
    assert src.exists()  # stays in the inbox for the next run
    assert "status=paused exit=75" in first.output
    assert 'reaction_cleanup_exit_code{job="test-job"} 75.0' in metrics.read_text()
    (report,) = s.reports.glob("*.report.csv")
    assert "time is up: --max-duration 1s" in report.read_text()
    index = s.reports / "index.html"
    assert "paused" in index.read_text()

    s.write_job(rate=10, burst=5, batch_size=1, operating_limit=0, window=window,
                timezone="America/New_York")  # fmt: skip
    second = run_cli("run-job", s.job, env={ENV: s.portal.webhook_url()})
    assert second.exit_code == EXIT_OK, second.output
    assert not src.exists() and (s.archive / "a.csv").exists()
    assert {r["status"] for r in read_report(report)} == {"removed"}
    assert s.portal.stats.removed == 50 and job_deletes(s.portal) == 50
