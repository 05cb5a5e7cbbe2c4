"""Issue 14: many portals in one `run-job`, the Indexed Job's `--index`, failed_rows_exit_code.

Every test drives the real CLI against sandbox portals over HTTP and asserts what an operator
sees: exit codes, the lines naming each job, the reports, and what each portal went through
(its request log: when requests came, whether any was refused).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from cleanup.sandbox import PortalConfig, SandboxPortal
from cleanup.sandbox.stats import RequestRecord
from tests.helpers.cli import read_report, write_rows
from tests.helpers.jobs import BOT, likes
from tests.helpers.portals import Portal, webhooks

DELETE = "imbot.v2.Chat.Message.Reaction.delete"
PortalFactory = Callable[..., SandboxPortal]
RunCli = Callable[..., Result]


def span(records: list[RequestRecord]) -> tuple[float, float]:
    return min(r.t_start for r in records), max(r.t_end for r in records)


# ------------------------------------------------------------- two portals at once


@pytest.mark.slow
def test_two_portals_run_at_once_each_within_its_limit(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    # Two strict portals, each paced a little inside its limit: 30 single calls take about
    # 3 s on each. Run one after the other they would not overlap; run together, they do.
    limit = PortalConfig(rate=10, burst=10, latency=0.02)
    a = Portal(tmp_path, portal_factory(likes(30), config=limit), "portal-a", rate=8, burst=4)
    b = Portal(tmp_path, portal_factory(likes(30), config=limit), "portal-b", rate=8, burst=4)
    for p in (a, b):
        p.drop(likes(30))
        (p.job).write_text(p.job.read_text() + 'mode = "single"\n')

    result = run_cli("run-job", a.job, b.job, env=webhooks(a, b))

    assert result.exit_code == 0, result.output
    for p in (a, b):
        assert p.portal.state.reactions == set(), p.name  # every row removed
        assert p.portal.stats.limit_refusals == 0, p.name  # each within its own limit
        assert len(p.deletes()) == 30
    (a0, a1), (b0, b1) = span(a.deletes()), span(b.deletes())
    overlap = min(a1, b1) - max(a0, b0)
    assert overlap > 0.5 * min(a1 - a0, b1 - b0), ((a0, a1), (b0, b1))
    # Each job's own SUMMARY line, then the worst of all.
    assert "SUMMARY job=portal-a " in result.stderr and "SUMMARY job=portal-b " in result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == "SUMMARY jobs=2 exit=0 portal-a=0 portal-b=0"


@pytest.mark.slow
def test_two_job_files_for_one_portal_share_its_bucket(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    # The portal drains 6 requests/s from a bucket of 6, and refuses past it. Each job file
    # is paced to 5/s (burst 3): one bucket for both stays inside the portal's limit, two
    # separate buckets would send 10/s.
    portal = portal_factory(likes(24), config=PortalConfig(rate=6, burst=6))
    a = Portal(tmp_path, portal, "first", rate=5, burst=3, mode="single")
    b = Portal(tmp_path, portal, "second", rate=5, burst=3, mode="single")
    a.drop(likes(12))
    b.drop(likes(12, first=1013))

    result = run_cli("run-job", a.job, b.job, env=webhooks(a, b))

    assert result.exit_code == 0, result.output
    assert portal.state.reactions == set()
    assert portal.stats.limit_refusals == 0
    assert len(a.deletes()) == 24  # the one portal's log: both job files' requests
    # Both job files were sending at the same time: their reports' runs overlap.
    (sa,), (sb,) = a.summaries(), b.summaries()
    assert sa["started_at"] < sb["started_at"] + sb["elapsed_s"]
    assert sb["started_at"] < sa["started_at"] + sa["elapsed_s"]


def test_one_portal_refusing_credentials_stops_only_its_job(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    good = Portal(tmp_path, portal_factory(likes(30)), "good")
    bad = Portal(tmp_path, portal_factory(likes(30)), "refused")
    good.drop(likes(30))
    bad_input = bad.drop(likes(30))

    result = run_cli("run-job", good.job, bad.job, env=webhooks(good, wrong=bad))

    assert result.exit_code == 3, result.output  # the worst: aborted
    assert good.portal.state.reactions == set()
    assert [r["status"] for r in read_report(good.reports()[0])] == ["removed"] * 30
    assert list((good.folder / "archive").iterdir())  # complete, archived
    assert bad_input.exists()  # left for the next run to resume
    assert len(bad.portal.state.reactions) == 30
    lines = result.stderr.splitlines()
    assert any(line.startswith("SUMMARY job=refused ") and "exit=3" in line for line in lines)
    assert any(line.startswith("SUMMARY job=good ") and "exit=0" in line for line in lines)
    assert lines[-1] == "SUMMARY jobs=2 exit=3 good=0 refused=3"


def test_every_json_log_line_names_its_job(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    a = Portal(tmp_path, portal_factory(likes(5)), "alpha", progress="log")
    b = Portal(tmp_path, portal_factory(likes(5)), "beta", progress="log")
    for p in (a, b):
        p.drop(likes(5))

    result = run_cli("run-job", tmp_path, "--log-format", "json", env=webhooks(a, b))

    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stderr.splitlines()]
    per_job = [e for e in events if e.get("event") != "jobs_summary"]
    assert per_job and all(e.get("job") in ("alpha", "beta") for e in per_job), per_job
    files = {e["job"]: e for e in events if e.get("event") == "file"}
    assert set(files) == {"alpha", "beta"}
    assert events[-1]["event"] == "jobs_summary"
    assert events[-1]["jobs"] == {"alpha": 0, "beta": 0}


def test_a_bad_job_file_is_reported_and_the_others_run(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    good = Portal(tmp_path, portal_factory(likes(3)), "good")
    good.drop(likes(3))
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "broken"\nbatch_size = 99\n')

    result = run_cli("run-job", good.job, broken, env=webhooks(good))

    assert result.exit_code == 2, result.output
    assert good.portal.state.reactions == set()
    assert "reaction-cleanup: error: broken: job file" in result.stderr
    assert "batch_size must be at most 50" in result.stderr


def test_check_job_takes_several_job_files(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    good = Portal(tmp_path, portal_factory(likes(1)), "good")
    bad = Portal(tmp_path, portal_factory(likes(1)), "refused")

    result = run_cli("check-job", good.job, bad.job, env=webhooks(good, wrong=bad))

    assert result.exit_code == 3, result.output
    assert "job 'good' is ready to run" in result.stdout
    assert "refused.toml: " in result.stderr and "NO_AUTH_FOUND" in result.stderr
    assert run_cli("check-job", good.job, env=webhooks(good)).exit_code == 0


# ------------------------------------------------------------------ --index


def configmap_folder(root: Path, jobs: dict[str, str]) -> Path:
    """A folder laid out as Kubernetes mounts a ConfigMap: the keys are symlinks into
    `..data`, itself a link to a timestamped folder."""
    folder = root / "portals"
    stamped = folder / "..2026_01_01_00_00_00.000000001"
    stamped.mkdir(parents=True)
    for name, text in jobs.items():
        (stamped / name).write_text(text)
    (folder / "..data").symlink_to(stamped.name)
    for name in jobs:
        (folder / name).symlink_to(f"..data/{name}")
    (folder / ".hidden.toml").write_text("not a job file")
    return folder


def test_index_runs_the_nth_job_file_of_the_folder(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    a = Portal(tmp_path, portal_factory(likes(4)), "portal-a")
    b = Portal(tmp_path, portal_factory(likes(4)), "portal-b")
    for p in (a, b):
        p.drop(likes(4))
    folder = configmap_folder(tmp_path, {p.job.name: p.job.read_text() for p in (b, a)})

    result = run_cli("run-job", "--index", "1", folder, env=webhooks(a, b))

    assert result.exit_code == 0, result.output
    assert b.portal.state.reactions == set()  # index 1: portal-b.toml, sorted by name
    assert len(a.portal.state.reactions) == 4 and a.deletes() == []
    assert "SUMMARY job=portal-b " in result.stderr and "portal-a" not in result.stderr

    past = run_cli("run-job", "--index", "2", folder, env=webhooks(a, b))
    assert past.exit_code == 2
    assert f"--index 2: {folder} has 2 job file(s), so the index must be 0 to 1" in past.stderr


# ------------------------------------------------------------ failed_rows_exit_code


def test_failed_rows_exit_code_0_maps_row_failures_only(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    # Rows 4 and 5 name reactions the portal does not have: they fail (REACTION_NOT_FOUND).
    p = Portal(tmp_path, portal_factory(likes(3)), "mapped", failed_rows_exit_code=0)
    p.drop(likes(5))

    result = run_cli("run-job", p.job, env=webhooks(p))

    assert result.exit_code == 0, result.output
    assert "status=failed exit=0" in result.stderr  # the word still tells failed rows
    (summary,) = p.summaries()
    assert summary["by_status"]["failed"] == 2 and summary["exit_code"] == 0
    # An abort is never hidden by it.
    p.drop(likes(2, first=2001), "more.csv")
    aborted = run_cli("run-job", p.job, env=webhooks(wrong=p))
    assert aborted.exit_code == 3, aborted.output


def test_run_takes_failed_rows_exit_code_too(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    from tests.helpers.cli import portal_args

    portal = portal_factory(likes(1))
    rows = write_rows(tmp_path / "rows.csv", likes(2))
    args = portal_args(portal, tmp_path)
    assert run_cli("run", rows, *args).exit_code == 1
    portal.state.reactions.add((1001, BOT, "like"))
    again = run_cli(
        "run", rows, *args, "--failed-rows-exit-code", "0", "--report", tmp_path / "r2.csv"
    )
    assert again.exit_code == 0, again.output
    assert "status=failed exit=0" in again.stderr


def test_folder_of_job_files_skips_hidden_entries(tmp_path: Path) -> None:
    from cleanup.jobs.many import job_files_in

    folder = configmap_folder(tmp_path, {"b.toml": "", "a.toml": "", "notes.txt": ""})
    assert [p.name for p in job_files_in([folder])] == ["a.toml", "b.toml"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="holds no job file"):
        job_files_in([tmp_path / "empty"])
