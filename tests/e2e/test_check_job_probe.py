"""check-job's question to the portal: asked again after a limit refusal under the project's
retry policy, waiting on the injectable clock (no real sleep here)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cleanup.errors import FatalAPIError
from cleanup.jobs.credentials import resolve_run_options
from cleanup.jobs.probe import PROBE_RETRY, check_job_file
from cleanup.jobs.schema import JobFile, load_job_file
from cleanup.sandbox import PortalConfig, SandboxPortal
from tests.helpers.cli import bot_tokens_file
from tests.helpers.clock import FakeClock

LIMITED = (503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
ENV = "B24_PROBE_TEST_WEBHOOK"


def _job(tmp_path: Path, portal: SandboxPortal) -> tuple[JobFile, dict[str, object]]:
    (tmp_path / "inbox").mkdir()
    tokens = bot_tokens_file(tmp_path, portal)
    (tmp_path / "job.toml").write_text(
        f'webhook_env = "{ENV}"\nbot_tokens_file = "{tokens.name}"\n'
        'inbox = "inbox"\nreports = "reports"\nrate = 1000\nburst = 1000\n'
    )
    job = load_job_file(tmp_path / "job.toml")
    return job, resolve_run_options(job, environ={ENV: portal.webhook_url()})


def test_a_limit_refusal_is_asked_again_after_the_policys_wait(
    portal_factory: Callable[..., SandboxPortal], tmp_path: Path
) -> None:
    portal = portal_factory(config=PortalConfig(force_error=LIMITED))
    job, base = _job(tmp_path, portal)

    def lift_after_first_wait() -> None:
        portal.config.force_error = None

    clock = FakeClock(on_sleep=lift_after_first_wait)
    result = check_job_file(job, base, clock=clock)
    assert any("webhook credentials accepted" in line for line in result.lines)
    assert clock.sleeps == [PROBE_RETRY.limit_wait(1, None)]
    assert [r.path_method for r in portal.stats.log][:2] == ["profile", "profile"]


def test_a_portal_that_keeps_refusing_fails_the_check_after_the_retries(
    portal_factory: Callable[..., SandboxPortal], tmp_path: Path
) -> None:
    portal = portal_factory(config=PortalConfig(force_error=LIMITED))
    job, base = _job(tmp_path, portal)
    clock = FakeClock()
    with pytest.raises(FatalAPIError, match="QUERY_LIMIT_EXCEEDED"):
        check_job_file(job, base, clock=clock)
    assert len(clock.sleeps) == PROBE_RETRY.max_retries
    assert all(0 < s <= 10 for s in clock.sleeps)
    assert sum(r.path_method == "profile" for r in portal.stats.log) == 1 + PROBE_RETRY.max_retries
