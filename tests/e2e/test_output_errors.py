"""Issue 12 (Also): a full disk or a folder that cannot be written to is not an internal
error. The run stops with exit 5 and one line that says which file could not be written,
why, and that `--resume` continues; the report is left with whole lines only, and
`--resume` (or run-job's next run) then finishes every row.

Made real without a small volume: the run in a subprocess under RLIMIT_FSIZE (Python
ignores SIGXFSZ, so a write past the limit fails with EFBIG, as a full disk fails with
ENOSPC), a report that is a link to /dev/full (ENOSPC), and a reports folder under /sys,
where nobody, not even root, may create a file.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from cleanup.exits import EXIT_OUTPUT
from cleanup.sandbox import PortalConfig, SandboxPortal
from tests.helpers.faults import args, assert_truthful, start, workload, write_input
from tests.helpers.jobs import ENV, Setup, likes
from tests.helpers.processes import read_any

RunCli = Callable[..., Result]


def run_limited(cli: Sequence[Any], cwd: Path, fsize: int) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess that may write no file beyond `fsize` bytes."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    env = {k: v for k, v in os.environ.items() if not k.startswith("B24_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "cleanup", *map(str, cli)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
    )


def assert_says_resume(stderr: str, path: Path, reason: str) -> None:
    lines = [line for line in stderr.splitlines() if line.startswith("reaction-cleanup: error:")]
    assert len(lines) == 1, stderr
    assert f"could not write {path}: {reason}" in lines[0], lines[0]
    assert "nothing is lost" in lines[0] and "with --resume to continue" in lines[0]
    assert "internal error" not in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_file_too_large_stops_with_exit_5_and_resume_finishes_every_row(
    run_cli: RunCli, tmp_path: Path, fmt: str
) -> None:
    rows, existing = workload(1200)
    portal = start(existing, PortalConfig(latency=0.005))
    path = write_input(tmp_path / "in.csv", rows)
    report = tmp_path / f"in.report.{fmt}"
    cli = ["run", path, *args(portal, tmp_path), "--report", report, "--batch-size", "10",
           "--progress", "none"]  # fmt: skip
    stopped = run_limited(cli, tmp_path, fsize=24_000)
    assert stopped.returncode == EXIT_OUTPUT == 5, stderr_of(stopped)
    # The report or its journal met the limit first: either way the line names it.
    journal = tmp_path / ".reaction-cleanup" / f"{report.name}.journal"
    which = journal if f"could not write {journal}" in stopped.stderr else report
    assert_says_resume(stopped.stderr, which, "File too large (EFBIG)")
    # Whole lines only: no line cut in half for a reader (or the next append) to meet.
    data = report.read_bytes()
    assert data.endswith(b"\n") and len(data) <= 24_000
    sent_before = portal.stats.requests
    assert 0 < sent_before < 120  # it stopped early, not at the end

    result = run_cli(*cli, "--resume")
    portal.stop()
    assert result.exit_code == 1, result.stderr  # every tenth reaction was never set
    assert_truthful(read_any(report), rows, existing, portal, exact_attempts=False)


def stderr_of(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stderr[-3000:]


@pytest.mark.skipif(not os.access("/dev/full", os.W_OK), reason="needs /dev/full")
def test_a_full_disk_under_the_report_exits_5_naming_it(run_cli: RunCli, tmp_path: Path) -> None:
    rows, existing = workload(200)
    portal = start(existing)
    path = write_input(tmp_path / "in.csv", rows)
    report = tmp_path / "r.csv"
    report.symlink_to("/dev/full")  # every write to the report: ENOSPC
    cli = ["run", path, *args(portal, tmp_path), "--report", report, "--batch-size", "10"]
    result = run_cli(*cli)
    assert result.exit_code == 5, result.stderr
    assert_says_resume(result.stderr, report, "No space left on device (ENOSPC)")
    assert "Once there is room, run the same command with --resume" in result.stderr

    report.unlink()  # room made: the report can be written again
    resumed = run_cli(*cli, "--resume")
    portal.stop()
    assert resumed.exit_code == 1, resumed.stderr
    assert_truthful(read_any(report), rows, existing, portal, exact_attempts=False)


def test_a_reports_folder_nobody_may_write_to_exits_5(run_cli: RunCli, tmp_path: Path) -> None:
    # /sys refuses new files to everyone, root included (chmod would not stop root).
    portal = start([(456, 1001, "like")])
    path = write_input(tmp_path / "in.csv", [(456, 1001, "like")])
    result = run_cli("run", path, *args(portal, tmp_path), "--report", "/sys/r.csv")
    portal.stop()
    assert result.exit_code == 5, result.stderr
    lock = Path("/sys/.reaction-cleanup/r.csv.lock")
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"reaction-cleanup: error: could not write {lock}: "), line
    assert "Once the folder can be written to, run the same command with --resume" in line
    assert portal.stats.requests == 0  # nothing was sent without a lock and a journal


def test_run_job_on_a_full_disk_exits_5_and_its_next_run_finishes(
    portal_factory: Callable[..., SandboxPortal], tmp_path: Path
) -> None:
    s = Setup(tmp_path, portal_factory(likes(600)))
    s.drop("big.csv", likes(600))
    cli = ["run-job", s.job, "--batch-size", "10"]
    env = {**os.environ, **s.env}

    def run_job(fsize: int | None) -> subprocess.CompletedProcess[str]:
        def limit() -> None:
            if fsize is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

        return subprocess.run(
            [sys.executable, "-m", "cleanup", *map(str, cli)], cwd=tmp_path, env=env,
            capture_output=True, text=True, timeout=120, preexec_fn=limit,
        )  # fmt: skip

    stopped = run_job(12_000)
    assert stopped.returncode == 5, stderr_of(stopped)
    assert "could not write" in stopped.stderr and "--resume" in stopped.stderr
    assert "internal error" not in stopped.stderr
    assert "status=unwritable exit=5" in stopped.stderr.strip().splitlines()[-1]
    assert (s.inbox / "big.csv").exists()  # not archived: its report is not complete
    assert s.portal.state.snapshot()  # stopped early

    finished = run_job(None)
    assert finished.returncode == 0, stderr_of(finished)
    assert "(resumed)" in finished.stderr
    assert s.portal.state.snapshot() == set()
    assert (s.archive / "big.csv").exists()
    [report] = s.reports_of()
    assert [int(r["row"]) for r in read_any(report)] == list(range(1, 601))
    assert {r["status"] for r in read_any(report)} == {"removed"}
    assert ENV in env  # the webhook came from the job file's variable
