"""Issue 12 §2: re-run what failed, from the report.

A report (.csv, .jsonl, .parquet) is an input to `run`; `--only STATUS,...` and
`--only-error CODE,...` (or `only`/`only_error` in a job file) choose its rows. Each test
runs the CLI against the sandbox over real HTTP and checks which rows reached the portal
(every request's rows are counted), the new report's lines and numbers, and exit codes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from cleanup.sandbox import PortalConfig, PortalState
from tests.helpers.faults import BreakingPortal, CountingPortal, Key
from tests.helpers.processes import read_any

BOT, OTHER = 456, 457  # OTHER has no token in the first run's tokens file
FAST = ("--rate", "1000", "--burst", "1000", "--progress", "none")
RunCli = Callable[..., Result]

# The first run's input, as a spreadsheet: blank rows, a duplicate, rows the portal
# refuses, rows whose bot has no token yet, and rows that are not valid at all.
LINES = [
    "botId;messageId;reaction",
    f"{BOT};101;like",  # 1 removed
    f"{BOT};102;fire",  # 2 failed: the portal has no such reaction
    "",  # 3 blank
    f"{OTHER};103;like",  # 4 invalid: NO_BOT_TOKEN
    f"{BOT};oops;like",  # 5 invalid: INVALID_MESSAGE_ID
    f"{BOT};101;like",  # 6 duplicate of row 1
    ";;",  # 7 blank
    f"{OTHER};104;like",  # 8 invalid: NO_BOT_TOKEN
    f"{BOT};105;fire",  # 9 failed
    ";106;like",  # 10 invalid: INVALID_BOT_ID (empty)
    f"{BOT};107;like",  # 11 removed
]
SET = [(BOT, 101, "like"), (OTHER, 103, "like"), (OTHER, 104, "like"), (BOT, 107, "like")]
SET += [(BOT, 102, "like"), (BOT, 105, "like")]  # messages exist; the "fire" rows are not set


def tokens(folder: Path, portal: CountingPortal, *, missing: Sequence[int] = ()) -> Path:
    path = folder / "bot_tokens.json"
    path.write_text(
        json.dumps({str(b.id): b.token for b in portal.state.bots.values() if b.id not in missing})
    )
    return path


def cli(
    portal: CountingPortal, folder: Path, *extra: Any, missing: Sequence[int] = ()
) -> list[Any]:
    token_file = tokens(folder, portal, missing=missing)
    return ["--webhook", portal.webhook_url(), "--bot-tokens", token_file, *FAST, *extra]


def first_run(run_cli: RunCli, tmp_path: Path, fmt: str = "csv") -> tuple[CountingPortal, Path]:
    """The first run: bot 457's token missing. Returns the portal and the report."""
    portal = CountingPortal(PortalState.build(SET), PortalConfig()).start()
    path = tmp_path / "in.csv"
    path.write_text("\n".join(LINES) + "\n")
    report = tmp_path / f"in.report.{fmt}"
    result = run_cli("run", path, *cli(portal, tmp_path, "--report", report, missing=[OTHER]))
    assert result.exit_code == 1, result.stderr
    lines = [(r["row"], r["status"], r["error"]) for r in read_any(report)]
    assert lines == [
        ("1", "removed", ""),
        ("2", "failed", "REACTION_NOT_FOUND"),
        ("4", "invalid", "NO_BOT_TOKEN"),
        ("5", "invalid", "INVALID_MESSAGE_ID"),
        ("6", "duplicate", ""),
        ("8", "invalid", "NO_BOT_TOKEN"),
        ("9", "failed", "REACTION_NOT_FOUND"),
        ("10", "invalid", "INVALID_BOT_ID"),
        ("11", "removed", ""),
    ]
    portal.carried.clear()
    return portal, report


def rows_of(report: Path) -> list[tuple[str, str, str, str]]:
    return [(r["row"], r["messageId"], r["status"], r["error"]) for r in read_any(report)]


