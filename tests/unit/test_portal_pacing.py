"""One bucket per portal (cleanup.run.portals) and the exit code of failed rows."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from cleanup.exits import EXIT_ABORTED, EXIT_INTERRUPTED, run_exit_code, state_word
from cleanup.run.config import RunConfig
from cleanup.run.portals import PortalPacings, SharedClock, portal_identity, sleeping_on
from cleanup.run.runner import StopSignal


@pytest.mark.parametrize(
    ("url", "identity"),
    [
        ("https://Example.bitrix24.com/rest/1/secret-code/", "https://example.bitrix24.com:443"),
        ("https://example.bitrix24.com", "https://example.bitrix24.com:443"),
        ("https://example.bitrix24.com:443/rest/7/other/", "https://example.bitrix24.com:443"),
        ("http://127.0.0.1:8024/rest/1/x/", "http://127.0.0.1:8024"),
    ],
)
def test_a_portal_is_its_address_without_the_secret_path(url: str, identity: str) -> None:
    assert portal_identity(url) == identity


def config(url: str, **options: object) -> RunConfig:
    return RunConfig(input=Path("x.csv"), webhook=url, **options)


def test_runs_on_one_portal_share_one_pacing_and_other_portals_get_theirs() -> None:
    pacings = PortalPacings()
    a1 = pacings.for_config(config("https://a.example/rest/1/one/"))
    a2 = pacings.for_config(config("https://a.example/rest/2/two/"))
    b = pacings.for_config(config("https://b.example/rest/1/one/"))
    assert a1 is a2 and a1 is not b
    assert a1 is not None and a1.throttle.budget is a1.budget
    assert pacings.for_config(RunConfig(input=Path("x.csv"), dry_run=True)) is None


def test_the_strictest_limits_of_a_portals_job_files_pace_it() -> None:
    pacings = PortalPacings()
    url = "https://a.example/rest/1/x/"
    pacings.expect({"webhook": url, "plan": "enterprise"})
    pacings.expect({"webhook": url, "plan": "enterprise", "rate": 3.0, "operating_limit": 0})
    pacings.expect({"webhook": url, "plan": "enterprise", "burst": 100, "operating_limit": 300.0})
    made = pacings.for_config(config(url, plan="enterprise"))
    assert made is not None
    assert (made.throttle.rate, made.throttle.burst) == (3.0, 100)
    assert made.budget.limit == 300.0


def test_a_shared_clock_wakes_the_run_that_was_stopped_only() -> None:
    clock = SharedClock(threading.Event())
    stopped, running = threading.Event(), threading.Event()
    stopped.set()
    with sleeping_on(stopped):
        t0 = time.monotonic()
        assert clock.sleep(5) is False
        assert time.monotonic() - t0 < 1
    with sleeping_on(running):
        assert clock.sleep(0.01) is True


def test_a_child_stop_is_stopped_by_its_parent_not_by_a_sibling() -> None:
    parent = StopSignal()
    a, b = parent.child(), parent.child()
    a.stop("abort")
    assert a.is_set and not b.is_set and not parent.is_set
    parent.stop("SIGTERM")
    assert b.reason == "SIGTERM" and a.reason == "abort"
    assert parent.child().reason == "SIGTERM"  # a child made late is stopped at once


def test_failed_rows_exit_code_maps_only_the_code_of_failed_rows() -> None:
    assert (
        run_exit_code(stopped_by=None, aborted_code=None, rows_not_done=3, failed_rows_code=0) == 0
    )
    assert (
        run_exit_code(
            stopped_by=None, aborted_code=EXIT_ABORTED, rows_not_done=3, failed_rows_code=0
        )
        == EXIT_ABORTED
    )
    assert (
        run_exit_code(stopped_by="SIGINT", aborted_code=None, rows_not_done=3, failed_rows_code=0)
        == EXIT_INTERRUPTED
    )
    assert state_word(0, rows_not_done=2) == "failed" and state_word(0) == "ok"


def test_failed_rows_exit_code_is_0_or_1() -> None:
    from cleanup.errors import ConfigError

    with pytest.raises(ConfigError, match="failed_rows_exit_code must be at most 1"):
        RunConfig(input=Path("x.csv"), failed_rows_exit_code=3)


def test_job_files_on_one_portal_take_the_smallest_share() -> None:
    pacings = PortalPacings()
    url = "https://a.example/rest/1/one/"
    pacings.expect({"webhook": url, "share": 0.5})
    pacings.expect({"webhook": url})
    made = pacings.for_config(config(url))
    assert made is not None
    assert made.throttle.share == 0.5
    assert (made.throttle.rate, made.throttle.burst) == (1.0, 25)  # half of 2/s and 50
