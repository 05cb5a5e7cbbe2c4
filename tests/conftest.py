"""Shared fixtures: a sandbox portal over real HTTP on 127.0.0.1, and a way to run the CLI.

def test_x(portal_factory, run_cli, tmp_path):
    portal = portal_factory([(456, 789, "like")])            # (botId, messageId, reaction)
    csv_path = write_rows(tmp_path / "in.csv", [("456", "789", "like")])
    result = run_cli("run", csv_path, *portal_args(portal, tmp_path))
    assert result.exit_code == 0
    assert read_report(tmp_path / "in.report.csv")[0]["status"] == "removed"
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cleanup.cli import main
from cleanup.redact import REDACTOR
from cleanup.sandbox import PortalConfig, PortalState, SandboxPortal

os.environ.setdefault("HYPOTHESIS_PROFILE", "ci")
for _name in (
    "B24_WEBHOOK_URL",
    "B24_BOT_TOKENS_FILE",
    "B24_PORTAL",
    "B24_OAUTH_FILE",
    "B24_OAUTH_SERVER",
    "B24_CLIENT_ID",
    "B24_CLIENT_SECRET",
    "B24_ACCESS_TOKEN",
    "B24_REFRESH_TOKEN",
):
    os.environ.pop(_name, None)  # a developer's real credentials must never reach a test

try:
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])
except ImportError:  # pragma: no cover
    pass


@pytest.fixture(autouse=True)
def _fresh_redactor() -> Iterator[None]:
    REDACTOR.clear()
    yield
    REDACTOR.clear()


@pytest.fixture
def portal_factory() -> Iterator[Callable[..., SandboxPortal]]:
    """Start sandbox portals; all are stopped after the test."""
    started: list[SandboxPortal] = []

    def make(
        reactions: Iterable[tuple[int, int, str]] = (),
        config: PortalConfig | None = None,
        state: PortalState | None = None,
        **build: Any,
    ) -> SandboxPortal:
        portal = SandboxPortal(
            state or PortalState.build(list(reactions), **build), config or PortalConfig()
        )
        portal.start()
        started.append(portal)
        return portal

    yield make
    for portal in started:
        portal.stop()


@pytest.fixture
def run_cli() -> Callable[..., Result]:
    """Invoke the real CLI in-process; stderr is kept apart from stdout."""

    def invoke(*args: Any, env: dict[str, str] | None = None, input: str | None = None) -> Result:
        runner = CliRunner()
        return runner.invoke(
            main, [str(a) for a in args], env=env, input=input, catch_exceptions=False
        )

    return invoke