def carried(portal: CountingPortal) -> set[Key]:
    return set(portal.carried)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_only_error_resends_just_those_rows_with_their_numbers(
    run_cli: RunCli, tmp_path: Path, fmt: str
) -> None:
    portal, report = first_run(run_cli, tmp_path, fmt)
    try:
        # Ops add the missing token, then send the rows that lacked it, and nothing else.
        result = run_cli("run", report, *cli(portal, tmp_path, "--only-error", "NO_BOT_TOKEN"))
    finally:
        portal.stop()
    assert result.exit_code == 0, result.stderr
    assert carried(portal) == {(OTHER, 103, "like"), (OTHER, 104, "like")}
    rerun = tmp_path / "in.report.report.csv"
    assert rows_of(rerun) == [("4", "103", "removed", ""), ("8", "104", "removed", "")]
    summary = json.loads((tmp_path / "in.report.report.csv.summary.json").read_text())
    assert summary["source_report"] == str(report)
    assert summary["left_out"] == 7 and summary["rows"] == 2
    assert summary["settings"]["only_error"] == ["NO_BOT_TOKEN"]
    assert f"re-run of {report}: 2 row(s) with error NO_BOT_TOKEN; 7 other row(s)" in result.stderr
    assert not portal.state.snapshot() - {(102, BOT, "like"), (105, BOT, "like")}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_report_without_a_choice_keeps_its_row_numbers(
    run_cli: RunCli, tmp_path: Path, fmt: str
) -> None:
    # Every row of the report again (the run's whole input, as the report lists it): each
    # line keeps the report's number, so it still points at the spreadsheet (rows 3 and 7
    # were blank there), and a duplicate names the original row.
    portal, report = first_run(run_cli, tmp_path, fmt)
    try:
        result = run_cli("run", report, *cli(portal, tmp_path))
    finally:
        portal.stop()
    assert result.exit_code == 1, result.stderr
    rerun = tmp_path / "in.report.report.csv"  # the input's name without .csv/.parquet
    lines = read_any(rerun)
    assert [r["row"] for r in lines] == ["1", "2", "4", "5", "6", "8", "9", "10", "11"]
    assert [(r["row"], r["status"]) for r in lines if r["messageId"] in ("103", "104")] == [
        ("4", "removed"), ("8", "removed"),
    ]  # fmt: skip
    assert [r["error_description"] for r in lines if r["row"] == "6"] == ["duplicate of row 1"]
    summary = json.loads((tmp_path / "in.report.report.csv.summary.json").read_text())
    assert summary["source_report"] == str(report) and summary["left_out"] == 0
    assert f"re-run of {report}: every row (9)" in result.stderr


def test_only_failed_sends_only_failed_rows(run_cli: RunCli, tmp_path: Path) -> None:
    portal, report = first_run(run_cli, tmp_path)
    try:
        result = run_cli("run", report, *cli(portal, tmp_path, "--only", "failed"))
    finally:
        portal.stop()
    assert result.exit_code == 1, result.stderr  # they fail again: the portal has not changed
    assert carried(portal) == {(BOT, 102, "fire"), (BOT, 105, "fire")}
    assert rows_of(tmp_path / "in.report.report.csv") == [
        ("2", "102", "failed", "REACTION_NOT_FOUND"),
        ("9", "105", "failed", "REACTION_NOT_FOUND"),
    ]


def test_only_invalid_keeps_numbers_of_rows_that_are_invalid_again(
    run_cli: RunCli, tmp_path: Path
) -> None:
    portal, report = first_run(run_cli, tmp_path)
    try:
        # Several statuses, repeated and comma-separated; case does not matter.
        extra = ("--only", "INVALID", "--only", "duplicate,invalid")
        result = run_cli("run", report, *cli(portal, tmp_path, *extra))
    finally:
        portal.stop()
    assert result.exit_code == 1, result.stderr
    assert rows_of(tmp_path / "in.report.report.csv") == [
        ("4", "103", "removed", ""),
        ("5", "oops", "invalid", "INVALID_MESSAGE_ID"),
        # The duplicate's first row is not in this run: it is sent, and was already gone.
        ("6", "101", "failed", "REACTION_NOT_FOUND"),
        ("8", "104", "removed", ""),
        ("10", "106", "invalid", "INVALID_BOT_ID"),
    ]
    assert carried(portal) == {(OTHER, 103, "like"), (OTHER, 104, "like"), (BOT, 101, "like")}


