"""Issue 6, crashes and resume: `python -m cleanup run` in a subprocess against the sandbox
in this process, killed with SIGKILL at several points (or stopped by SIGTERM/SIGINT, or
aborted by the portal), then `--resume`; the final report is checked row by row against the
sandbox's final state: exactly one line per input row, in order, each truthful, attempts
true. A report of another input is refused.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from cleanup.run.actions import ALREADY_ABSENT_EARLIER_RUN
from cleanup.sandbox import PortalConfig, PortalState
from tests.helpers.faults import (
    BreakingPortal,
    CountingPortal,
    Key,
    args,
    assert_truthful,
    left,
    start,
    workload,
    write_input,
)
from tests.helpers.processes import DEADLINE, kill9, read_any, spawn, wait_until

RunCli = Callable[..., Result]


# ----------------------------------------------------------------------------- helpers


def partial_lines(report: Path) -> int:
    """Lines the running job has flushed (a Parquet report is written as JSONL until the end)."""
    target = (
        report.with_name(report.name + ".partial.jsonl") if report.suffix == ".parquet" else report
    )
    try:
        return target.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


# ----------------------------------------------------------------------------- kill -9


KILL_POINTS = [
    ("csv", "requests", 1),
    ("jsonl", "requests", 15),
    ("parquet", "requests", 60),
    ("csv", "lines", 300),
    ("parquet", "lines", 20),
]


@pytest.mark.parametrize(
    "fmt, when, at", KILL_POINTS, ids=[f"{f}-{w}-{n}" for f, w, n in KILL_POINTS]
)
@pytest.mark.slow
def test_kill9_then_resume(run_cli: RunCli, tmp_path: Path, fmt: str, when: str, at: int) -> None:
    n = 1200
    rows, existing = workload(n)
    # A few lost replies too, so some rows are in doubt when the kill comes.
    portal = start(existing, PortalConfig(latency=0.01, fault_rates={"lost_reply": 0.03}, seed=at))
    path = write_input(tmp_path / "in.csv", rows)
    report = tmp_path / f"in.report.{fmt}"
    cli = ["run", path, *args(portal, tmp_path), "--report", report, "--batch-size", "10",
           "--concurrency", "4"]  # fmt: skip
    proc = spawn(cli, tmp_path)
    if when == "requests":
        wait_until(lambda: portal.stats.requests >= at, proc)
    else:
        wait_until(lambda: partial_lines(report) >= at, proc)
    kill9(proc)
    time.sleep(0.05)  # let the portal finish what the dead client had sent
    wait_until(lambda: portal.stats.in_flight == 0)
    before = Counter(portal.carried)
    requests_before = portal.stats.requests

    result = run_cli(*cli, "--resume")
    portal.stop()

    assert result.exit_code == 1, result.stderr  # the never-set reactions fail
    final = read_any(report)
    assert_truthful(final, rows, existing, portal, exact_attempts=False)
    for line, key in zip(final, rows, strict=True):
        if line["error_description"] == ALREADY_ABSENT_EARLIER_RUN:
            # Only rows the killed run had sent, or had journaled when the kill came just
            # before the request left (then counted once more than the portal saw).
            sent_before = before[key] >= 1
            assert sent_before or int(line["attempts"]) == portal.carried[key] + 1, line
    assert not report.with_name(report.name + ".partial.jsonl").exists()
    # The journal that made this possible is out of sight, in the state folder (issue 12).
    assert (tmp_path / ".reaction-cleanup" / f"{report.name}.journal").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.suffix in (".journal", ".lock")]
    if when == "lines":
        assert "kept from the earlier run" in result.stderr
    absent = sum(r["error_description"] == ALREADY_ABSENT_EARLIER_RUN for r in final)
    print(
        f"\nFIGURES kill -9 ({fmt}, after {at} {when}): rows {n}; killed run: "
        f"{requests_before} requests, {sum(1 for k in rows if before[k])} rows sent; resumed "
        f"run: {portal.stats.requests - requests_before} requests; 'already absent (earlier "
        f"run)' {absent}; report lines {len(final)}, rows lost: {n - len(final)}"
    )


def test_kill9_with_a_request_in_flight_then_resume(run_cli: RunCli, tmp_path: Path) -> None:
    # The first batch (rows 1-10) is slow: the client dies while it is in flight and the
    # portal acts on it afterwards. On resume those rows answer REACTION_NOT_FOUND and
    # are reported removed, "already absent on retry", as the journal says they were sent.
    # Rows 4 and 14 name reactions that never existed: row 4 was in that batch, so it is
    # indistinguishable from a removed one; row 14 was never sent before, so it stays failed.
    rows, existing = workload(30)
    portal = start(existing, PortalConfig(slow_seconds=1.0))
    portal.inject("slow")
    path = write_input(tmp_path / "in.csv", rows)
    cli = ["run", path, *args(portal, tmp_path), "--batch-size", "10", "--concurrency", "1"]
    proc = spawn(cli, tmp_path)
    wait_until(lambda: portal.stats.faults["slow"] == 1, proc)
    kill9(proc)
    wait_until(lambda: portal.stats.in_flight == 0)  # the portal acted after the client died
    assert not left(portal) & set(rows[:10])

    result = run_cli(*cli, "--resume")
    portal.stop()
    assert result.exit_code == 1, result.stderr
    final = read_any(tmp_path / "in.report.csv")
    assert_truthful(final, rows, existing, portal)
    assert [(r["status"], r["error_description"], r["attempts"]) for r in final[:10]] == [
        ("removed", ALREADY_ABSENT_EARLIER_RUN, "2")
    ] * 10
    assert [(r["status"], r["error"], r["attempts"]) for r in final[10:]] == [
        ("failed", "REACTION_NOT_FOUND", "1") if i % 10 == 3 else ("removed", "", "1")
        for i in range(10, 30)
    ]


@pytest.mark.slow
def test_results_held_back_for_order_survive_a_kill(run_cli: RunCli, tmp_path: Path) -> None:
    # The report is written in input order: while the first request is slow, the batches
    # after it finish but wait. Their results are in the journal, so a resume neither
    # re-sends them nor turns a row that failed REACTION_NOT_FOUND into a guessed
    # "already absent". Only the batches whose answers the dead run had not recorded (the
    # slow one, and at most one or two caught in flight by the kill) are sent again.
    rows, existing = workload(200)
    portal = start(existing, PortalConfig(slow_seconds=1.5))
    portal.inject("slow")
    path = write_input(tmp_path / "in.csv", rows)
    cli = ["run", path, *args(portal, tmp_path), "--batch-size", "10", "--concurrency", "2"]
    proc = spawn(cli, tmp_path)
    wait_until(lambda: portal.stats.requests >= 12, proc)
    kill9(proc)
    wait_until(lambda: portal.stats.in_flight == 0)
    before = Counter(portal.carried)
    written = len(read_any(tmp_path / "in.report.csv"))
    assert written <= 10  # the rows after the slow batch were held back

    result = run_cli(*cli, "--resume")
    portal.stop()
    final = read_any(tmp_path / "in.report.csv")
    assert_truthful(final, rows, existing, portal, exact_attempts=False)
    resent = [i for i, k in enumerate(rows) if before[k] and portal.carried[k] > before[k]]
    assert 10 <= len(resent) <= 30 and len(resent) % 10 == 0, resent
    kept = [i for i, k in enumerate(rows) if before[k] and i not in resent]
    assert len(kept) >= 90
    for i in kept:
        assert final[i]["attempts"] == "1", final[i]
        if rows[i][2] == "fire":
            assert (final[i]["status"], final[i]["error"]) == ("failed", "REACTION_NOT_FOUND")
    assert f"kept from the earlier run: {len(kept)} rows" in result.stderr


# ----------------------------------------------------------------------------- signals


@pytest.mark.parametrize(
    "sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_signal_stops_cleanly_then_resume_completes(
    run_cli: RunCli, tmp_path: Path, sig: int, code: int
) -> None:
    rows, existing = workload(600)
    portal = start(existing, PortalConfig(latency=0.02))
    path = write_input(tmp_path / "in.csv", rows)
    cli = ["run", path, *args(portal, tmp_path), "--batch-size", "10", "--concurrency", "2"]
    proc = spawn(cli, tmp_path)
    wait_until(lambda: portal.stats.requests >= 6, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == code, err.decode()
    stderr = err.decode()
    name = signal.Signals(sig).name
    assert f"{name}: finishing requests in flight" in stderr
    assert f"status=interrupted exit={code}" in stderr and "Traceback" not in stderr
    first = read_any(tmp_path / "in.report.csv")
    assert len(first) == 600  # every row has its line: done, or skipped
    statuses = Counter(r["status"] for r in first)
    assert statuses["skipped"] > 300 and statuses["removed"] > 0
    for line in first:
        if line["status"] == "skipped":
            assert line["error_description"].startswith("not sent: run stopped"), line
            assert line["attempts"] == "0"  # stopped rows never left: not attempts
    assert json.loads((tmp_path / "in.report.csv.summary.json").read_text())["interrupted"] == name

    result = run_cli(*cli, "--resume")
    portal.stop()
    assert result.exit_code == 1, result.stderr
    # No kill: nothing was in doubt, so attempts match the portal's count exactly.
    assert_truthful(read_any(tmp_path / "in.report.csv"), rows, existing, portal)
    assert max(portal.carried.values()) == 1


def test_second_signal_quits_at_once_then_resume_completes(run_cli: RunCli, tmp_path: Path) -> None:
    rows, existing = workload(300)
    # Slow answers: the first SIGTERM waits for them, the second one does not.
    portal = start(existing, PortalConfig(latency=1.0))
    path = write_input(tmp_path / "in.csv", rows)
    cli = ["run", path, *args(portal, tmp_path), "--batch-size", "10", "--concurrency", "2"]
    proc = spawn(cli, tmp_path)
    wait_until(lambda: portal.stats.in_flight >= 2, proc)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)  # two signals close together would reach the handler as one
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 143
    assert "quitting now; finish later with --resume" in err.decode()
    wait_until(lambda: portal.stats.in_flight == 0)

    portal.config.latency = 0.0
    result = run_cli(*cli, "--resume")
    portal.stop()
    assert result.exit_code == 1, result.stderr
    final = read_any(tmp_path / "in.report.csv")
    assert_truthful(final, rows, existing, portal)
    # The two batches in flight were acted on after the client left: already absent.
    assert Counter(r["error_description"] for r in final)[ALREADY_ABSENT_EARLIER_RUN] == 20


def test_requests_in_flight_past_the_stop_timeout(run_cli: RunCli, tmp_path: Path) -> None:
    rows, existing = workload(100)
    portal = start(existing, PortalConfig(latency=1.5))
    path = write_input(tmp_path / "in.csv", rows)
    cli = ["run", path, *args(portal, tmp_path), "--batch-size", "10", "--concurrency", "1",
           "--stop-timeout", "0.3"]  # fmt: skip
    proc = spawn(cli, tmp_path)
    wait_until(lambda: portal.stats.in_flight == 1, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 143, err.decode()
    first = read_any(tmp_path / "in.report.csv")
    assert [r["status"] for r in first] == ["skipped"] * 100
    assert all("its request was still in flight" in r["error_description"] for r in first[:10])
    wait_until(lambda: portal.stats.in_flight == 0)

    portal.config.latency = 0.0
    result = run_cli(*cli, "--resume")
    portal.stop()
    final = read_any(tmp_path / "in.report.csv")
    assert_truthful(final, rows, existing, portal)
    assert {r["error_description"] for r in final[:10]} == {ALREADY_ABSENT_EARLIER_RUN}
    assert result.exit_code == 1


# ----------------------------------------------------------------------------- abort


def test_abort_then_resume(run_cli: RunCli, tmp_path: Path) -> None:
    rows, existing = workload(200)
    portal = BreakingPortal(PortalState.build(existing), PortalConfig()).start()
    portal.break_at = 5
    path = write_input(tmp_path / "in.csv", rows)
    cli = ["run", path, *args(portal, tmp_path), "--batch-size", "10", "--concurrency", "1"]
    result = run_cli(*cli)
    assert result.exit_code == 3, result.stderr
    assert "NO_AUTH_FOUND" in result.stderr
    first = read_any(tmp_path / "in.report.csv")
    assert len(first) == 200
    assert [r["status"] for r in first[:40]] == [
        "failed" if i % 10 == 3 else "removed" for i in range(40)
    ]
    assert {r["status"] for r in first[40:]} == {"skipped"}
    assert {r["error_description"] for r in first[40:]} == {"not sent: run aborted (NO_AUTH_FOUND)"}
    assert {r["attempts"] for r in first[40:]} == {"0"}

    portal.break_at = None
    with portal.state.lock:
        portal.state.webhooks = {1: "sandbox-webhook-code"}
    result = run_cli(*cli, "--resume")
    portal.stop()
    assert result.exit_code == 1, result.stderr
    assert "kept from the earlier run: 40 rows" in result.stderr
    summary = json.loads((tmp_path / "in.report.csv.summary.json").read_text(encoding="utf-8"))
    assert summary["resumed_sent"] == 40  # this run's rows/s counts its own 160
    # Both figures are rounded to 3 decimals: their product is 160 to within a row or so.
    assert summary["rows_per_s"] * summary["elapsed_s"] == pytest.approx(160, rel=0.02), summary
    assert_truthful(read_any(tmp_path / "in.report.csv"), rows, existing, portal)
    assert max(portal.carried.values()) == 1


# ----------------------------------------------------------------------------- resume edge cases


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_resume_of_a_complete_report_sends_nothing(
    run_cli: RunCli, tmp_path: Path, fmt: str
) -> None:
    rows, existing = workload(120)
    portal = start(existing)
    path = write_input(tmp_path / "in.csv", rows)
    report = tmp_path / f"in.report.{fmt}"
    cli = ["run", path, *args(portal, tmp_path), "--report", report]
    assert run_cli(*cli).exit_code == 1
    done = read_any(report)
    requests = portal.stats.requests

    result = run_cli(*cli, "--resume")
    portal.stop()
    assert result.exit_code == 1, result.stderr
    assert portal.stats.requests == requests
    assert read_any(report) == done
    assert "kept from the earlier run: 120 rows" in result.stderr
    # QA round 2: rows/s counted the rows kept from the earlier run; this run sent none.
    assert "  0.0 rows/s;" in result.stderr, result.stderr


def test_resume_without_an_earlier_run_is_a_fresh_run(run_cli: RunCli, tmp_path: Path) -> None:
    rows, existing = workload(30)
    portal = start(existing)
    path = write_input(tmp_path / "in.csv", rows)
    result = run_cli("run", path, *args(portal, tmp_path), "--resume")
    portal.stop()
    assert result.exit_code == 1, result.stderr
    assert_truthful(read_any(tmp_path / "in.report.csv"), rows, existing, portal)


def _interrupted_run(
    run_cli: RunCli, tmp_path: Path, portal: CountingPortal, path: Path
) -> list[Any]:
    cli = [
        "run",
        path,
        *args(portal, tmp_path),
        "--report",
        tmp_path / "r.csv",
        "--batch-size",
        "10",
    ]
    portal.inject("reset")
    assert run_cli(*cli, "--max-retries", "0").exit_code == 1  # one batch gave up: to resume
    return cli


def test_resume_refuses_an_edited_input(run_cli: RunCli, tmp_path: Path) -> None:
    rows, existing = workload(50)
    portal = start(existing)
    path = write_input(tmp_path / "in.csv", rows)
    cli = _interrupted_run(run_cli, tmp_path, portal, path)
    before = (tmp_path / "r.csv").read_bytes()
    requests = portal.stats.requests
    write_input(path, [*rows[:20], (101, 99999, "like"), *rows[20:]])  # a row inserted

    result = run_cli(*cli, "--resume")
    portal.stop()
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"reaction-cleanup: error: cannot resume r.csv: {path} has changed since that run "
        "started. Resuming would mix two inputs' rows; give another --report, or run without "
        "--resume to start over"
    )
    assert portal.stats.requests == requests
    assert (tmp_path / "r.csv").read_bytes() == before


def test_resume_refuses_another_input(run_cli: RunCli, tmp_path: Path) -> None:
    rows, existing = workload(50)
    portal = start(existing)
    path = write_input(tmp_path / "in.csv", rows)
    cli = _interrupted_run(run_cli, tmp_path, portal, path)
    other = write_input(tmp_path / "other.csv", rows[:10])
    cli[1] = other

    result = run_cli(*cli, "--resume")
    portal.stop()
    assert result.exit_code == 2
    assert f"cannot resume r.csv: it was made from {path}, whose content differs" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_resume_accepts_a_renamed_copy_of_the_input(run_cli: RunCli, tmp_path: Path) -> None:
    # Identity is the content, not the name: a copy moved elsewhere resumes fine.
    rows, existing = workload(50)
    portal = start(existing)
    path = write_input(tmp_path / "in.csv", rows)
    cli = _interrupted_run(run_cli, tmp_path, portal, path)
    copy = tmp_path / "moved.csv"
    copy.write_bytes(path.read_bytes())
    path.unlink()
    cli[1] = copy
    result = run_cli(*cli, "--resume")
    portal.stop()
    assert result.exit_code == 1, result.stderr
    assert_truthful(read_any(tmp_path / "r.csv"), rows, existing, portal)


def test_resume_refuses_a_report_without_its_journal(run_cli: RunCli, tmp_path: Path) -> None:
    rows, existing = workload(50)
    portal = start(existing)
    path = write_input(tmp_path / "in.csv", rows)
    cli = _interrupted_run(run_cli, tmp_path, portal, path)
    (tmp_path / ".reaction-cleanup" / "r.csv.journal").unlink()
    result = run_cli(*cli, "--resume")
    portal.stop()
    assert result.exit_code == 2
    assert "has no journal (.reaction-cleanup/r.csv.journal)" in result.stderr
    assert "without --resume" in result.stderr


def test_resume_finds_a_journal_an_older_version_left_beside_the_report(
    run_cli: RunCli, tmp_path: Path
) -> None:
    # Versions before the state folder kept `R.journal` beside the report: a run they
    # stopped is resumed all the same, and its journal moves into the state folder.
    rows, existing = workload(50)
    portal = start(existing)
    path = write_input(tmp_path / "in.csv", rows)
    cli = _interrupted_run(run_cli, tmp_path, portal, path)
    journal = tmp_path / ".reaction-cleanup" / "r.csv.journal"
    journal.rename(tmp_path / "r.csv.journal")
    sent = portal.stats.requests
    result = run_cli(*cli, "--resume")
    portal.stop()
    assert result.exit_code == 1, result.stderr
    assert_truthful(read_any(tmp_path / "r.csv"), rows, existing, portal)
    assert portal.stats.requests - sent == 1  # only the batch that gave up is sent again
    assert journal.exists() and not (tmp_path / "r.csv.journal").exists()


def test_resume_after_a_report_line_cut_in_half(run_cli: RunCli, tmp_path: Path) -> None:
    # A crash mid-write leaves half a line (here: inside a quoted value that holds a line
    # break, so a naive "last newline" cut would keep half a record). Resume drops it and
    # still ends with exactly one whole line per row.
    rows: list[Key] = [(101, 1, "like"), (101, 2, "like"), (101, 3, "like")]
    portal = start(rows)
    path = tmp_path / "in.csv"
    path.write_text('botId,messageId,reaction,note\n101,1,like,\n101,2,"li\nke",x\n101,3,like,\n')
    cli = ["run", path, *args(portal, tmp_path), "--report", tmp_path / "r.csv"]
    assert run_cli(*cli).exit_code == 1
    data = (tmp_path / "r.csv").read_bytes()
    cut = data.index(b'"li\n') + 4  # the report line of row 2, cut after its line break
    (tmp_path / "r.csv").write_bytes(data[:cut])
    result = run_cli(*cli, "--resume")
    portal.stop()
    final = read_any(tmp_path / "r.csv")
    assert [(r["row"], r["reaction"], r["status"]) for r in final] == [
        ("1", "like", "removed"),
        ("2", "li\nke", "invalid"),
        ("3", "like", "removed"),
    ]
    assert result.exit_code == 1


def test_resume_after_a_kill_before_anything_was_written(run_cli: RunCli, tmp_path: Path) -> None:
    # Killed at start-up: an empty journal and a report cut inside its header line.
    rows, existing = workload(30)
    portal = start(existing)
    path = write_input(tmp_path / "in.csv", rows)
    (tmp_path / ".reaction-cleanup").mkdir()
    (tmp_path / ".reaction-cleanup" / "in.report.csv.journal").write_bytes(b"")
    (tmp_path / "in.report.csv").write_bytes(b"row,botId,mess")
    result = run_cli("run", path, *args(portal, tmp_path), "--resume")
    portal.stop()
    assert result.exit_code == 1, result.stderr
    assert (tmp_path / "in.report.csv").read_bytes().startswith(b"row,botId,messageId,")
    assert_truthful(read_any(tmp_path / "in.report.csv"), rows, existing, portal)


def test_resume_refuses_a_journal_without_its_header(run_cli: RunCli, tmp_path: Path) -> None:
    # Damage that hides which input the journal belongs to: refuse, never guess.
    rows, existing = workload(50)
    portal = start(existing)
    path = write_input(tmp_path / "in.csv", rows)
    cli = _interrupted_run(run_cli, tmp_path, portal, path)
    journal = tmp_path / ".reaction-cleanup" / "r.csv.journal"
    lines = journal.read_bytes().split(b"\n")
    journal.write_bytes(b"\n".join([b'{"version": 1, "sha2' + b"\x00" * 5, *lines[1:]]))
    result = run_cli(*cli, "--resume")
    portal.stop()
    assert result.exit_code == 2
    assert "its journal r.csv.journal is damaged" in result.stderr
