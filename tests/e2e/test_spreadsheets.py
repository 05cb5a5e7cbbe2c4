"""Issue 19, part 2: the spreadsheets people really have, against the sandbox portal.

Reactions given as the emoji the portal shows and messages given as the link Bitrix24
copies, in CSV and XLSX; the dry run's report (`--dry-run --report`), the sheet fixed from
it and the run started from it with `--resume`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from click.testing import Result

from cleanup.sandbox import SandboxPortal
from tests.helpers.cli import portal_args, read_report, write_rows

BOT = 456
FAST = ("--rate", "1000", "--burst", "1000")
PortalFactory = Callable[..., SandboxPortal]
RunCli = Callable[..., Result]

ON_PORTAL = [
    (BOT, 1001, "like"),
    (BOT, 1002, "redHeart"),
    (BOT, 1003, "faceWithTearsOfJoy"),
    (BOT, 1004, "facepalm"),
    (BOT, 1005, "okHand"),
    (BOT, 1006, "fire"),
]
CHAT_LINK = "https://portal.example/online/?IM_DIALOG=chat5"
# As people paste them: emoji with a variation selector, a skin tone, a gendered ZWJ form;
# links from the address bar, the /im/ page, with a fragment, with other parameters.
SHEET: list[tuple[Any, Any, str]] = [
    (BOT, 1001, "\U0001f44d"),  # 👍
    (BOT, f"{CHAT_LINK}&IM_MESSAGE=1002", "\u2764\ufe0f"),  # ❤️
    (BOT, "https://portal.example/im/#IM_DIALOG=chat5&IM_MESSAGE=1003", "\U0001f602"),  # 😂
    (
        BOT,
        f"{CHAT_LINK}&IM_MESSAGE=1004&utm_source=mail#top",
        "\U0001f926\U0001f3fd\u200d\u2642\ufe0f",
    ),
    (BOT, "https://portal.example/online/?IM_MESSAGE=1005&IM_DIALOG=chat5", "okHand"),
    (BOT, f"{CHAT_LINK}&IM_MESSAGE=1001", "like"),  # row 1 again: a duplicate
    (BOT, CHAT_LINK, "\U0001f525"),  # the chat's link, not the message's: invalid
    (BOT, 1007, "\U0001f389"),  # 🎉: no such reaction on the portal: invalid
]
AS_READ = {
    1: "reaction: read '\U0001f44d' as like",
    2: "messageId: read as 1002 (the link's IM_MESSAGE); reaction: read '\u2764\ufe0f' as redHeart",
    3: "messageId: read as 1003 (the link's IM_MESSAGE); reaction: read '\U0001f602' as faceWithTearsOfJoy",
    5: "messageId: read as 1005 (the link's IM_MESSAGE)",
}


def reactions_left(portal: SandboxPortal) -> set[tuple[int, int, str]]:
    return {(b, m, r) for m, b, r in portal.state.snapshot()}


def write_xlsx(path: Path, rows: Sequence[Sequence[Any]]) -> Path:
    """A workbook as Excel keeps it: ids typed as numbers are numeric cells."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "to remove"
    sheet.append(["botId", "messageId", "reaction"])
    for row in rows:
        sheet.append(list(row))
    book.save(path)
    return path


def write_sheet(folder: Path, kind: str, rows: Sequence[Sequence[Any]]) -> Path:
    if kind == "xlsx":
        return write_xlsx(folder / "sheet.xlsx", rows)
    return write_rows(folder / "sheet.csv", rows)


def run(run_cli: RunCli, portal: SandboxPortal, path: Path, *extra: Any) -> Result:
    return run_cli("run", path, *portal_args(portal, path.parent, *FAST), *extra)


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_emoji_and_links_are_read_and_the_report_keeps_them_as_written(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path, kind: str
) -> None:
    portal = portal_factory(ON_PORTAL)
    path = write_sheet(tmp_path, kind, SHEET)
    result = run(run_cli, portal, path)
    assert result.exit_code == 1, result.stderr  # two invalid rows
    report = read_report(tmp_path / "sheet.report.csv")
    assert [(r["row"], r["status"]) for r in report] == [
        ("1", "removed"),
        ("2", "removed"),
        ("3", "removed"),
        ("4", "removed"),
        ("5", "removed"),
        ("6", "duplicate"),
        ("7", "invalid"),
        ("8", "invalid"),
    ]
    # The portal got the codes and ids: exactly the five reactions are gone.
    assert reactions_left(portal) == {(BOT, 1006, "fire")}
    # Each cell as written; what it was read as, where that differs.
    assert [(r["messageId"], r["reaction"]) for r in report] == [(str(m), e) for _, m, e in SHEET]
    for row, note in AS_READ.items():
        assert report[row - 1]["error_description"] == note
    assert report[3]["error_description"].endswith("as facepalm")  # a man facepalming, tanned
    assert report[5]["error_description"].startswith("duplicate of row 1; messageId: read as")
    assert report[6]["error"] == "INVALID_MESSAGE_ID"
    assert "not of the chat" in report[6]["error_description"]
    assert report[7]["error"] == "INVALID_REACTION"
    assert "not an emoji the portal has as a reaction" in report[7]["error_description"]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_dry_run_report_lists_every_row_and_sends_nothing(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path, suffix: str
) -> None:
    portal = portal_factory(ON_PORTAL)
    path = write_sheet(tmp_path, "csv", [(BOT, "", "like"), *SHEET])  # row 1 invalid too
    report_path = tmp_path / "plan" / f"plan{suffix}"
    result = run(run_cli, portal, path, "--dry-run", "--report", report_path)
    assert result.exit_code == 1, result.stderr  # invalid rows, as a dry run says
    assert portal.stats.requests == 0
    assert reactions_left(portal) == set(ON_PORTAL)
    if suffix == ".csv":
        report: list[dict[str, Any]] = read_report(report_path)
    else:
        report = [json.loads(line) for line in report_path.read_text().splitlines()]
    assert [int(r["row"]) for r in report] == list(range(1, 10))
    assert [r["status"] for r in report] == [
        "invalid", *["to_send"] * 5, "duplicate", "invalid", "invalid"
    ]  # fmt: skip
    assert report[1]["error_description"] == AS_READ[1]
    assert report[1]["reaction"] == "\U0001f44d"
    summary = json.loads(report_path.with_name(report_path.name + ".summary.json").read_text())
    assert summary["dry_run"] is True
    assert summary["to_send"] == 5 and summary["rows"] == 9
    assert summary["by_status"]["invalid"] == 3 and summary["by_status"]["duplicate"] == 1
    assert summary["requests"] == 0
    assert f"report: {report_path} (a dry run's" in result.stderr
    assert "dry run of" in result.stderr and "5 to send, 3 invalid, 1 duplicate" in result.stderr
    # Nothing a run would need to resume from: no journal, no lock left held.
    assert not list((tmp_path / "plan" / ".reaction-cleanup").glob("*.journal"))