def test_only_and_only_error_must_both_match(run_cli: RunCli, tmp_path: Path) -> None:
    portal, report = first_run(run_cli, tmp_path)
    try:
        extra = ("--only", "invalid", "--only-error", "no_bot_token,INVALID_BOT_ID", "--dry-run")
        result = run_cli("run", report, *extra, "--progress", "none")
    finally:
        portal.stop()
    assert result.exit_code == 1, result.stderr  # the empty botId is invalid again
    assert "3 rows: 2 to send, 1 invalid" in result.stderr
    assert "row 10: botId" in result.stderr  # the dry run names the original row
    assert "3 row(s) with status invalid and error no_bot_token/INVALID_BOT_ID" in result.stderr


def test_duplicates_within_a_rerun_name_original_rows(run_cli: RunCli, tmp_path: Path) -> None:
    portal = CountingPortal(PortalState.build([(BOT, 1, "like")]), PortalConfig()).start()
    report = tmp_path / "old.report.csv"
    report.write_text(
        "row,botId,messageId,reaction,status,error,error_description,attempts\n"
        "3,456,1,like,skipped,,not sent: run stopped (SIGTERM),0\n"
        "17,456,1,like,skipped,,not sent: run stopped (SIGTERM),0\n"
        "40,456,2,like,removed,,,1\n"
    )
    try:
        result = run_cli("run", report, *cli(portal, tmp_path, "--only", "skipped"))
    finally:
        portal.stop()
    assert result.exit_code == 0, result.stderr
    lines = read_any(tmp_path / "old.report.report.csv")
    assert [(r["row"], r["status"], r["error_description"]) for r in lines] == [
        ("3", "removed", ""),
        ("17", "duplicate", "duplicate of row 3"),
    ]
    assert carried(portal) == {(BOT, 1, "like")}


# ----------------------------------------------------------------------------- refusals


def one_line_error(result: Result, *needles: str) -> None:
    assert result.exit_code == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unknown_status_is_refused(run_cli: RunCli, tmp_path: Path) -> None:
    path = tmp_path / "in.report.csv"
    path.write_text("row,botId,messageId,reaction,status,error\n1,456,1,like,failed,X\n")
    result = run_cli("run", path, "--only", "fialed", "--dry-run")
    one_line_error(result, "'fialed' is not a report status", "did you mean 'failed'", "skipped")


@pytest.mark.parametrize(
    "option, header, missing",
    [
        ("--only", "botId,messageId,reaction", "status"),
        ("--only-error", "botId,messageId,reaction,status", "error"),
    ],
)
def test_input_without_the_column_is_refused_naming_the_file(
    run_cli: RunCli, tmp_path: Path, option: str, header: str, missing: str
) -> None:
    path = tmp_path / "plain.csv"
    path.write_text(header + "\n456,1,like" + ",failed" * (header.count(",") - 2) + "\n")
    result = run_cli("run", path, option, "failed", "--dry-run")
    one_line_error(result, str(path), f"has no {missing} column", option)


def test_garbage_in_the_row_column_is_refused_naming_the_row(
    run_cli: RunCli, tmp_path: Path
) -> None:
    path = tmp_path / "edited.report.csv"
    path.write_text(
        "row,botId,messageId,reaction,status\n2,456,1,like,failed\nx,456,2,like,failed\n"
    )
    result = run_cli("run", path, "--only", "failed", "--dry-run")
    one_line_error(result, str(path), "row 2, column row", "'x' is not a row number")


def test_a_rerun_never_writes_over_its_input(run_cli: RunCli, tmp_path: Path) -> None:
    portal, report = first_run(run_cli, tmp_path)
    before = report.read_bytes()
    link = tmp_path / "link.csv"
    link.symlink_to(report)
    try:
        same = run_cli(
            "run", report, *cli(portal, tmp_path, "--only", "failed", "--report", report)
        )
        linked = run_cli(
            "run", report, *cli(portal, tmp_path, "--only", "failed", "--report", link)
        )
    finally:
        portal.stop()
    one_line_error(same, "would overwrite the input", str(report))
    one_line_error(linked, "would overwrite the input", str(link))
    assert report.read_bytes() == before
    assert not carried(portal)


