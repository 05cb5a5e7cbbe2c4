"""Issue 17, a bad night: an outage waited out (refused and dropped connections, through a
local TCP relay the test closes and reopens), retries per row under faults, the `absent`
status, and run-job's retry runs of transient failures. Against the sandbox over real HTTP;
outages here last a few seconds (the 60 s figure is tests/benchmarks/bad_night.py's).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from cleanup.run.actions import NOT_THERE
from cleanup.sandbox import PortalConfig, SandboxPortal
from tests.helpers.cli import bot_tokens_file, read_report, write_rows
from tests.helpers.jobs import BOT, Setup, likes
from tests.helpers.relay import Relay

RunCli = Callable[..., Result]
PortalFactory = Callable[..., SandboxPortal]
FAST = ("--rate", "1000", "--burst", "1000", "--progress", "none")


def left(portal: SandboxPortal) -> set[tuple[int, int, str]]:
    return {(b, m, r) for m, b, r in portal.state.snapshot()}


def summary_of(report: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(report.with_name(report.name + ".summary.json").read_text())
    return data


@pytest.fixture
def relay_for() -> Iterator[Callable[[SandboxPortal], Relay]]:
    made: list[Relay] = []

    def make(portal: SandboxPortal) -> Relay:
        relay = Relay(portal.port)
        made.append(relay)
        return relay

    yield make
    for relay in made:
        relay.close()


def outage_after(
    portal: SandboxPortal,
    removed: int,
    start: Callable[[], None],
    end: Callable[[], None] | None,
    seconds: float,
) -> threading.Thread:
    """Start an outage once the portal removed `removed` reactions; end it `seconds` later."""

    def run() -> None:
        deadline = time.monotonic() + 30
        while portal.stats.removed < removed and time.monotonic() < deadline:
            time.sleep(0.01)
        start()
        if end is not None:
            time.sleep(seconds)
            end()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def relay_args(portal: SandboxPortal, relay: Relay, folder: Path, *extra: str) -> list[str]:
    return [
        "--webhook",
        relay.url(portal.webhook_url()),
        "--bot-tokens",
        str(bot_tokens_file(folder, portal)),
        "--progress",
        "none",
        *extra,
    ]


# ---------------------------------------------------------------------- outages


@pytest.mark.parametrize("way", ["refuse", "drop"])
def test_an_outage_mid_run_is_waited_out_and_every_row_removed(
    portal_factory: PortalFactory,
    relay_for: Callable[[SandboxPortal], Relay],
    run_cli: RunCli,
    tmp_path: Path,
    way: str,
) -> None:
    portal = portal_factory(likes(60))
    relay = relay_for(portal)
    path = write_rows(tmp_path / "in.csv", likes(60))
    going = outage_after(portal, 10, getattr(relay, way), relay.restore, 2.5)
    # --max-retries 1: the outage must not spend the rows' budgets.
    pace = ("--rate", "10", "--burst", "2", "--batch-size", "2", "--max-retries", "1")
    result = run_cli("run", path, *relay_args(portal, relay, tmp_path, *pace, "--max-wait", "30"))
    going.join()
    assert result.exit_code == 0, result.stderr
    report = tmp_path / "in.report.csv"
    assert {r["status"] for r in read_report(report)} == {"removed"}
    assert left(portal) == set()
    assert "the portal is not answering" in result.stderr
    assert "the portal answers again after" in result.stderr
    summary = summary_of(report)
    assert 1.5 <= summary["outage_s"] <= 15, summary["outage_s"]
    assert "was away for" in result.stderr and "waited out (--max-wait)" in result.stderr
    if way == "drop":
        assert relay.dropped >= 1


def test_an_outage_longer_than_max_wait_aborts_and_resume_finishes(
    portal_factory: PortalFactory,
    relay_for: Callable[[SandboxPortal], Relay],
    run_cli: RunCli,
    tmp_path: Path,
) -> None:
    portal = portal_factory(likes(40))
    relay = relay_for(portal)
    path = write_rows(tmp_path / "in.csv", likes(40))
    going = outage_after(portal, 6, relay.drop, None, 0)
    pace = ("--rate", "10", "--burst", "2", "--batch-size", "2", "--max-wait", "2")
    result = run_cli("run", path, *relay_args(portal, relay, tmp_path, *pace))
    going.join()
    assert result.exit_code == 3, result.stderr
    assert "PORTAL_UNREACHABLE" in result.stderr
    # QA round 2: the summary said "waited out" of an outage that ended the run.
    assert "not back after --max-wait, so the run aborted" in result.stderr, result.stderr
    assert "waited out" not in result.stderr
    report = tmp_path / "in.report.csv"
    statuses = [r["status"] for r in read_report(report)]
    assert "failed" not in statuses and "skipped" in statuses, statuses
    relay.restore()
    again = run_cli("run", path, *relay_args(portal, relay, tmp_path, *pace, "--resume"))
    assert again.exit_code == 0, again.stderr
    assert {r["status"] for r in read_report(report)} == {"removed"}
    assert left(portal) == set()


@pytest.mark.parametrize("way", ["refuse", "drop"])
def test_a_time_bound_during_an_outage_hold_pauses_the_run_cleanly(
    portal_factory: PortalFactory,
    relay_for: Callable[[SandboxPortal], Relay],
    run_cli: RunCli,
    tmp_path: Path,
    way: str,
) -> None:
    # Issue 18's --max-duration fires while issue 17's hold waits out the portal (for up to
    # --max-wait 60): the hold ends at once, the run is paused (exit 75, not 3), the rows not
    # reached are skipped with the time-up words, none failed; --resume finishes the rest.
    portal = portal_factory(likes(40))
    relay = relay_for(portal)
    path = write_rows(tmp_path / "in.csv", likes(40))
    going = outage_after(portal, 6, getattr(relay, way), None, 0)
    pace = ("--rate", "10", "--burst", "2", "--batch-size", "2", "--max-wait", "60")
    result = run_cli(
        "run", path, *relay_args(portal, relay, tmp_path, *pace, "--max-duration", "3s")
    )
    going.join()
    assert result.exit_code == 75, result.stderr
    assert "the portal is not answering" in result.stderr
    assert "PORTAL_UNREACHABLE" not in result.stderr
    report_path = tmp_path / "in.report.csv"
    report = read_report(report_path)
    now = left(portal)
    statuses = {r["status"] for r in report}
    assert statuses == {"removed", "skipped"}, statuses  # nothing failed, nothing lost
    for line, key in zip(report, likes(40), strict=True):
        if line["status"] == "removed":
            assert key not in now, line
        else:
            assert key in now, line  # the relay passed nothing on: nothing of it ran
            assert "time is up: --max-duration 3s" in line["error_description"], line
    summary = summary_of(report_path)
    assert summary["exit_code"] == 75 and summary["paused"] == "--max-duration 3s"
    relay.restore()
    again = run_cli("run", path, *relay_args(portal, relay, tmp_path, *pace, "--resume"))
    assert again.exit_code == 0, again.stderr
    assert {r["status"] for r in read_report(report_path)} == {"removed"}
    assert left(portal) == set()


# ---------------------------------------------------------------------- a budget per row


def _faulty_single(portal_factory: PortalFactory, n: int, seed: int) -> SandboxPortal:
    config = PortalConfig(
        batch_not_allowed="call", fault_rates={"lost_reply": 0.08, "reset": 0.08}, seed=seed
    )
    return portal_factory(likes(n), config=config)


def _true_and_within_budget(report: list[dict[str, str]], retries: int) -> None:
    for line in report:
        if line["status"] == "failed":
            # Never before its own --max-retries re-sends.
            assert int(line["attempts"]) >= retries + 1, line
            assert "gave up after" in line["error_description"], line


def test_single_calls_under_faults_spend_each_rows_own_budget(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = _faulty_single(portal_factory, 150, seed=17)
    path = write_rows(tmp_path / "in.csv", likes(150))
    tokens = bot_tokens_file(tmp_path, portal)
    common = ("--webhook", portal.webhook_url(), "--bot-tokens", tokens, *FAST)
    result = run_cli("run", path, *common, "--max-retries", "2")
    report = read_report(tmp_path / "in.report.csv")
    _true_and_within_budget(report, 2)
    gone = {(BOT, int(r["messageId"]), "like") for r in report if r["status"] == "removed"}
    assert gone == set(likes(150)) - left(portal)  # every line true
    assert sum(portal.stats.faults.values()) >= 10  # the faults did happen
    assert result.exit_code in (0, 1)
    # The undo, under the same faults: what is restored is there again.
    undo = run_cli("undo", tmp_path / "in.report.csv", *common, "--max-retries", "2", "--yes")
    undo_report = read_report(tmp_path / "in.report.undo.csv")
    _true_and_within_budget(undo_report, 2)
    back = {(BOT, int(r["messageId"]), "like") for r in undo_report if r["status"] == "restored"}
    assert back <= left(portal) and len(back) == len(gone) - sum(
        r["status"] == "failed" for r in undo_report
    ), undo.stderr


# ---------------------------------------------------------------------- absent


def test_a_reaction_not_there_is_absent_exit_0_and_undo_sends_nothing(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory(likes(30))
    path = write_rows(tmp_path / "in.csv", likes(30))
    tokens = bot_tokens_file(tmp_path, portal)
    common = ("--webhook", portal.webhook_url(), "--bot-tokens", tokens, *FAST)
    first = run_cli("run", path, *common)
    assert first.exit_code == 0, first.stderr
    second_report = tmp_path / "again.report.csv"
    second = run_cli("run", path, *common, "--report", second_report)
    assert second.exit_code == 0, second.stderr
    lines = read_report(second_report)
    assert {(r["status"], r["error"], r["error_description"]) for r in lines} == {
        ("absent", "", NOT_THERE)
    }
    assert summary_of(second_report)["by_status"]["absent"] == 30
    assert "absent=30" in second.stderr
    page = second_report.with_suffix(".html")
    if page.exists():
        assert "not there: nothing to remove" in page.read_text()
    before = portal.stats.requests
    undo = run_cli("undo", second_report, *common, "--yes")
    assert undo.exit_code == 0, undo.stderr
    assert portal.stats.requests == before  # nothing to add back
    # --only absent chooses them; --absent-as-failed reads them as before: failed, exit 1.
    strict = tmp_path / "strict.report.csv"
    again = run_cli(
        "run", second_report, *common, "--only", "absent", "--absent-as-failed", "--report", strict
    )
    assert again.exit_code == 1, again.stderr
    assert {(r["status"], r["error"]) for r in read_report(strict)} == {
        ("failed", "REACTION_NOT_FOUND")
    }


def test_an_unknown_code_not_found_stays_failed(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory(likes(1))
    path = write_rows(tmp_path / "in.csv", [(BOT, 1001, "sparklesX")])
    tokens = bot_tokens_file(tmp_path, portal)
    result = run_cli(
        "run", path, "--webhook", portal.webhook_url(), "--bot-tokens", tokens, *FAST,
        "--allow-unknown-reactions",
    )  # fmt: skip
    assert result.exit_code == 1, result.stderr
    [line] = read_report(tmp_path / "in.report.csv")
    assert (line["status"], line["error"]) == ("failed", "REACTION_NOT_FOUND")


# ---------------------------------------------------------------------- retry runs


def _job(root: Path, portal: SandboxPortal, **keys: Any) -> Path:
    """The job folder of tests.helpers.jobs, named `night`, with a metrics file."""
    keys = {"metrics_file": "reports/night.prom", **keys}
    return Setup(root, portal, name="night", webhook_env="NIGHT_WEBHOOK", **keys).job


def test_run_job_retries_transient_failures_on_its_next_run(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory(likes(200), config=PortalConfig(fault_rates={"http500": 0.15}, seed=5))
    job = _job(tmp_path, portal, max_retries=0, batch_size=5)
    env = {"NIGHT_WEBHOOK": portal.webhook_url()}
    source = write_rows(tmp_path / "inbox" / "night.csv", likes(200))
    first = run_cli("run-job", job, env=env)
    assert first.exit_code == 1, first.stderr
    [report] = (tmp_path / "reports").glob("*.report.csv")
    lines = read_report(report)
    transient = [int(r["row"]) for r in lines if r["status"] == "failed"]
    assert transient and {r["error"] for r in lines if r["status"] == "failed"} == {
        "INTERNAL_SERVER_ERROR"
    }
    assert source.exists()  # stays in the inbox, waiting for a retry run
    assert "waits for a retry run" in first.stderr and "waiting_retry=1" in first.stderr
    state = json.loads((tmp_path / "reports" / "night.state.json").read_text())["files"]
    [entry] = state.values()
    assert (entry["status"], entry["retry_rows"]) == ("retry", len(transient))
    assert "waits for a retry run" in (tmp_path / "reports" / "index.html").read_text()
    assert (
        'reaction_cleanup_files_waiting_retry{job="night"} 1.0'
        in (tmp_path / "reports" / "night.prom").read_text()
    )
    assert summary_of(report)["waits_retry"] == len(transient)

    portal.config.fault_rates = {}
    executed = portal.stats.commands_executed
    second = run_cli("run-job", job, env=env)
    assert second.exit_code == 0, second.stderr
    assert portal.stats.commands_executed - executed == len(transient)  # only those rows
    assert not source.exists() and (tmp_path / "archive" / "night.csv").exists()
    final = read_report(report)
    assert [r["row"] for r in final] == [r["row"] for r in lines]  # row numbers kept
    assert {r["status"] for r in final} == {"removed"}
    assert left(portal) == set()
    assert (
        'reaction_cleanup_files_waiting_retry{job="night"} 0.0'
        in (tmp_path / "reports" / "night.prom").read_text()
    )


def test_run_job_archives_after_retry_runs_with_what_is_left(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory(likes(20), config=PortalConfig(fault_rates={"http500": 1.0}))
    job = _job(tmp_path, portal, max_retries=0, retry_runs=1)
    env = {"NIGHT_WEBHOOK": portal.webhook_url()}
    write_rows(tmp_path / "inbox" / "night.csv", [*likes(20), (BOT, 1001, "fire")])
    assert run_cli("run-job", job, env=env).exit_code == 1
    assert (tmp_path / "inbox" / "night.csv").exists()
    last = run_cli("run-job", job, env=env)
    assert last.exit_code == 1
    assert (tmp_path / "archive" / "night.csv").exists()
    assert "after 1 retry run(s); archiving it" in last.stderr