def test_a_sheet_fixed_from_the_dry_run_report_then_resumed_sends_the_rows_to_do(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory(ON_PORTAL)
    path = write_sheet(tmp_path, "xlsx", SHEET)
    plan = tmp_path / "sheet.report.csv"
    assert run(run_cli, portal, path, "--dry-run", "--report", plan).exit_code == 1
    assert "to_send" in {r["status"] for r in read_report(plan)}
    # Fixed from the report: row 7 gets the message's link.
    fixed = [*SHEET[:6], (BOT, f"{CHAT_LINK}&IM_MESSAGE=1006", "\U0001f525"), SHEET[7]]
    write_xlsx(path, fixed)
    result = run(run_cli, portal, path, "--report", plan, "--resume")
    assert result.exit_code == 1, result.stderr  # row 8 is still invalid
    assert "is a dry run's report: nothing was sent; starting from row 1" in result.stderr
    report = read_report(plan)
    assert [r["status"] for r in report] == [*["removed"] * 5, "duplicate", "removed", "invalid"]
    assert int(report[6]["attempts"]) == 1
    assert reactions_left(portal) == set()
    # A real run never writes to_send; its summary is a run's.
    summary = json.loads(plan.with_name(plan.name + ".summary.json").read_text())
    assert summary["dry_run"] is False and summary["by_status"]["removed"] == 6


def test_resume_of_an_unchanged_sheet_from_its_dry_run_report(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory(ON_PORTAL)
    path = write_sheet(tmp_path, "csv", SHEET)
    plan = tmp_path / "plan.csv"
    run(run_cli, portal, path, "--dry-run", "--report", plan)
    result = run(run_cli, portal, path, "--report", plan, "--resume")
    assert result.exit_code == 1, result.stderr
    statuses = [r["status"] for r in read_report(plan)]
    assert statuses == [*["removed"] * 5, "duplicate", "invalid", "invalid"]
    assert portal.stats.requests > 0 and reactions_left(portal) == {(BOT, 1006, "fire")}
    # The run's own report now has a journal: a second --resume keeps every line.
    again = run(run_cli, portal, path, "--report", plan, "--resume")
    assert again.exit_code == 1, again.stderr
    assert [r["status"] for r in read_report(plan)] == statuses


def test_the_to_send_rows_of_a_dry_run_report_can_be_run_from_it(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory(ON_PORTAL)
    path = write_sheet(tmp_path, "csv", SHEET)
    plan = tmp_path / "plan.csv"
    run(run_cli, portal, path, "--dry-run", "--report", plan)
    result = run(run_cli, portal, plan, "--only", "to_send", "--report", tmp_path / "done.csv")
    assert result.exit_code == 0, result.stderr
    done = read_report(tmp_path / "done.csv")
    assert [(r["row"], r["status"]) for r in done] == [(str(i), "removed") for i in range(1, 6)]
    assert done[0]["reaction"] == "\U0001f44d"  # still as written in the sheet
    assert reactions_left(portal) == {(BOT, 1006, "fire")}


def test_a_dry_run_never_writes_over_a_runs_report(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory(ON_PORTAL)
    path = write_sheet(tmp_path, "csv", SHEET[:2])
    assert run(run_cli, portal, path).exit_code == 0
    report = tmp_path / "sheet.report.csv"
    before = report.read_bytes()
    result = run(run_cli, portal, path, "--dry-run", "--report", report)
    assert result.exit_code == 2
    assert "a dry run does not write over it" in result.stderr
    assert report.read_bytes() == before


def test_a_dry_run_without_report_writes_none(run_cli: RunCli, tmp_path: Path) -> None:
    path = write_sheet(tmp_path, "csv", SHEET)
    result = run_cli("run", path, "--dry-run")
    assert result.exit_code == 1, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sheet.csv"]
    assert "report:" not in result.stderr