# ----------------------------------------------------------------------------- resume


def test_resume_of_a_rerun_needs_the_same_choice(run_cli: RunCli, tmp_path: Path) -> None:
    n = 90
    lines = ["row,botId,messageId,reaction,status,error,error_description,attempts"]
    reactions = []
    for i in range(n):
        status = "failed" if i % 3 else "removed"
        lines.append(f"{5 * i + 2},{BOT},{1000 + i},like,{status},X,,1")
        if status == "failed":
            reactions.append((BOT, 1000 + i, "like"))
    report = tmp_path / "old.report.csv"
    report.write_text("\n".join(lines) + "\n")
    portal = BreakingPortal(PortalState.build(reactions), PortalConfig()).start()
    base = cli(portal, tmp_path, "--batch-size", "5", "--concurrency", "1")
    try:
        portal.break_at = 4
        first = run_cli("run", report, *base, "--only", "failed")
        assert first.exit_code == 3, first.stderr
        portal.break_at = None
        with portal.state.lock:
            portal.state.webhooks = {1: "sandbox-webhook-code"}
        other = run_cli("run", report, *base, "--only", "removed,FAILED", "--resume")
        plain = run_cli("run", report, *base, "--resume")
        second = run_cli("run", report, *base, "--only", " Failed ", "--resume")  # same choice
    finally:
        portal.stop()
    one_line_error(other, "with --only failed, this one with --only failed,removed")
    one_line_error(plain, "cannot resume", "no --only")
    assert second.exit_code == 0, second.stderr
    out = read_any(tmp_path / "old.report.report.csv")
    assert [r["row"] for r in out] == [str(5 * i + 2) for i in range(n) if i % 3]
    assert {r["status"] for r in out} == {"removed"}
    assert max(portal.carried.values()) == 1
    assert not portal.state.snapshot()


# ----------------------------------------------------------------------------- job file


def test_job_file_keys_choose_the_rows(run_cli: RunCli, tmp_path: Path) -> None:
    portal, report = first_run(run_cli, tmp_path)
    job = tmp_path / "rerun.toml"
    job.write_text(
        'name = "rerun"\n'
        'webhook_env = "B24_RERUN_TEST_WEBHOOK"\n'
        'bot_tokens_file = "bot_tokens.json"\n'
        f'input = "{report.name}"\n'
        'reports = "reports"\n'
        "min_age = 0\nrate = 1000\nburst = 1000\n"
        'progress = "none"\n'
        'only = ["invalid"]\n'
        'only_error = "NO_BOT_TOKEN"\n'
    )
    tokens(tmp_path, portal)  # the missing token is there now
    env = {"B24_RERUN_TEST_WEBHOOK": portal.webhook_url()}
    try:
        check = run_cli("check-job", job, env=env)
        result = run_cli("run-job", job, env=env)
    finally:
        portal.stop()
    assert check.exit_code == 0, check.stderr
    assert result.exit_code == 0, result.stderr
    (new,) = (tmp_path / "reports").glob("*.report.csv")
    assert rows_of(new) == [("4", "103", "removed", ""), ("8", "104", "removed", "")]
    assert carried(portal) == {(OTHER, 103, "like"), (OTHER, 104, "like")}


def test_job_file_with_an_unknown_status_is_refused(run_cli: RunCli, tmp_path: Path) -> None:
    job = tmp_path / "rerun.toml"
    job.write_text(
        'name = "rerun"\ninput = "x.report.csv"\nreports = "reports"\nonly = ["removed", "faild"]\n'
    )
    result = run_cli("check-job", job, "--dry-run")
    assert result.exit_code == 2
    assert "'faild' is not a report status" in result.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "rerun"\ninput = "x.report.csv"\nreports = "reports"\nonly = [1]\n')
    result = run_cli("check-job", bad, "--dry-run")
    assert result.exit_code == 2
    assert "only must be a list of text" in result.stderr
