"""Issue 6, overlapping runs: a lock per report path (`.reaction-cleanup/REPORT.lock` beside it,
an flock) makes a second
run on the same report exit at once with code 4 and a clear message, while the first one
finishes undisturbed; a lock left by a killed process blocks nobody, because the kernel
releases an flock when its holder dies, whatever is left on disk.
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from cleanup.sandbox import PortalConfig
from tests.helpers.faults import args, assert_truthful, start, workload, write_input
from tests.helpers.processes import kill9, read_any, spawn, wait_until

RunCli = Callable[..., Result]


def test_second_run_on_the_same_report_exits_4_and_the_first_finishes(
    run_cli: RunCli, tmp_path: Path
) -> None:
    rows, existing = workload(300)
    portal = start(existing, PortalConfig(latency=0.03))
    path = write_input(tmp_path / "in.csv", rows)
    cli = ["run", path, *args(portal, tmp_path), "--batch-size", "10", "--concurrency", "1"]
    first = spawn(cli, tmp_path)
    wait_until(lambda: portal.stats.requests >= 2, first)

    for extra in ([], ["--resume"]):  # also a resume must not race the running job
        second = run_cli(*cli, *extra)
        assert second.exit_code == 4, second.stderr
        assert second.stderr.strip() == (
            f"reaction-cleanup: error: another reaction-cleanup run is working on "
            f"{tmp_path / 'in.report.csv'} (lock .reaction-cleanup/in.report.csv.lock); wait for it"
            " to finish"
        )
    assert first.poll() is None  # the second run left at once, while the first still ran

    _, err = first.communicate(timeout=60)
    portal.stop()
    assert first.returncode == 1, err.decode()  # its never-set reactions fail
    # The first run's report is whole and true: the second one touched nothing.
    assert_truthful(read_any(tmp_path / "in.report.csv"), rows, existing, portal)
    assert max(portal.carried.values()) == 1
    # Issue 12: the finished run leaves only what people read beside its report; its lock
    # and journal are out of sight in the state folder.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".reaction-cleanup", "bot_tokens.json", "in.csv", "in.report.csv",
        "in.report.csv.summary.json",
    ]  # fmt: skip
    assert sorted(p.name for p in (tmp_path / ".reaction-cleanup").iterdir()) == [
        "in.report.csv.journal", "in.report.csv.lock",
    ]  # fmt: skip


def test_runs_on_different_reports_do_not_block_each_other(run_cli: RunCli, tmp_path: Path) -> None:
    rows, existing = workload(200)
    portal = start(existing, PortalConfig(latency=0.03))
    first_input = write_input(tmp_path / "a.csv", rows[:100])
    second_input = write_input(tmp_path / "b.csv", rows[100:])
    first = spawn(["run", first_input, *args(portal, tmp_path), "--batch-size", "10",
                   "--concurrency", "1"], tmp_path)  # fmt: skip
    wait_until(lambda: portal.stats.requests >= 1, first)
    second = run_cli("run", second_input, *args(portal, tmp_path))
    first.communicate(timeout=60)
    portal.stop()
    assert second.exit_code == 1, second.stderr
    assert first.returncode == 1
    assert_truthful(read_any(tmp_path / "b.report.csv"), rows[100:], existing[100:], portal)


def test_lock_of_a_killed_run_does_not_block_the_next(run_cli: RunCli, tmp_path: Path) -> None:
    rows, existing = workload(300)
    portal = start(existing, PortalConfig(latency=0.02))
    path = write_input(tmp_path / "in.csv", rows)
    cli = ["run", path, *args(portal, tmp_path), "--batch-size", "10", "--concurrency", "1"]
    first = spawn(cli, tmp_path)
    wait_until(lambda: portal.stats.requests >= 3, first)
    kill9(first)
    lock = tmp_path / ".reaction-cleanup" / "in.report.csv.lock"
    assert lock.exists()  # left behind on disk, but nobody holds it

    result = run_cli(*cli, "--resume")
    portal.stop()
    assert result.exit_code == 1, result.stderr
    assert_truthful(
        read_any(tmp_path / "in.report.csv"), rows, existing, portal, exact_attempts=False
    )


HOLDER = textwrap.dedent(
    """
    import sys, time
    from filelock import FileLock
    lock = FileLock(sys.argv[1], timeout=0)  # kept referenced: collected, it would unlock
    lock.acquire()
    print("held", flush=True)
    time.sleep(600)
    """
)


def test_the_kernel_releases_a_dead_holders_lock(run_cli: RunCli, tmp_path: Path) -> None:
    # A process takes the lock the way the job does, and is killed with SIGKILL: no
    # cleanup runs. While it lives, runs exit 4; once it is dead, they go ahead.
    rows, existing = workload(20)
    portal = start(existing)
    path = write_input(tmp_path / "in.csv", rows)
    lock = tmp_path / ".reaction-cleanup" / "in.report.csv.lock"
    lock.parent.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    cli = ["run", path, *args(portal, tmp_path)]
    assert run_cli(*cli).exit_code == 4
    assert portal.stats.requests == 0

    # The lock is an flock on that file: taking it here fails too, for the same reason.
    with lock.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            raise AssertionError("the holder's lock was not an flock")
        except BlockingIOError:
            pass

    kill9(holder)  # type: ignore[arg-type]
    assert lock.exists()  # a stale file is left; what mattered was the kernel's lock
    with lock.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free now
        fcntl.flock(fh, fcntl.LOCK_UN)

    result = run_cli(*cli)
    portal.stop()
    assert result.exit_code == 1, result.stderr
    assert_truthful(read_any(tmp_path / "in.report.csv"), rows, existing, portal)


def test_a_leftover_lock_file_with_junk_does_not_block(run_cli: RunCli, tmp_path: Path) -> None:
    rows, existing = workload(20)
    portal = start(existing)
    path = write_input(tmp_path / "in.csv", rows)
    lock = tmp_path / ".reaction-cleanup" / "in.report.csv.lock"
    lock.parent.mkdir()
    lock.write_text("12345\nleft by a crashed run\n")
    result = run_cli("run", path, *args(portal, tmp_path))
    portal.stop()
    assert result.exit_code == 1, result.stderr
    assert_truthful(read_any(tmp_path / "in.report.csv"), rows, existing, portal)
