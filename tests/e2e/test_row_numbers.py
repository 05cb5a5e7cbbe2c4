"""Issue 12 §1: `row` is the data row's place in the file, as a spreadsheet shows it.

The first row under the header is 1 and every record after it counts, blank or not. A
blank row (all three fields empty) gets no report line and leaves the exit code alone,
but the rows after it keep their own numbers: in the report, in "duplicate of row N", in
the journal and --resume, and on the HTML page. Every test runs the CLI against the
sandbox over real HTTP and checks each reported number against the row's place.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import Result

from cleanup.sandbox import PortalConfig, PortalState, SandboxPortal
from tests.helpers.cli import portal_args, read_report
from tests.helpers.faults import BreakingPortal
from tests.helpers.processes import read_any

BOT = 456
FAST = ("--rate", "1000", "--burst", "1000")
PortalFactory = Callable[..., SandboxPortal]
RunCli = Callable[..., Result]
Entry = tuple[int, int, str] | None  # None: a blank row

# Where blank rows sit: at the start, in the middle, a run of several, at the end.
LAYOUTS = {
    "start": [None, (BOT, 1, "like"), (BOT, 2, "like")],
    "middle": [(BOT, 1, "like"), None, (BOT, 2, "like"), (BOT, 3, "fire")],
    "run": [(BOT, 1, "like"), None, None, None, (BOT, 2, "like"), None, None, (BOT, 3, "like")],
    "end": [(BOT, 1, "like"), (BOT, 2, "like"), None, None],
    "everywhere": [None, None, (BOT, 1, "like"), None, (BOT, 2, "fire"), None, None, None],
}


def places(layout: Sequence[Entry]) -> list[tuple[str, str]]:
    """(row, messageId) of each real row: its 1-based place under the header."""
    return [(str(i), str(e[1])) for i, e in enumerate(layout, start=1) if e is not None]


def write(path: Path, layout: Sequence[Entry]) -> Path:
    """The layout in the format the name says, blank rows as that format has them."""
    header = ["botId", "messageId", "reaction"]
    if path.suffix in (".csv", ".tsv"):
        sep = "\t" if path.suffix == ".tsv" else ";"
        lines = [sep.join(header)]
        for i, entry in enumerate(layout):
            # Both kinds of blank row a spreadsheet export has: an empty line, and ";;".
            blank = "" if i % 2 else sep * 2
            lines.append(blank if entry is None else sep.join(map(str, entry)))
        path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    elif path.suffix == ".xlsx":
        book = openpyxl.Workbook()
        sheet = book.active
        assert sheet is not None
        sheet.append(["Reactions to remove"])  # a title row: not counted
        sheet.append(header)
        for entry in layout:
            sheet.append([None, None, None] if entry is None else list(entry))
        book.save(path)
    else:
        cols: list[list[Any]] = [[], [], []]
        for i, entry in enumerate(layout):
            for col, value in zip(cols, entry or (None, "" if i % 2 else None, None), strict=True):
                col.append(None if value is None else str(value))
        pq.write_table(pa.table(dict(zip(header, cols, strict=True))), path)
    return path


def existing(layout: Sequence[Entry]) -> list[tuple[int, int, str]]:
    return [e for e in layout if e is not None]


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("fmt", ["csv", "tsv", "xlsx", "parquet"])
def test_rows_after_blank_rows_keep_their_place(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path, fmt: str, layout: str
) -> None:
    rows = LAYOUTS[layout]
    portal = portal_factory(existing(rows))
    path = write(tmp_path / f"in.{fmt}", rows)
    result = run_cli("run", path, *portal_args(portal, tmp_path, *FAST))
    assert result.exit_code == 0, result.stderr  # blank rows change nothing else
    report = read_report(tmp_path / "in.report.csv")
    assert [(r["row"], r["messageId"]) for r in report] == places(rows)
    assert {r["status"] for r in report} == {"removed"}
    assert not portal.state.snapshot()


def test_invalid_and_duplicate_rows_name_places_in_the_file(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory([(BOT, 1, "like"), (BOT, 2, "like")])
    path = tmp_path / "in.csv"
    path.write_text(
        "botId,messageId,reaction\n"
        "\n"  # 1
        "456,1,like\n"  # 2
        ",,\n"  # 3
        '"456","x\ny",like\n'  # 4: one record over two lines, invalid
        "\n\n"  # 5, 6
        "456,1,like\n"  # 7: a duplicate of row 2
        "456,2,like\n"  # 8
    )
    result = run_cli(
        "run", path, *portal_args(portal, tmp_path, *FAST), "--html", tmp_path / "p.html"
    )
    assert result.exit_code == 1, result.stderr
    report = read_report(tmp_path / "in.report.csv")
    assert [(r["row"], r["status"]) for r in report] == [
        ("2", "removed"),
        ("4", "invalid"),
        ("7", "duplicate"),
        ("8", "removed"),
    ]
    assert report[2]["error_description"] == "duplicate of row 2"
    # The HTML page lists the invalid row under its place in the file too.
    assert '<td class="num">4</td><td>456</td>' in (tmp_path / "p.html").read_text()


def test_dry_run_examples_name_places_in_the_file(run_cli: RunCli, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("botId,messageId,reaction\n\n\n456,oops,like\n")
    result = run_cli("run", path, "--dry-run", "--progress", "none")
    assert result.exit_code == 1
    assert "row 3: messageId" in result.stdout + result.stderr


def test_resume_after_blank_rows_keeps_the_numbers(run_cli: RunCli, tmp_path: Path) -> None:
    # Blank rows before and between the rows; the run is aborted part way, then resumed:
    # the journal and the report's kept lines use the same numbers as the new lines.
    layout: list[Entry] = []
    for i in range(120):
        if i % 7 == 0:
            layout.append(None)
        layout.append((BOT + i % 2, 5000 + i, "like"))
    reactions = existing(layout)
    portal = BreakingPortal(PortalState.build(reactions), PortalConfig()).start()
    try:
        portal.break_at = 4
        path = write(tmp_path / "in.csv", layout)
        cli = [
            "run", path, *portal_args(portal, tmp_path, *FAST),
            "--batch-size", "10", "--concurrency", "1",
        ]  # fmt: skip
        first = run_cli(*cli)
        assert first.exit_code == 3, first.stderr
        assert {r["status"] for r in read_any(tmp_path / "in.report.csv")} >= {"skipped"}
        portal.break_at = None
        with portal.state.lock:
            portal.state.webhooks = {1: "sandbox-webhook-code"}
        second = run_cli(*cli, "--resume")
    finally:
        portal.stop()
    assert second.exit_code == 0, second.stderr
    report = read_any(tmp_path / "in.report.csv")
    assert [(r["row"], r["messageId"]) for r in report] == places(layout)
    assert {r["status"] for r in report} == {"removed"}
    assert max(portal.carried.values()) == 1  # no row sent twice: kept rows matched by number
    assert not portal.state.snapshot()


def test_report_rows_match_the_input_lines_a_spreadsheet_shows(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    # Read back as a spreadsheet would (the csv module, one record per row): the report's
    # row N is the input's record N under the header.
    layout: list[Entry] = [(BOT, 1, "like"), None, None, (BOT, 2, "like"), None, (BOT, 3, "like")]
    portal = portal_factory(existing(layout))
    path = write(tmp_path / "in.csv", layout)
    assert run_cli("run", path, *portal_args(portal, tmp_path, *FAST)).exit_code == 0
    with path.open(newline="") as fh:
        records = list(csv.reader(fh, delimiter=";"))[1:]
    for line in read_report(tmp_path / "in.report.csv"):
        assert records[int(line["row"]) - 1][1] == line["messageId"]


def test_resume_refuses_a_journal_that_numbered_rows_without_blank_ones(
    run_cli: RunCli, tmp_path: Path
) -> None:
    # A run started by a version that did not count blank rows (journal format 1): its row
    # numbers point elsewhere, so resuming it would keep or re-send the wrong rows.
    portal = BreakingPortal(PortalState.build([(BOT, 1, "like")]), PortalConfig()).start()
    path = write(tmp_path / "in.csv", [None, (BOT, 1, "like")])
    cli = ["run", path, *portal_args(portal, tmp_path, *FAST)]
    try:
        assert run_cli(*cli).exit_code == 0
        (journal,) = (p for p in tmp_path.rglob("*journal*") if p.is_file())
        header, *rest = journal.read_text().splitlines()
        journal.write_text("\n".join([header.replace('"version": 2', '"version": 1'), *rest]))
        result = run_cli(*cli, "--resume")
    finally:
        portal.stop()
    assert result.exit_code == 2
    assert "has format 1, and this reaction-cleanup reads format 2" in result.stderr
